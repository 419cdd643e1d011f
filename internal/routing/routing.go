// Package routing holds the routing table that the control loop publishes and
// the data plane reads: for each deployment, the endpoints that take traffic.
//
// Routes are immutable. Publishing a new route for a deployment closes the
// previous route's Changed channel, so a request waiting for a cold
// deployment wakes exactly when its deployment's endpoints change, without
// polling and without waking waiters of other deployments.
package routing

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/fairqueue"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// Route is a snapshot of how to reach one deployment.
type Route struct {
	// Deployment is the deployment name.
	Deployment string
	// Endpoints are the ready replicas; empty while the deployment is cold.
	Endpoints []*balance.Endpoint
	// Failure, when set, says why the deployment cannot start replicas
	// (e.g. the model does not load); held requests fail with it at once.
	Failure string
	// Stats records the deployment's demand; it is shared by every route
	// published for the deployment.
	Stats *stats.Recorder
	// ScaledToZero is set when the deployment's owner pinned it at zero
	// replicas (spec.replicas: 0): requests fail at once with a message
	// that says so, and nothing wakes it.
	ScaledToZero bool
	// Version is the registry version that new replicas of the deployment
	// serve, in its OIP v2 form ("3" for diabetes:3); empty for a model
	// given by path. A request for /versions/{Version} while no replica
	// serves it is held and wakes the deployment like any other; a request
	// for a version that neither a replica nor the deployment serves is
	// refused.
	Version string
	// Model names what new replicas serve: the registry version
	// ("diabetes:3") or the model's path. Metadata a gateway saw from a
	// replica stays valid while it is unchanged.
	Model string
	// Metadata, when set, is the OIP v2 model metadata of Version from the
	// registry (its signature), answered while no replica is ready.
	Metadata *oip.ModelMetadata
	// Protocol is the API the deployment's replicas speak:
	// serving.ProtocolOpenAI, or "" for OIP v2.
	Protocol string
	// Split, when set, shares the deployment's requests between the
	// tracks of its traffic targets; the route's own endpoints are the
	// primary's.
	Split *Split
	// Meter, when set, measures the requests the route serves for a
	// rollout's analysis: every track of a split and its primary have one,
	// shared by every route published for them; nil for a deployment
	// without a split, whose requests the gateway does not meter.
	Meter *traffic.Meter
	// Shadow, when set, mirrors a share of the route's requests to the
	// deployment's shadow track and compares the answers.
	Shadow *Shadow
	// Routing is the deployment's spec.routing: how a request picks one
	// of Endpoints. nil is least-outstanding (power of two choices).
	Routing *serving.Routing
	// Scatter is the deployment's spec.scatter: requests with more rows
	// than its segmentRows are split over replicas. nil splits none.
	Scatter *serving.Scatter
	// MaxConcurrency is the deployment's spec.scaling.maxConcurrency: the
	// most requests in flight on one replica; 0 sets no cap. Capacity
	// turns it into the admission capacity of the deployment's queue.
	MaxConcurrency int32

	changed chan struct{}
	ring    *balance.Ring    // Routing's hash ring over Endpoints (Publish)
	queue   *fairqueue.Queue // the admission queue of a capped deployment (Publish)
}

// Queue returns the fair admission queue of a deployment with
// MaxConcurrency set, its capacity that of r (Capacity); nil for an
// uncapped one. Every route published for the deployment while it stays
// capped shares one Queue, so requests waiting in it outlive route
// changes.
func (r *Route) Queue() *fairqueue.Queue { return r.queue }

// Ring returns the consistent-hash ring with bounded loads over r's
// endpoints, for a spec.routing that hashes a key (consistentHash or
// prefix); nil otherwise, and while r has no endpoints. Table.Publish
// builds it, once per published route.
func (r *Route) Ring() *balance.Ring { return r.ring }

// Capacity returns how many requests the route admits at once:
// MaxConcurrency per endpoint (so 0, hold everything, while a capped
// deployment has none), or -1 when MaxConcurrency sets no cap. It is the
// capacity a fairqueue.Queue for the deployment takes (fairqueue.Unlimited
// is -1).
func (r *Route) Capacity() int {
	if r.MaxConcurrency <= 0 {
		return -1
	}
	return int(r.MaxConcurrency) * len(r.Endpoints)
}

// Shadow is a deployment's shadow as the data plane sees it
// (serving.Shadow). Its Tally and InFlight are shared by every route
// published for the deployment while the shadow is unchanged; a new shadow
// starts them afresh.
type Shadow struct {
	// ID is the shadow's serving.Shadow.ID: routes keep one Shadow, and
	// its tally, while it is unchanged.
	ID string
	// Key is the route key of the shadow's track ("diabetes.shadow").
	Key string
	// Model is what the shadow serves, as in its spec.
	Model string
	// Percent of the requests mirrored, 1..100.
	Percent int32
	// Tolerance of the comparison.
	Tolerance traffic.Tolerance
	// MaxConcurrency bounds the mirrored requests in flight (InFlight);
	// beyond it a mirror copy is dropped, and counted in Tally.
	MaxConcurrency int32
	// Requests, when above 0, stops mirroring once Tally judged this
	// many; Until, when not zero, stops it at that time.
	Requests int64
	Until    time.Time
	// Started tells one start of a shadow from the next with the same
	// settings (serving.Shadow.Started).
	Started string
	// Tally counts what the gateway compared.
	Tally *traffic.Tally
	// InFlight counts the mirrored requests in flight.
	InFlight *atomic.Int32
}

// NewShadow returns the data plane's view of sh, deployment's spec.shadow,
// counting afresh; nil for none. The control loop and the cluster's route
// source both keep the one they returned while sh.ID() is unchanged.
func NewShadow(deployment string, sh *serving.Shadow) *Shadow {
	if sh == nil {
		return nil
	}
	t, _ := (&serving.Spec{Shadow: sh}).ShadowTrack(deployment)
	tol := sh.ToleranceOrDefault()
	return &Shadow{
		ID: sh.ID(), Key: t.Key, Model: sh.Model, Percent: sh.PercentOrDefault(),
		Tolerance:      traffic.Tolerance{Abs: tol.Abs, Rel: tol.Rel},
		MaxConcurrency: sh.MaxConcurrencyOrDefault(), Requests: sh.Requests, Until: sh.UntilTime(), Started: sh.Started,
		Tally: &traffic.Tally{}, InFlight: new(atomic.Int32),
	}
}

// Active reports whether sh still mirrors at now.
func (sh *Shadow) Active(now time.Time) bool {
	if !sh.Until.IsZero() && !now.Before(sh.Until) {
		return false
	}
	return sh.Requests <= 0 || sh.Tally.Judged() < sh.Requests
}

// Changed is closed when a newer route replaces this one or the deployment is
// removed.
func (r *Route) Changed() <-chan struct{} { return r.changed }

// Table maps deployment names to their current routes. It is safe for
// concurrent use; lookups take no lock.
type Table struct {
	// QueueOptions bound the fair admission queues of capped deployments
	// (Route.Queue); set them before the first Publish.
	QueueOptions fairqueue.Options

	routes sync.Map // string → *Route
}

// Lookup returns the current route of a deployment, or nil.
func (t *Table) Lookup(deployment string) *Route {
	v, ok := t.routes.Load(deployment)
	if !ok {
		return nil
	}
	return v.(*Route)
}

// Publish installs r (its Changed channel is created here) and wakes waiters
// on the route it replaces.
func (t *Table) Publish(r Route) *Route {
	nr := &r
	nr.changed = make(chan struct{})
	nr.ring = nil
	if p := r.Routing.PolicyOrDefault(); p != serving.RoutingLeastOutstanding && len(r.Endpoints) > 0 {
		nr.ring = balance.NewRing(r.Endpoints, r.Routing.LoadFactorOrDefault())
	}
	nr.queue = nil
	var prev *fairqueue.Queue
	if v, ok := t.routes.Load(r.Deployment); ok {
		prev = v.(*Route).queue
	}
	if r.MaxConcurrency > 0 {
		nr.queue = prev
		if nr.queue == nil {
			nr.queue = fairqueue.New(0, t.QueueOptions)
		}
		nr.queue.SetCapacity(nr.Capacity())
	} else if prev != nil {
		prev.SetCapacity(fairqueue.Unlimited) // uncapped now: let its waiters go
	}
	if old, ok := t.routes.Swap(r.Deployment, nr); ok {
		close(old.(*Route).changed)
	}
	return nr
}

// Remove deletes a deployment's route and wakes its waiters, those of its
// admission queue included (they find the deployment gone).
func (t *Table) Remove(deployment string) {
	if old, ok := t.routes.LoadAndDelete(deployment); ok {
		if q := old.(*Route).queue; q != nil {
			q.SetCapacity(fairqueue.Unlimited)
		}
		close(old.(*Route).changed)
	}
}

// All returns the current routes, in no particular order.
func (t *Table) All() []*Route {
	var out []*Route
	t.routes.Range(func(_, v any) bool {
		out = append(out, v.(*Route))
		return true
	})
	return out
}

// Measure returns what the Meter of the route keyed key (a deployment, or
// a track's name.tag) measured over [since, now]; a zero Measurement (no
// data) when there is no such route or it has no Meter. It is ebb up's
// measurer of rollouts.
func (t *Table) Measure(key string, since, now time.Time) traffic.Measurement {
	rt := t.Lookup(key)
	if rt == nil || rt.Meter == nil {
		return traffic.Measurement{}
	}
	return rt.Meter.Snapshot(since, now)
}

// ShadowSummary returns what this process's gateway compared of
// deployment's routed shadow, and the shadow's ID; ok is false when the
// deployment has no shadow.
func (t *Table) ShadowSummary(deployment string) (sum traffic.Summary, id string, ok bool) {
	rt := t.Lookup(deployment)
	if rt == nil || rt.Shadow == nil {
		return traffic.Summary{}, "", false
	}
	return rt.Shadow.Tally.Summary(), rt.Shadow.ID, true
}

// Len returns the number of routes.
func (t *Table) Len() int {
	n := 0
	t.routes.Range(func(any, any) bool { n++; return true })
	return n
}

// Serves reports whether a routed endpoint serves version (OIP v2 form).
func (r *Route) Serves(version string) bool {
	for _, ep := range r.Endpoints {
		if ep.Version == version {
			return true
		}
	}
	return false
}

// Versions lists the versions the routed endpoints serve and, when the
// deployment has one, the version new replicas serve; in numeric order
// (they are registry version numbers), without duplicates or empty ones.
func (r *Route) Versions() []string {
	var out []string
	add := func(v string) {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	add(r.Version)
	for _, ep := range r.Endpoints {
		add(ep.Version)
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b)) })
	return out
}

// Split shares a deployment's requests between the tracks of its traffic
// targets (serving.Track): each track has a route of its own, under its key.
type Split struct {
	// Tracks are the targets, the primary first.
	Tracks []Track
	// pick lays the weights out every non-primary first and the primary
	// last, so that a key on a canary stays there while its weight grows
	// (see traffic.Split); its indexes are order's.
	pick  *traffic.Split
	order []int
}

// Track is one target of a Split.
type Track struct {
	// Key is the track's route: the deployment's name for the primary,
	// name.tag for the others.
	Key string
	// Tag names the target in the Ebb-Version header.
	Tag string
	// Weight is its percent of requests.
	Weight int32
}

// NewSplit returns the split of tracks (the primary first), or an error
// when their weights do not make a split (they must sum to 100).
func NewSplit(tracks []Track) (*Split, error) {
	s := &Split{Tracks: tracks}
	var targets []traffic.Target
	for i := 1; i <= len(tracks); i++ {
		j := i % len(tracks) // the primary, 0, last
		s.order = append(s.order, j)
		targets = append(targets, traffic.Target{Name: tracks[j].Key, Weight: int(tracks[j].Weight)})
	}
	p, err := traffic.NewSplit(targets)
	if err != nil {
		return nil, err
	}
	s.pick = p
	return s, nil
}

// Pick returns the track for a request that drew r, a uniformly random
// number.
func (s *Split) Pick(r uint64) *Track { return &s.Tracks[s.order[s.pick.Pick(r)]] }

// PickKey returns the track of a sticky key: the same key gets the same
// track for as long as the weights leave it there.
func (s *Split) PickKey(key string) *Track { return &s.Tracks[s.order[s.pick.PickKey(key)]] }

// Find returns the track tagged tag, or nil.
func (s *Split) Find(tag string) *Track {
	for i := range s.Tracks {
		if s.Tracks[i].Tag == tag {
			return &s.Tracks[i]
		}
	}
	return nil
}
