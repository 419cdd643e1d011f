package limit

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Table is a set of limits as one gateway enforces them: immutable once
// made, shared by every request that reads it.
type Table struct {
	none     bool               // no limit at all: every request passes at once
	tenants  map[string]*levels // tenants with limits of their own
	def      *levels            // tenant "*"; nil without a default
	fraction float64
	limits   []serving.Limit // as set, sorted by key
}

// levels are one tenant's limits: all is its tenant-wide limit (nil: none
// of its own), deps its limits per deployment.
type levels struct {
	all  *rule
	deps map[string]*rule
}

// rule is one limit as this gateway enforces it.
type rule struct {
	set    serving.Limit // as set, for refusals and Weight
	rate   float64       // this gateway's rate (requests/s); 0: none
	burst  float64       // this gateway's burst
	conc   int32         // this gateway's bound in flight; 0: none
	bounds bool          // rate or conc is set
}

var emptyTable = &Table{none: true, fraction: 1}

// NewTable returns the table of limits for a gateway that enforces
// fraction of each (1/N for one of N gateways; anything outside (0, 1] is
// taken as 1): see Scale. It fails, naming them, when a limit is invalid
// or two have one key.
func NewTable(limits []serving.Limit, fraction float64) (*Table, error) {
	fraction = clampFraction(fraction)
	t := &Table{tenants: make(map[string]*levels), fraction: fraction, limits: make([]serving.Limit, 0, len(limits))}
	var errs []error
	seen := make(map[serving.LimitKey]bool, len(limits))
	for _, l := range limits {
		l.Default()
		if err := l.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("limit of %s: %w", l.Key(), err))
			continue
		}
		if seen[l.Key()] {
			errs = append(errs, fmt.Errorf("limit of %s is given twice", l.Key()))
			continue
		}
		seen[l.Key()] = true
		t.limits = append(t.limits, l)
		eff := ScaleLimit(l, fraction)
		r := &rule{set: l, rate: eff.Rate, burst: float64(eff.Burst), conc: eff.Concurrency, bounds: !l.Unbounded()}
		lv := t.def
		if l.Tenant != serving.DefaultTenant {
			lv = t.tenants[l.Tenant]
		}
		if lv == nil {
			lv = &levels{deps: make(map[string]*rule)}
			if l.Tenant == serving.DefaultTenant {
				t.def = lv
			} else {
				t.tenants[l.Tenant] = lv
			}
		}
		if l.Deployment == "" {
			lv.all = r
		} else {
			lv.deps[l.Deployment] = r
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(t.limits, func(a, b serving.Limit) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.Deployment, b.Deployment))
	})
	t.none = len(t.limits) == 0
	return t, nil
}

// Limits returns the table's limits as set (before the split), sorted by
// tenant, then deployment.
func (t *Table) Limits() []serving.Limit { return slices.Clone(t.limits) }

// Fraction returns the share of each limit the table enforces.
func (t *Table) Fraction() float64 { return t.fraction }

// rules returns the limits that bind tenant on deployment, tenant-wide
// and on the deployment: its own, else the default's; nil where none.
// Rules that bound nothing (an exemption) are returned too.
func (t *Table) rules(tenant, deployment string) (all, dep *rule) {
	if t.none {
		return nil, nil
	}
	if lv := t.tenants[tenant]; lv != nil {
		all, dep = lv.all, lv.deps[deployment]
	}
	if t.def != nil {
		if all == nil {
			all = t.def.all
		}
		if dep == nil {
			dep = t.def.deps[deployment]
		}
	}
	return all, dep
}

// clampFraction takes a fraction outside (0, 1] as 1.
func clampFraction(f float64) float64 {
	if !(f > 0 && f <= 1) {
		return 1
	}
	return f
}

// Scale returns the limits one of several gateways enforces so that
// together they enforce limits: rate × fraction, burst and concurrency ×
// fraction rounded to the nearest whole number, at least 1; fraction
// outside (0, 1] is taken as 1. In a cluster of N ready gateways fraction
// is 1/N.
func Scale(limits []serving.Limit, fraction float64) []serving.Limit {
	out := make([]serving.Limit, len(limits))
	for i, l := range limits {
		out[i] = ScaleLimit(l, fraction)
	}
	return out
}

// ScaleLimit is Scale for one limit.
func ScaleLimit(l serving.Limit, fraction float64) serving.Limit {
	f := clampFraction(fraction)
	if f == 1 {
		return l
	}
	if l.Rate > 0 {
		l.Rate *= f
		l.Burst = int32(max(1, math.Round(float64(l.Burst)*f)))
	}
	if l.Concurrency > 0 {
		l.Concurrency = int32(max(1, math.Round(float64(l.Concurrency)*f)))
	}
	return l
}

// state is one (tenant, deployment)'s token bucket and count in flight.
type state struct {
	// mu guards the fields below it.
	mu       sync.Mutex
	tokens   float64
	last     int64   // UnixNano of the last refill; 0: never filled
	rate     float64 // of the last refill, for idle
	burst    float64
	inflight int32
	dead     bool // swept: no longer in its shard, made anew on next use
}

// acquire takes a place in flight and a token, as ru asks, or neither. It
// reports the kind of refusal and when to retry, or that s was swept.
func (s *state) acquire(nanos int64, ru *rule) (kind string, wait time.Duration, dead bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return "", 0, true
	}
	if ru.conc > 0 && s.inflight >= ru.conc {
		return KindConcurrency, ConcurrencyRetryAfter, false
	}
	if ru.rate > 0 {
		s.refillLocked(nanos, ru.rate, ru.burst)
		if s.tokens < 1 {
			return KindRate, time.Duration(math.Ceil((1 - s.tokens) / ru.rate * float64(time.Second))), false
		}
		s.tokens--
	}
	if ru.conc > 0 {
		s.inflight++
	}
	return "", 0, false
}

// refillLocked brings the bucket to nanos at rate, within burst; a new
// bucket starts full. Time that goes back adds nothing.
func (s *state) refillLocked(nanos int64, rate, burst float64) {
	switch {
	case s.last == 0:
		s.tokens, s.last = burst, nanos
	case nanos > s.last:
		s.tokens += rate * float64(nanos-s.last) / float64(time.Second)
		s.last = nanos
	}
	s.tokens = min(s.tokens, burst)
	s.rate, s.burst = rate, burst
}

// undo gives back what acquire took for ru.
func (s *state) undo(ru *rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ru.rate > 0 {
		s.tokens = min(s.tokens+1, s.burst)
	}
	if ru.conc > 0 {
		s.inflight--
	}
}

func (s *state) release() {
	s.mu.Lock()
	s.inflight--
	s.mu.Unlock()
}

// idle marks s dead and reports true when a new state would equal it at
// nanos: nothing in flight and a full bucket.
func (s *state) idle(nanos int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight > 0 {
		return false
	}
	if s.last != 0 && s.rate > 0 {
		tokens := s.tokens
		if nanos > s.last {
			tokens += s.rate * float64(nanos-s.last) / float64(time.Second)
		}
		if tokens < s.burst {
			return false
		}
	}
	s.dead = true
	return true
}
