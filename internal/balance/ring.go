package balance

import (
	"cmp"
	"math"
	"slices"
)

// Ring picks endpoints by consistent hashing with bounded loads (Mirrokni,
// Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads", 2018):
// a request's key maps to a point on a ring of virtual nodes, and the
// request goes to the endpoint owning the first virtual node at or after
// it, so that requests with the same key reach the same replica (a session,
// a user's cache, an LLM prompt prefix's KV cache).
//
// Loads stay bounded: an endpoint takes a request only while
// InFlight()+1 <= ceil(c × (T+1) / n), where c is the load factor, T the
// requests in flight over the n endpoints not excluded. Since c > 1 some
// endpoint is always under that bound, and no Pick takes an endpoint over
// it (but for concurrent Picks, which read the counts a moment apart). A key whose endpoint is full jumps to the owner of a fresh
// point, a rehash of (key, attempt), rather than walking the ring to the
// next endpoint: walking would pour every overflowing key of a hot endpoint
// onto its ring neighbours, which then overflow in turn (the cascade). The
// jumps are as stable as the key: every gateway sends a key that
// overflows the same way. After n jumps that all land on full or excluded
// endpoints, the least loaded endpoint takes the request.
//
// Keys stay put when the endpoints change: removing one of N endpoints
// moves only the keys it held (about 1/N of them), adding one moves about
// 1/(N+1), all onto the new one.
//
// Each endpoint owns RingVNodes points, placed at random by its ID, so an
// endpoint's share of the keys varies by about 1/sqrt(RingVNodes), 8%. With
// 10 endpoints the fullest one's share, relative to the mean, measured over
// 1,000 random sets of replica IDs (TestRingSpreadDistribution), is: median
// 1.12, 90th percentile 1.18, 99th 1.24, worst 1.30; over 100,000 keys
// (TestRingSpread) it stays within 1.25. The load bound, not the spread,
// keeps loads even: a key whose endpoint holds more than its share of the
// requests in flight jumps elsewhere.
//
// Points come from the endpoints' IDs and keys from HashKey, both by a
// fixed hash, so every gateway and every process of ebb maps a key to the
// same endpoint. A Ring is immutable: build a new one with NewRing when the
// set of endpoints changes (Matches says whether it has); Pick takes no
// lock and allocates nothing.
type Ring struct {
	eps        []*Endpoint // by ID
	points     []uint64    // sorted virtual-node points
	owners     []int32     // owners[i] indexes eps: the owner of points[i]
	loadFactor float64
	index      map[*Endpoint]struct{}
}

// vnodeSeed sets endpoints' points apart from the jumps of a key equal to
// an endpoint's ID.
const vnodeSeed = 0x2545f4914f6cdd1d

// RingVNodes is the number of virtual nodes per endpoint on a Ring.
const RingVNodes = 160

// DefaultLoadFactor is the load bound of a Ring built with a factor of 0
// or less: an endpoint takes at most 1.25 × the mean in-flight load.
const DefaultLoadFactor = 1.25

// NewRing returns a ring over eps with load factor loadFactor (above 1;
// DefaultLoadFactor when it is not, NaN included). The order of eps does
// not matter; eps should have distinct IDs, since an endpoint's points
// derive from its ID. The ring keeps eps' pointers, whose in-flight counts
// it reads on every Pick.
func NewRing(eps []*Endpoint, loadFactor float64) *Ring {
	if !(loadFactor > 1) || math.IsInf(loadFactor, 0) {
		loadFactor = DefaultLoadFactor
	}
	r := &Ring{
		eps:        slices.Clone(eps),
		loadFactor: loadFactor,
		index:      make(map[*Endpoint]struct{}, len(eps)),
	}
	slices.SortStableFunc(r.eps, func(a, b *Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	type vnode struct {
		point uint64
		owner int32
	}
	vnodes := make([]vnode, 0, len(r.eps)*RingVNodes)
	for i, e := range r.eps {
		r.index[e] = struct{}{}
		seed := HashKey(e.ID) ^ vnodeSeed
		for v := range RingVNodes {
			vnodes = append(vnodes, vnode{point: jump(seed, uint64(v)), owner: int32(i)})
		}
	}
	// Equal points (a 64-bit collision) go to the endpoint first by ID,
	// the same on every gateway.
	slices.SortFunc(vnodes, func(a, b vnode) int {
		return cmp.Or(cmp.Compare(a.point, b.point), cmp.Compare(a.owner, b.owner))
	})
	r.points = make([]uint64, len(vnodes))
	r.owners = make([]int32, len(vnodes))
	for i, vn := range vnodes {
		r.points[i], r.owners[i] = vn.point, vn.owner
	}
	return r
}

// Len returns the number of endpoints on r.
func (r *Ring) Len() int { return len(r.eps) }

// LoadFactor returns r's load factor.
func (r *Ring) LoadFactor() float64 { return r.loadFactor }

// Matches reports whether r was built from exactly the endpoints eps, in
// any order: when it was not, build a new ring.
func (r *Ring) Matches(eps []*Endpoint) bool {
	if r == nil || len(eps) != len(r.eps) {
		return false
	}
	for _, e := range eps {
		if _, ok := r.index[e]; !ok {
			return false
		}
	}
	return true
}

// Pick returns the endpoint for a request with key (a HashKey or
// PrefixKey), skipping those exclude reports (nil excludes none), or nil
// when none is left. It reads the endpoints' in-flight counts; the caller
// Acquires the endpoint it sends to, and Releases it after.
func (r *Ring) Pick(key uint64, exclude func(*Endpoint) bool) *Endpoint {
	if r == nil || len(r.eps) == 0 {
		return nil
	}
	var total int64
	n := 0
	for _, e := range r.eps {
		if exclude == nil || !exclude(e) {
			total += max(e.InFlight(), 0)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	bound := int64(math.Ceil(r.loadFactor * float64(total+1) / float64(n)))
	h := key
	for attempt := range len(r.eps) {
		if attempt > 0 {
			h = jump(key, uint64(attempt))
		}
		e := r.owner(h)
		if (exclude == nil || !exclude(e)) && e.InFlight()+1 <= bound {
			return e
		}
	}
	return r.leastLoaded(key, exclude)
}

// owner returns the endpoint owning the first point at or after h, around
// the ring.
func (r *Ring) owner(h uint64) *Endpoint {
	i, _ := slices.BinarySearch(r.points, h)
	if i == len(r.points) {
		i = 0
	}
	return r.eps[r.owners[i]]
}

// leastLoaded returns the endpoint not excluded with the fewest requests in
// flight, scanning from a place that depends on key so that ties do not
// all fall on one endpoint.
func (r *Ring) leastLoaded(key uint64, exclude func(*Endpoint) bool) *Endpoint {
	var best *Endpoint
	n := len(r.eps)
	start := int(key % uint64(n))
	for i := range n {
		e := r.eps[(start+i)%n]
		if exclude != nil && exclude(e) {
			continue
		}
		if best == nil || e.InFlight() < best.InFlight() {
			best = e
		}
	}
	return best
}
