package pool

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// simReplica is a replica in the replay: what it holds, at the sizes it
// measured. Like package server it refuses a load whose measured size does
// not fit its budget, reporting the size.
type simReplica struct {
	id     string
	budget int64
	held   map[string]*Hosted
	used   int64
}

func (r *simReplica) state() Replica {
	out := Replica{ID: r.id, Budget: r.budget}
	for _, h := range r.held {
		out.Models = append(out.Models, *h)
	}
	return out
}

// TestReplayZipf replays a stream of requests for 10,000 models with Zipf
// popularity through Plan and a simulated pool that applies its actions:
// no replica ever holds more than its budget, no model with a request in
// flight is ever unloaded, every request is served (after a cold load if
// need be), and the hit rate (requests that found their model loaded) is
// reported.
func TestReplayZipf(t *testing.T) {
	const (
		models   = 10000
		requests = 40000
		nrep     = 6
		budget   = 8 << 20
		gap      = 5 * time.Millisecond  // between arrivals
		duration = 20 * time.Millisecond // of one request
		ticks    = 10                    // arrivals per control-loop tick
		tick     = ticks * gap
	)
	rng := rand.New(rand.NewPCG(14, 4))
	names := modelNames(models)
	size := make(map[string]int64, models)
	for _, m := range names {
		size[m] = 16<<10 + rng.Int64N(240<<10) // 16 to 256 KiB
	}
	zipf := rand.NewZipf(rng, 1.1, 1, models-1)
	p := Policy{Replicas: 2}

	ids := replicaIDs(nrep)
	reps := map[string]*simReplica{}
	for _, id := range ids {
		reps[id] = &simReplica{id: id, budget: budget, held: map[string]*Hosted{}}
	}
	state := State{Models: map[string]Model{}}
	type running struct {
		end     time.Time
		replica string
		model   string
	}
	var inFlight []running
	var hits, misses, refusals, evictions, unserved, plans int
	var peak int64

	plan := func(now time.Time, held []string) {
		plans++
		state.Replicas = state.Replicas[:0]
		for _, id := range ids {
			state.Replicas = append(state.Replicas, reps[id].state())
		}
		var demand []Demand
		for _, m := range held {
			demand = append(demand, Demand{Model: m, Held: 1})
		}
		d := Plan(now, state, demand, p)
		// drift is how much more the replicas hold than the plan counted,
		// from estimates too low.
		drift := map[string]int64{}
		for m, rec := range d.Models {
			state.Models[m] = rec
		}
		for _, a := range d.Actions {
			r := reps[a.Replica]
			switch a.Kind {
			case Unload:
				h := r.held[a.Model]
				if h == nil {
					t.Fatalf("plan unloads %s from replica %s, which does not hold it", a.Model, a.Replica)
				}
				if h.InFlight > 0 {
					t.Fatalf("plan unloads %s from replica %s with %d requests in flight", a.Model, a.Replica, h.InFlight)
				}
				r.used -= h.Bytes
				delete(r.held, a.Model)
				evictions++
			case Load:
				if r.used > r.budget {
					t.Fatalf("replica %s holds %d bytes, over its budget %d, before a load", r.id, r.used, r.budget)
				}
				actual := size[a.Model]
				if r.used+actual > r.budget {
					// The replica measured it and refused: the plan
					// learns the size. Only a size the plan had to
					// estimate may be refused.
					if a.Bytes == actual && r.used-drift[r.id]+actual > r.budget {
						t.Fatalf("plan loads %s (%d bytes, measured) on replica %s holding %d of %d bytes", a.Model, actual, r.id, r.used, r.budget)
					}
					refusals++
					rec := state.Models[a.Model]
					rec.Bytes = max(rec.Bytes, actual)
					state.Models[a.Model] = rec
					continue
				}
				r.used += actual
				drift[r.id] += actual - a.Bytes
				peak = max(peak, r.used)
				r.held[a.Model] = &Hosted{Model: a.Model, State: Ready, Bytes: actual, LastUsed: now}
			}
		}
	}
	// serve finds a replica of the model's route holding it, the least
	// busy, and starts the request there.
	serve := func(now time.Time, model string) bool {
		var best *Hosted
		var where string
		for _, id := range ids {
			if h := reps[id].held[model]; h != nil && (best == nil || h.InFlight < best.InFlight) {
				best, where = h, id
			}
		}
		if best == nil {
			return false
		}
		best.InFlight++
		best.LastUsed = now
		inFlight = append(inFlight, running{now.Add(duration), where, model})
		return true
	}

	// The control loop plans once per tick for the requests held since
	// the last one; they are served (cold) right after.
	began := time.Now()
	now := t0
	var held []string
	heldSince := map[string]time.Time{}
	for i := range requests {
		now = now.Add(gap)
		inFlight = slices.DeleteFunc(inFlight, func(r running) bool {
			if r.end.After(now) {
				return false
			}
			if h := reps[r.replica].held[r.model]; h != nil {
				h.InFlight--
			}
			return true
		})
		m := names[zipf.Uint64()]
		if serve(now, m) {
			hits++
		} else {
			misses++
			if _, ok := heldSince[m]; !ok {
				heldSince[m] = now
			}
			held = append(held, m)
		}
		if (i+1)%ticks != 0 || len(held) == 0 {
			continue
		}
		plan(now, held)
		var still []string
		for _, m := range held {
			switch {
			case serve(now, m):
				delete(heldSince, m)
			case now.Sub(heldSince[m]) > 3*tick:
				unserved++
				delete(heldSince, m)
			default:
				still = append(still, m) // refused once: planned again with its size
			}
		}
		held = still
	}
	for _, id := range ids {
		if r := reps[id]; r.used > r.budget {
			t.Errorf("replica %s ends with %d bytes of %d budget", id, r.used, r.budget)
		}
	}
	rate := float64(hits) / requests
	t.Logf("%d requests for %d models (Zipf s=1.1) on %d replicas of %s, k=%d: hit rate %.1f%%, %d misses held for %d plans, %d evictions, %d loads refused for an estimate too low, %d unserved; peak replica memory %d of %d bytes; replay took %v",
		requests, models, nrep, FormatBytes(budget), p.Replicas, 100*rate, misses, plans, evictions, refusals, unserved, peak, budget, time.Since(began).Round(time.Millisecond))
	if unserved > 0 {
		t.Errorf("%d requests found no replica able to load their model", unserved)
	}
	if rate < 0.5 {
		t.Errorf("hit rate %.1f%%, want at least 50%% for this cache size and skew", 100*rate)
	}
	if refusals > misses/5 {
		t.Errorf("%d loads refused for %d misses: the size estimate is off", refusals, misses)
	}
}
