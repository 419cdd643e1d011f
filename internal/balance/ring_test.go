package balance

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

// named returns endpoints with the given IDs and nothing in flight.
func named(ids ...string) []*Endpoint {
	eps := make([]*Endpoint, len(ids))
	for i, id := range ids {
		eps[i] = NewEndpoint(id, "")
	}
	return eps
}

// replicaIDs returns n replica IDs as the control loop makes them:
// deployment, '-', 6 random base-36 characters (drawn from seed).
func replicaIDs(n int, seed uint64) []string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	rng := rand.New(rand.NewPCG(seed, 7))
	ids := make([]string, n)
	for i := range ids {
		b := make([]byte, 6)
		for j := range b {
			b[j] = chars[rng.IntN(len(chars))]
		}
		ids[i] = "model-" + string(b)
	}
	return ids
}

// seqIDs returns "replica-0" ... "replica-(n-1)".
func seqIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "replica-" + strconv.Itoa(i)
	}
	return ids
}

// keys returns the hashes of n distinct keys.
func keys(n int) []uint64 {
	ks := make([]uint64, n)
	for i := range ks {
		ks[i] = HashKey("session-" + strconv.Itoa(i))
	}
	return ks
}

// assign returns the ID each key is picked onto.
func assign(r *Ring, ks []uint64) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = r.Pick(k, nil).ID
	}
	return out
}

func TestNewRingLoadFactor(t *testing.T) {
	tests := []struct {
		in, want float64
	}{
		{0, DefaultLoadFactor}, {1, DefaultLoadFactor}, {-2, DefaultLoadFactor}, {math.NaN(), DefaultLoadFactor},
		{math.Inf(1), DefaultLoadFactor}, {1.01, 1.01}, {2, 2}, {10, 10},
	}
	for _, tt := range tests {
		if got := NewRing(named("a"), tt.in).LoadFactor(); got != tt.want {
			t.Errorf("NewRing(_, %v).LoadFactor() = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRingPickEmpty(t *testing.T) {
	var nilRing *Ring
	all := func(*Endpoint) bool { return true }
	tests := []struct {
		name    string
		r       *Ring
		exclude func(*Endpoint) bool
	}{
		{name: "nil ring", r: nilRing},
		{name: "no endpoints", r: NewRing(nil, 0)},
		{name: "all excluded", r: NewRing(named("a", "b"), 0), exclude: all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Pick(HashKey("k"), tt.exclude); got != nil {
				t.Errorf("Pick = %q, want nil", got.ID)
			}
		})
	}
}

// TestRingSameKeySameEndpoint checks affinity: while loads are even a key
// goes to one endpoint, whatever order the ring was built from (another
// gateway's, another process's).
func TestRingSameKeySameEndpoint(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10, 50} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			eps := named(replicaIDs(n, 1)...)
			r := NewRing(eps, 0)
			ks := keys(2000)
			want := assign(r, ks)
			shuffled := slices.Clone(eps)
			rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			other := NewRing(named(replicaIDs(n, 1)...), 0) // same IDs, other endpoints
			reordered := NewRing(shuffled, 0)
			for i, k := range ks {
				if got := r.Pick(k, nil).ID; got != want[i] {
					t.Fatalf("key %d: picked %s, then %s", i, want[i], got)
				}
				if got := reordered.Pick(k, nil).ID; got != want[i] {
					t.Fatalf("key %d: picked %s, and %s from the shuffled endpoints", i, want[i], got)
				}
				if got := other.Pick(k, nil).ID; got != want[i] {
					t.Fatalf("key %d: picked %s, and %s on another ring of the same IDs", i, want[i], got)
				}
			}
		})
	}
}

// TestRingRemoveMovesOnlyItsKeys removes one endpoint of n: only the keys
// it held move, about 1/n of them.
func TestRingRemoveMovesOnlyItsKeys(t *testing.T) {
	for _, n := range []int{2, 3, 5, 10, 20} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			ids := replicaIDs(n, 2)
			ks := keys(20000)
			before := assign(NewRing(named(ids...), 0), ks)
			gone := ids[n/2]
			after := assign(NewRing(named(slices.Delete(slices.Clone(ids), n/2, n/2+1)...), 0), ks)
			moved := 0
			for i := range ks {
				if before[i] == after[i] {
					continue
				}
				moved++
				if before[i] != gone {
					t.Fatalf("key %d moved from %s, which stayed, to %s", i, before[i], after[i])
				}
			}
			if moved != count(before, gone) {
				t.Errorf("%d keys moved; %s held %d", moved, gone, count(before, gone))
			}
			frac := float64(moved) / float64(len(ks))
			t.Logf("removing 1 of %d endpoints moved %.4f of the keys (1/n = %.4f)", n, frac, 1/float64(n))
			if want := 1 / float64(n); frac < 0.7*want || frac > 1.3*want {
				t.Errorf("removing 1 of %d endpoints moved %.4f of the keys, want about %.4f", n, frac, want)
			}
		})
	}
}

// TestRingAddMovesOnlyToIt adds an endpoint to n: only keys that it takes
// move, about 1/(n+1) of them.
func TestRingAddMovesOnlyToIt(t *testing.T) {
	for _, n := range []int{1, 2, 4, 9, 19} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			ids := replicaIDs(n+1, 3)
			ks := keys(20000)
			before := assign(NewRing(named(ids[:n]...), 0), ks)
			after := assign(NewRing(named(ids...), 0), ks)
			added := ids[n]
			moved := 0
			for i := range ks {
				if before[i] == after[i] {
					continue
				}
				moved++
				if after[i] != added {
					t.Fatalf("key %d moved from %s to %s, not to the new endpoint", i, before[i], after[i])
				}
			}
			frac := float64(moved) / float64(len(ks))
			t.Logf("adding a %dth endpoint moved %.4f of the keys (1/(n+1) = %.4f)", n+1, frac, 1/float64(n+1))
			if want := 1 / float64(n+1); frac < 0.7*want || frac > 1.3*want {
				t.Errorf("adding a %dth endpoint moved %.4f of the keys, want about %.4f", n+1, frac, want)
			}
		})
	}
}

func count(ids []string, id string) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

// TestRingSpread measures the share of keys on the fullest of 10
// endpoints with RingVNodes points each, over 100,000 keys, for a few sets
// of replica IDs: at most 1.25 × the mean (the Ring's documented bound).
func TestRingSpread(t *testing.T) {
	const (
		n     = 10
		nKeys = 100000
		bound = 1.25
	)
	tests := []struct {
		name string
		ids  []string
	}{
		{name: "sequential", ids: seqIDs(n)},
		{name: "random 1", ids: replicaIDs(n, 11)},
		{name: "random 2", ids: replicaIDs(n, 12)},
		{name: "random 3", ids: replicaIDs(n, 13)},
		{name: "random 4", ids: replicaIDs(n, 14)},
	}
	ks := keys(nKeys)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]int{}
			for _, id := range assign(NewRing(named(tt.ids...), 0), ks) {
				got[id]++
			}
			most := 0
			for _, c := range got {
				most = max(most, c)
			}
			ratio := float64(most) / (nKeys / n)
			t.Logf("max/mean = %.3f", ratio)
			if ratio > bound {
				t.Errorf("the fullest endpoint has %d keys, %.3f × the mean; want at most %.2f ×", most, ratio, bound)
			}
		})
	}
}

// TestRingSpreadDistribution measures, over many random sets of 10
// replica IDs, the fullest endpoint's share of the ring (its arcs, exactly)
// relative to the mean: the figures the Ring's documentation states.
func TestRingSpreadDistribution(t *testing.T) {
	const (
		n    = 10
		sets = 1000
	)
	ratios := make([]float64, sets)
	for s := range sets {
		r := NewRing(named(replicaIDs(n, uint64(1000+s))...), 0)
		ratios[s] = slices.Max(r.shares()) * n
	}
	slices.Sort(ratios)
	median, p90, p99 := ratios[sets/2], ratios[sets*9/10], ratios[sets*99/100]
	t.Logf("max/mean over %d sets of %d endpoints: median %.3f, p90 %.3f, p99 %.3f, max %.3f", sets, n, median, p90, p99, ratios[sets-1])
	for _, q := range []struct {
		name      string
		got, want float64
	}{{"median", median, 1.15}, {"p90", p90, 1.2}, {"p99", p99, 1.25}} {
		if q.got > q.want {
			t.Errorf("%s max/mean = %.3f, want at most %.2f", q.name, q.got, q.want)
		}
	}
}

// shares returns the fraction of the ring each endpoint owns, by r.eps.
func (r *Ring) shares() []float64 {
	out := make([]float64, len(r.eps))
	for i, p := range r.points {
		prev := r.points[(i+len(r.points)-1)%len(r.points)]
		out[r.owners[i]] += float64(p-prev) / math.Exp2(64) // p-prev wraps around 2^64
	}
	return out
}

// TestRingBoundedLoad sends hot keys (most requests on a few keys) with
// requests held open and released at random: a pick never takes an
// endpoint past ceil(c × mean), and while requests only arrive no endpoint
// exceeds ceil(c × mean) + 1.
func TestRingBoundedLoad(t *testing.T) {
	tests := []struct {
		n       int
		c       float64
		hotKeys int
	}{
		{n: 3, c: 1.25, hotKeys: 1},
		{n: 10, c: 1.25, hotKeys: 3},
		{n: 10, c: 1.5, hotKeys: 5},
		{n: 10, c: 2, hotKeys: 2},
		{n: 25, c: 1.1, hotKeys: 4},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.n)+"/"+strconv.FormatFloat(tt.c, 'g', -1, 64), func(t *testing.T) {
			eps := named(replicaIDs(tt.n, 5)...)
			r := NewRing(eps, tt.c)
			rng := rand.New(rand.NewPCG(8, 9))
			hot := keys(tt.hotKeys)
			key := func() uint64 {
				if rng.IntN(10) < 8 {
					return hot[rng.IntN(len(hot))]
				}
				return rng.Uint64()
			}
			var open []*Endpoint
			total := 0
			check := func(e *Endpoint, phase string) {
				e.Acquire()
				open = append(open, e)
				total++
				limit := int64(math.Ceil(tt.c * float64(total) / float64(tt.n)))
				if e.InFlight() > limit {
					t.Fatalf("%s: picked %s up to %d in flight, over ceil(c × mean) = %d", phase, e.ID, e.InFlight(), limit)
				}
			}
			// Arrivals only.
			for range 2000 {
				check(r.Pick(key(), nil), "arrivals")
				limit := int64(math.Ceil(tt.c*float64(total)/float64(tt.n))) + 1
				for _, e := range eps {
					if e.InFlight() > limit {
						t.Fatalf("arrivals: %s has %d in flight, over ceil(c × mean) + 1 = %d", e.ID, e.InFlight(), limit)
					}
				}
			}
			// Arrivals and departures.
			for range 20000 {
				if len(open) > 0 && rng.IntN(2) == 0 {
					i := rng.IntN(len(open))
					open[i].Release()
					open[i] = open[len(open)-1]
					open = open[:len(open)-1]
					total--
					continue
				}
				check(r.Pick(key(), nil), "steady")
			}
		})
	}
}

// TestRingOverflowSpreads fills one endpoint of 10: the keys it held go
// elsewhere, spread over the other nine, not onto the endpoint that
// follows each key on the ring (the cascade of walking the ring).
func TestRingOverflowSpreads(t *testing.T) {
	eps := named(replicaIDs(10, 6)...)
	r := NewRing(eps, 0)
	ks := keys(50000)
	home := assign(r, ks)
	full := eps[0]
	full.inFlight.Store(1000) // over ceil(1.25 × 1001 / 10) = 126
	moved := map[string]int{}
	var held, toWalkNext int
	for i, k := range ks {
		got := r.Pick(k, nil)
		if home[i] != full.ID {
			if got.ID != home[i] {
				t.Fatalf("key %d moved from %s to %s, though only %s is full", i, home[i], got.ID, full.ID)
			}
			continue
		}
		held++
		if got == full {
			t.Fatalf("key %d stayed on the full endpoint", i)
		}
		moved[got.ID]++
		if got == r.walkNext(k) {
			toWalkNext++
		}
	}
	if len(moved) != len(eps)-1 {
		t.Errorf("the full endpoint's keys went to %d endpoints, want all %d others", len(moved), len(eps)-1)
	}
	for id, c := range moved {
		if share := float64(c) / float64(held); share > 0.2 || share < 0.05 {
			t.Errorf("%s took %.3f of the full endpoint's keys; want about 1/9", id, share)
		}
	}
	if share := float64(toWalkNext) / float64(held); share > 0.2 {
		t.Errorf("%.3f of the full endpoint's keys went to their ring successor: overflow walks the ring", share)
	}
}

// walkNext returns the first endpoint other than its owner after key's
// point on the ring: where walking the ring would send an overflow.
func (r *Ring) walkNext(key uint64) *Endpoint {
	i, _ := slices.BinarySearch(r.points, key)
	first := r.owner(key)
	for j := range len(r.points) {
		if e := r.eps[r.owners[(i+j)%len(r.points)]]; e != first {
			return e
		}
	}
	return first
}

// TestRingExclude excludes an endpoint: its keys move elsewhere, the same
// way every time, and the others' keys stay.
func TestRingExclude(t *testing.T) {
	eps := named(replicaIDs(5, 7)...)
	r := NewRing(eps, 0)
	ks := keys(5000)
	home := assign(r, ks)
	gone := eps[2]
	exclude := func(e *Endpoint) bool { return e == gone }
	for i, k := range ks {
		got := r.Pick(k, exclude)
		switch {
		case got == gone:
			t.Fatalf("key %d went to the excluded endpoint", i)
		case home[i] != gone.ID && got.ID != home[i]:
			t.Fatalf("key %d moved from %s to %s", i, home[i], got.ID)
		case r.Pick(k, exclude) != got:
			t.Fatalf("key %d went to %s, then elsewhere", i, got.ID)
		}
	}
}

// TestRingFallsBackToLeastLoaded finds a key whose endpoint and every jump
// are full: the least loaded endpoint takes it.
func TestRingFallsBackToLeastLoaded(t *testing.T) {
	eps := named("a", "b")
	r := NewRing(eps, 0)
	eps[0].inFlight.Store(9) // a full: 9+1 > ceil(1.25 × 10 / 2) = 7
	for i := range 10000 {
		k := HashKey("k" + strconv.Itoa(i))
		if r.owner(k) != eps[0] || r.owner(jump(k, 1)) != eps[0] {
			continue
		}
		if got := r.Pick(k, nil); got != eps[1] {
			t.Fatalf("Pick = %s, want the least loaded, b", got.ID)
		}
		eps[1].inFlight.Store(20) // both over the bound: still the least loaded
		if got := r.Pick(k, nil); got != eps[0] {
			t.Fatalf("Pick = %s, want the least loaded, a", got.ID)
		}
		return
	}
	t.Fatal("no key maps to a on both tries")
}

func TestRingMatches(t *testing.T) {
	eps := named("a", "b", "c")
	r := NewRing(eps, 0)
	tests := []struct {
		name string
		eps  []*Endpoint
		want bool
	}{
		{name: "same", eps: eps, want: true},
		{name: "reordered", eps: []*Endpoint{eps[2], eps[0], eps[1]}, want: true},
		{name: "one fewer", eps: eps[:2], want: false},
		{name: "one more", eps: append(slices.Clone(eps), NewEndpoint("d", "")), want: false},
		{name: "same IDs, other endpoints", eps: named("a", "b", "c"), want: false},
	}
	for _, tt := range tests {
		if got := r.Matches(tt.eps); got != tt.want {
			t.Errorf("%s: Matches = %v, want %v", tt.name, got, tt.want)
		}
	}
	var nilRing *Ring
	if nilRing.Matches(nil) {
		t.Error("a nil ring matches")
	}
	if r.Len() != 3 {
		t.Errorf("Len = %d, want 3", r.Len())
	}
}

func TestRingPickAllocates(t *testing.T) {
	eps := named(replicaIDs(10, 8)...)
	r := NewRing(eps, 0)
	eps[3].inFlight.Store(50) // some keys jump
	exclude := func(e *Endpoint) bool { return e == eps[5] }
	ks := keys(256)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		r.Pick(ks[i%len(ks)], exclude)
		r.Pick(PrefixKey("You are a helpful assistant.", 16), nil)
		i++
	})
	if allocs != 0 {
		t.Errorf("Pick allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkRingPick(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			eps := named(replicaIDs(n, 9)...)
			for i, e := range eps {
				e.inFlight.Store(int64(i % 4)) // uneven: some keys jump
			}
			r := NewRing(eps, 0)
			ks := keys(1024)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Pick(ks[i&1023], nil)
				i++
			}
		})
	}
}
