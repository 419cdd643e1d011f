package operator

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// ShadowReport is what one gateway compared of one deployment's shadow
// (spec.shadow): its Tally, cumulative since the gateway started mirroring
// to that shadow, and the shadow's ID, which tells the operator whether
// the tally counted the deployment's current shadow or an earlier one.
type ShadowReport struct {
	// ID is serving.Shadow.ID of the spec.shadow the tally counted.
	ID    string                `json:"id"`
	Tally traffic.TallySnapshot `json:"tally"`
}

// CheckShadows reports whether the shadows of a demand report are valid:
// each with an ID and a tally a gateway could have counted
// (traffic.TallySnapshot.Check).
func CheckShadows(shadows map[string]ShadowReport) error {
	for name, sr := range shadows {
		if sr.ID == "" {
			return fmt.Errorf("shadow of %q has no id", name)
		}
		if err := sr.Tally.Check(); err != nil {
			return fmt.Errorf("shadow of %q: %w", name, err)
		}
	}
	return nil
}

// Shadows keeps the latest shadow tally each gateway reported for each
// deployment (DemandReport.Shadows), and sums those of a deployment's
// current shadow: the cluster's view of what its shadow compared. A
// gateway's tally is forgotten once it sent none for traffic.DefaultSpan
// (a gateway pod gone). It is safe for concurrent use.
type Shadows struct {
	now func() time.Time

	// mu guards deps.
	mu   sync.Mutex
	deps map[string]map[string]gatewayShadow // deployment → gateway → latest
}

type gatewayShadow struct {
	ShadowReport
	seen time.Time
}

// NewShadows returns empty Shadows whose gateways expire as measured by
// now (default time.Now).
func NewShadows(now func() time.Time) *Shadows {
	if now == nil {
		now = time.Now
	}
	return &Shadows{now: now, deps: map[string]map[string]gatewayShadow{}}
}

// Report keeps a gateway's shadow tallies, each replacing the one it
// reported before for its deployment. It checks them all first
// (CheckShadows) and keeps none if one is invalid.
func (s *Shadows) Report(gateway string, shadows map[string]ShadowReport) error {
	if err := CheckShadows(shadows); err != nil {
		return err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, sr := range shadows {
		gws := s.deps[name]
		if gws == nil {
			gws = map[string]gatewayShadow{}
			s.deps[name] = gws
		}
		gws[gateway] = gatewayShadow{ShadowReport: sr, seen: now}
	}
	s.expireLocked(now)
	return nil
}

// expireLocked forgets the tallies of gateways silent for
// traffic.DefaultSpan, of every deployment (a gateway's report).
func (s *Shadows) expireLocked(now time.Time) {
	for name := range s.deps {
		s.expireDepLocked(name, now)
	}
}

// expireDepLocked is expireLocked for one deployment: a status pass asks
// for each deployment's summary, and must not walk every other one.
func (s *Shadows) expireDepLocked(name string, now time.Time) {
	gws := s.deps[name]
	for gw, g := range gws {
		if now.Sub(g.seen) > traffic.DefaultSpan {
			delete(gws, gw)
		}
	}
	if len(gws) == 0 {
		delete(s.deps, name)
	}
}

// Summary sums what the gateways compared of deployment's shadow current
// (its spec.shadow now): only the tallies reported with current's ID
// count, so a tally of an earlier shadow is left out. ok is false when
// current is nil or no gateway reported a tally of it yet.
func (s *Shadows) Summary(deployment string, current *serving.Shadow) (sum traffic.Summary, ok bool) {
	id := current.ID()
	if id == "" {
		return traffic.Summary{}, false
	}
	s.mu.Lock()
	s.expireDepLocked(deployment, s.now())
	gws := make([]string, 0, len(s.deps[deployment]))
	for gw, g := range s.deps[deployment] {
		if g.ID == id {
			gws = append(gws, gw)
		}
	}
	sort.Strings(gws) // samples are taken in turn: the same order each time
	snaps := make([]traffic.TallySnapshot, len(gws))
	for i, gw := range gws {
		snaps[i] = s.deps[deployment][gw].Tally
	}
	s.mu.Unlock()
	if len(snaps) == 0 {
		return traffic.Summary{}, false
	}
	return traffic.SumSnapshots(snaps...), true
}

// ShadowSource reads what the gateways compared of each deployment's
// current shadow, the spec.shadow that spec returns (nil for none); it is
// the cluster's rollout.Shadows. Operator.Shadows returns the operator's.
type ShadowSource struct {
	Shadows *Shadows
	Spec    func(deployment string) *serving.Shadow
}

// ShadowSummary returns the sum over the gateways of deployment's current
// shadow, and its ID (only reports of it are summed); ok is false while
// the deployment has no shadow or no gateway reported one.
func (s ShadowSource) ShadowSummary(deployment string) (sum traffic.Summary, id string, ok bool) {
	sh := s.Spec(deployment)
	if sh == nil {
		return traffic.Summary{}, "", false
	}
	sum, ok = s.Shadows.Summary(deployment, sh)
	return sum, sh.ID(), ok
}
