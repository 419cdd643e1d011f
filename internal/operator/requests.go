package operator

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/reqstats"
)

// Bounds of a RequestReport (CheckRequests).
const (
	// MaxRequestDeployments is the most deployments one report carries;
	// a gateway sends the rest with its next reports.
	MaxRequestDeployments = 2000
	// maxRequestBuckets is the most latency buckets a deployment's
	// Totals has (the gateway's histogram has 16).
	maxRequestBuckets = 64
	// DefaultRequestForget is how long RequestTotals keeps a gateway that
	// stopped reporting, and a deployment no gateway counted a request of.
	DefaultRequestForget = 15 * time.Minute
)

// RequestReport is what a gateway answered of each deployment since it
// started: cumulative counters read from its own metrics
// (reqstats.Totals), sent with its demand reports (DemandReport.Requests).
type RequestReport struct {
	// Epoch identifies the gateway process whose counters these are (a
	// process that restarts under the same pod name counts from zero
	// again, under a new Epoch).
	Epoch int64 `json:"epoch"`
	// Full says that Deployments holds every deployment whose counters
	// are not zero; otherwise it holds those that moved since the report
	// the operator last answered, and may leave others out.
	Full bool `json:"full,omitempty"`
	// Deployments maps a deployment's name to its counters.
	Deployments map[string]reqstats.Totals `json:"deployments,omitempty"`
}

// CheckRequests reports whether r is what a gateway sends: at most
// MaxRequestDeployments deployments, each with as many counts as bounds,
// bounds increasing.
func CheckRequests(r *RequestReport) error {
	if r == nil {
		return nil
	}
	if len(r.Deployments) > MaxRequestDeployments {
		return fmt.Errorf("request totals of %d deployments, over %d", len(r.Deployments), MaxRequestDeployments)
	}
	for name, t := range r.Deployments {
		if name == "" {
			return fmt.Errorf("request totals without a deployment name")
		}
		if len(t.Bounds) != len(t.Counts) || len(t.Bounds) > maxRequestBuckets {
			return fmt.Errorf("request totals of %q: %d bounds and %d counts (at most %d)", name, len(t.Bounds), len(t.Counts), maxRequestBuckets)
		}
		for i := range t.Bounds {
			if math.IsNaN(t.Bounds[i]) || i > 0 && t.Bounds[i] <= t.Bounds[i-1] {
				return fmt.Errorf("request totals of %q: bounds not increasing", name)
			}
		}
	}
	return nil
}

// RequestTotals sums the request counters that gateways report into one
// cumulative reqstats.Totals per deployment, the reqstats.Source of the
// operator's request statistics (GET /v1/deployments/{name}/stats). It
// adds what each report says a gateway counted since the one before, so
// that the sums never go back when a gateway goes away, and a gateway
// that restarts (a new Epoch, or counters that went down) counts from
// zero. What a gateway counted before this operator first heard from it
// (a new leader, or a new gateway's first report) is its baseline, not
// counted: until the gateway sent a Full report, a deployment it reports
// for the first time is a baseline too, and Report asks for a Full one.
// It is safe for concurrent use.
type RequestTotals struct {
	now    func() time.Time
	forget time.Duration

	// mu guards gateways and sums.
	mu       sync.Mutex
	gateways map[string]*gatewayTotals
	sums     map[string]*requestSum
}

// gatewayTotals is the latest counters of one gateway.
type gatewayTotals struct {
	epoch int64
	// full: deps holds every deployment the gateway counted a request
	// of (one it reports later was at zero then).
	full bool
	seen time.Time
	deps map[string]reqstats.Totals
}

// requestSum is one deployment's counters summed over gateways.
type requestSum struct {
	t     reqstats.Totals
	moved time.Time // when a gateway last counted a request of it
}

// NewRequestTotals returns empty RequestTotals that forget a gateway, and
// a deployment, after forget (default DefaultRequestForget) without news,
// as measured by now (default time.Now).
func NewRequestTotals(forget time.Duration, now func() time.Time) *RequestTotals {
	if forget <= 0 {
		forget = DefaultRequestForget
	}
	if now == nil {
		now = time.Now
	}
	return &RequestTotals{now: now, forget: forget, gateways: map[string]*gatewayTotals{}, sums: map[string]*requestSum{}}
}

// Report adds what gateway counted since its previous report (r, which
// CheckRequests accepts; nil adds nothing) to the sums, and returns
// whether the gateway should send a Full report next.
func (rt *RequestTotals) Report(gateway string, r *RequestReport) (wantFull bool) {
	if r == nil {
		return false
	}
	now := rt.now()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.sweepLocked(now)
	g := rt.gateways[gateway]
	switch {
	case g == nil:
		g = &gatewayTotals{epoch: r.Epoch, deps: map[string]reqstats.Totals{}}
		rt.gateways[gateway] = g
	case g.epoch != r.Epoch: // restarted: its counters began at zero
		g = &gatewayTotals{epoch: r.Epoch, full: true, deps: map[string]reqstats.Totals{}}
		rt.gateways[gateway] = g
	}
	g.seen = now
	for name, cur := range r.Deployments {
		cur = cloneTotals(cur)
		last, known := g.deps[name]
		g.deps[name] = cur
		if !known && !g.full {
			continue // a baseline: what it counted before is not known to be new
		}
		rt.addLocked(name, increment(last, cur), now)
	}
	if r.Full {
		g.full = true
	}
	return !g.full
}

// Totals returns every deployment's counters summed over the gateways
// (reqstats.Source).
func (rt *RequestTotals) Totals() (map[string]reqstats.Totals, error) {
	now := rt.now()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.sweepLocked(now)
	out := make(map[string]reqstats.Totals, len(rt.sums))
	for name, s := range rt.sums {
		out[name] = cloneTotals(s.t)
	}
	return out, nil
}

// addLocked adds inc to the sum of deployment. A histogram whose bounds
// differ from the sum's (a gateway of another version) adds its requests
// but not its latencies.
func (rt *RequestTotals) addLocked(deployment string, inc reqstats.Totals, now time.Time) {
	if inc.Requests == 0 && inc.Observed == 0 {
		return
	}
	s := rt.sums[deployment]
	if s == nil {
		s = &requestSum{t: reqstats.Totals{Bounds: slices.Clone(inc.Bounds), Counts: make([]uint64, len(inc.Bounds))}}
		rt.sums[deployment] = s
	}
	s.moved = now
	s.t.Requests += inc.Requests
	s.t.Errors += inc.Errors
	if s.t.Observed == 0 && !slices.Equal(s.t.Bounds, inc.Bounds) {
		s.t.Bounds, s.t.Counts = slices.Clone(inc.Bounds), make([]uint64, len(inc.Bounds))
	}
	if slices.Equal(s.t.Bounds, inc.Bounds) {
		for i, c := range inc.Counts {
			s.t.Counts[i] += c
		}
		s.t.Observed += inc.Observed
	}
}

// sweepLocked forgets the gateways that sent nothing, and the
// deployments no gateway counted a request of, for rt.forget.
func (rt *RequestTotals) sweepLocked(now time.Time) {
	for name, g := range rt.gateways {
		if now.Sub(g.seen) > rt.forget {
			delete(rt.gateways, name)
		}
	}
	for name, s := range rt.sums {
		if now.Sub(s.moved) > rt.forget {
			delete(rt.sums, name)
		}
	}
}

// increment is what a gateway counted between two reports of one
// deployment's counters, a and b. Counters that went down, or a
// histogram that changed shape, began again at zero: b is all new.
func increment(a, b reqstats.Totals) reqstats.Totals {
	if b.Requests < a.Requests || b.Observed < a.Observed || len(a.Counts) != len(b.Counts) {
		return b
	}
	inc := reqstats.Totals{Requests: b.Requests - a.Requests, Errors: b.Errors - min(a.Errors, b.Errors),
		Bounds: b.Bounds, Counts: make([]uint64, len(b.Counts)), Observed: b.Observed - a.Observed}
	for i := range b.Counts {
		inc.Counts[i] = b.Counts[i] - min(a.Counts[i], b.Counts[i])
	}
	return inc
}

func cloneTotals(t reqstats.Totals) reqstats.Totals {
	t.Bounds, t.Counts = slices.Clone(t.Bounds), slices.Clone(t.Counts)
	return t
}
