package scenarios

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/balance"
)

// Ring measures the consistent-hash ring with bounded loads that
// spec.routing's consistentHash and prefix policies use (balance.Ring), in
// process: how evenly it spreads keys, how many keys move when a replica
// leaves or joins, and whether bounded loads hold under a skewed (Zipf)
// key load, with the share of requests that still reached their key's home
// replica. It starts no server: these are properties of the placement, the
// same on every gateway.
type Ring struct{}

// Name implements harness.Scenario.
func (Ring) Name() string { return "ring" }

// Title implements harness.Scenario.
func (Ring) Title() string { return "11. Consistent hashing with bounded loads" }

// ringIDs returns n replica IDs shaped like the process backend's.
func ringIDs(rng *rand.Rand, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("sessions-%08x", rng.Uint32())
	}
	return ids
}

func ringOf(ids []string, loadFactor float64) (*balance.Ring, []*balance.Endpoint) {
	eps := make([]*balance.Endpoint, len(ids))
	for i, id := range ids {
		eps[i] = balance.NewEndpoint(id, "http://127.0.0.1:0")
	}
	return balance.NewRing(eps, loadFactor), eps
}

// owners maps each key to its replica's ID on a ring with no load.
func owners(r *balance.Ring, keys []uint64) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = r.Pick(k, nil).ID
	}
	return out
}

// Run implements harness.Scenario.
func (Ring) Run(_ context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	res.Figures = map[string]float64{}
	rng := rand.New(rand.NewPCG(1, 2))
	const replicas = 10
	nKeys := 1000
	moveKeys := harness.Pick(env, 100000, 20000)
	sets := harness.Pick(env, 200, 50)

	// Spread: 1,000 keys on 10 replicas, over many random sets of IDs.
	keys := make([]uint64, nKeys)
	for i := range keys {
		keys[i] = balance.HashKey(fmt.Sprintf("user-%d", i))
	}
	var spreads []float64
	for range sets {
		r, _ := ringOf(ringIDs(rng, replicas), 0)
		count := map[string]int{}
		for _, o := range owners(r, keys) {
			count[o]++
		}
		most := 0
		for _, c := range count {
			most = max(most, c)
		}
		spreads = append(spreads, float64(most)/(float64(nKeys)/replicas))
	}
	spreadMax := slicesMax(spreads)
	const spreadBound = 1.5
	res.Goals = append(res.Goals, harness.Goal{
		Name: "spread of 1,000 keys", Target: fmt.Sprintf("the fullest of %d replicas holds ≤ %.2f× the mean, over %d random sets of replica IDs", replicas, spreadBound, sets),
		Ebb: spreadMax, Unit: "× mean (worst set)", Met: spreadMax <= spreadBound,
		Detail: fmt.Sprintf("fullest replica / mean: median %.3f, 90th percentile %.3f, worst %.3f (%d keys, %d virtual nodes per replica; 1,000 keys alone vary by about 1/√100 = 10%% per replica)",
			quantileF(spreads, 0.5), quantileF(spreads, 0.9), spreadMax, nKeys, balance.RingVNodes),
	})
	res.Figures["spread.max"], res.Figures["spread.median"] = spreadMax, quantileF(spreads, 0.5)

	// Movement: remove each replica in turn, and add one, for several N.
	mkeys := make([]uint64, moveKeys)
	for i := range mkeys {
		mkeys[i] = balance.HashKey(fmt.Sprintf("key-%d", i))
	}
	moves := harness.Table{Caption: fmt.Sprintf("Keys moved (of %d) when one replica leaves or joins, against the theoretical 1/N (leave) and 1/(N+1) (join)", moveKeys),
		Header: []string{"N", "leave: mean moved", "leave: most moved", "most / (1/N)", "join: moved", "join / (1/(N+1))", "moved to a replica other than the new one"}}
	worst := 0.0
	for _, n := range []int{3, 5, 10, 20} {
		ids := ringIDs(rng, n)
		r, _ := ringOf(ids, 0)
		base := owners(r, mkeys)
		var sum, most float64
		for leave := range ids {
			rest := append(append([]string{}, ids[:leave]...), ids[leave+1:]...)
			r2, _ := ringOf(rest, 0)
			moved, wrong := 0, 0
			for i, o := range owners(r2, mkeys) {
				if o != base[i] {
					moved++
					if base[i] != ids[leave] {
						wrong++
					}
				}
			}
			if wrong > 0 {
				return res, fmt.Errorf("ring: removing %s moved %d keys it did not hold", ids[leave], wrong)
			}
			f := float64(moved) / float64(moveKeys)
			sum += f
			most = max(most, f)
		}
		joined := append(append([]string{}, ids...), ringIDs(rng, 1)...)
		r3, _ := ringOf(joined, 0)
		moved, elsewhere := 0, 0
		for i, o := range owners(r3, mkeys) {
			if o != base[i] {
				moved++
				if o != joined[len(joined)-1] {
					elsewhere++
				}
			}
		}
		joinF := float64(moved) / float64(moveKeys)
		leaveRatio, joinRatio := most*float64(n), joinF*float64(n+1)
		worst = max(worst, leaveRatio, joinRatio)
		moves.Rows = append(moves.Rows, []string{fmt.Sprint(n), fmt.Sprintf("%.4f", sum/float64(n)), fmt.Sprintf("%.4f", most), fmt.Sprintf("%.2f", leaveRatio),
			fmt.Sprintf("%.4f", joinF), fmt.Sprintf("%.2f", joinRatio), fmt.Sprint(elsewhere)})
		res.Figures[fmt.Sprintf("moved.leave.n%d.most", n)] = most
		res.Figures[fmt.Sprintf("moved.join.n%d", n)] = joinF
	}
	res.Tables = append(res.Tables, moves)
	res.Goals = append(res.Goals, harness.Goal{
		Name: "keys moved when a replica leaves or joins", Target: "≤ 1.2× the theoretical 1/N (leave, the worst replica) and 1/(N+1) (join)",
		Ebb: worst, Unit: "× theoretical (worst)", Met: worst <= 1.2,
		Detail: fmt.Sprintf("worst over N = 3, 5, 10, 20 and every replica leaving: %.2f× the theoretical share; only the leaving replica's keys move, and joining moves keys only onto the new one (see the table)", worst),
	})

	// Bounded loads under a Zipf key load.
	const loadFactor = balance.DefaultLoadFactor
	steps := harness.Pick(env, 200000, 50000)
	const inFlight = 200
	zids := ringIDs(rng, replicas)
	r, eps := ringOf(zids, loadFactor)
	idle, _ := ringOf(zids, loadFactor) // no load: each key's home replica
	home := map[uint64]string{}
	zipf := rand.NewZipf(rand.New(rand.NewPCG(3, 4)), 1.1, 1, uint64(nKeys-1))
	type req struct{ ep *balance.Endpoint }
	var open []req
	hits := 0
	worstRatio := 0.0
	for range steps {
		k := keys[zipf.Uint64()]
		if _, ok := home[k]; !ok {
			home[k] = idle.Pick(k, nil).ID
		}
		ep := r.Pick(k, nil)
		ep.Acquire()
		open = append(open, req{ep})
		if ep.ID == home[k] {
			hits++
		}
		var total int64
		var most int64
		for _, e := range eps {
			total += e.InFlight()
			most = max(most, e.InFlight())
		}
		mean := float64(total) / replicas
		if bound := math.Ceil(loadFactor * mean); float64(most) > bound {
			return res, fmt.Errorf("ring: a replica carried %d requests, over the bound %.0f (mean %.1f)", most, bound, mean)
		}
		if total >= inFlight/2 {
			worstRatio = max(worstRatio, float64(most)/mean)
		}
		if len(open) >= inFlight {
			i := rng.IntN(len(open))
			open[i].ep.Release()
			open[i] = open[len(open)-1]
			open = open[:len(open)-1]
		}
	}
	hitRate := float64(hits) / float64(steps)
	res.Goals = append(res.Goals, harness.Goal{
		Name: "bounded load under a Zipf key load", Target: fmt.Sprintf("no replica over ceil(%.2f × the mean in flight) at any step", loadFactor),
		Ebb: worstRatio, Unit: "× mean (worst, at ≥ 100 in flight)", Met: true,
		Detail: fmt.Sprintf("%d requests over %d keys, Zipf s=1.1 (the hottest key takes about %.0f%% of them), %d in flight on %d replicas: the fullest replica carried at most %.2f× the mean; %.1f%% of requests reached their key's home replica (the cache-hit rate)",
			steps, nKeys, 100*zipfTop(nKeys, 1.1), inFlight, replicas, worstRatio, 100*hitRate),
	})
	res.Figures["zipf.worstRatio"], res.Figures["zipf.hitRate"] = worstRatio, hitRate
	res.Summary = fmt.Sprintf("The ring of `spec.routing` (internal/balance.Ring, %d virtual nodes per replica, keys hashed with FNV-1a and a fixed finalizer), measured in process with random replica IDs shaped like the process backend's: the spread of 1,000 keys over %d replicas across %d random sets of IDs; keys moved when one replica leaves (each in turn) or one joins, over %d keys; and a simulated Zipf load with %d requests in flight, where the ring's load bound (loadFactor %.2f) is checked at every step (a step over it fails the scenario).",
		balance.RingVNodes, replicas, sets, moveKeys, inFlight, loadFactor)
	return res, nil
}

// quantileF is the nearest-rank q-quantile of v.
func quantileF(v []float64, q float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func slicesMax(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// zipfTop is the share of the most frequent of n keys under Zipf exponent s
// (rand.NewZipf with v = 1: P(k) ∝ (1+k)^-s).
func zipfTop(n int, s float64) float64 {
	var sum float64
	for k := range n {
		sum += math.Pow(float64(1+k), -s)
	}
	return 1 / sum
}
