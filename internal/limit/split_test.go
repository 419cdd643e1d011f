package limit

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// TestSplitError measures the error of the cluster split (Scale): a
// tenant's limit enforced by N gateways, each holding 1/N of it, when the
// tenant's requests spread unevenly over them. Requests arrive evenly
// spaced at offered × the limit's capacity, each at a gateway drawn at
// random with the spread's odds, for ten simulated minutes; the figure is
// what the split admits as a fraction of what one gateway holding the
// whole limit admits of the same requests. The analytic value, for a load
// steady enough that the buckets do not matter, is
// Σ min(p_i × offered, 1/N) / min(offered, 1) for a rate; for a
// concurrency limit it follows Erlang's loss formula, since N pools of
// C/N places turn away more of a random stream than one of C, however
// evenly it spreads. docs/limits.md quotes the
// figures that `go test -v -run TestSplitError ./internal/limit/` logs.
func TestSplitError(t *testing.T) {
	const (
		rate    = 100.0 // requests/s; burst 100
		conc    = 10    // in flight, each request holding its place for hold
		hold    = 100 * time.Millisecond
		seconds = 600
	)
	tests := []struct {
		kind    string
		spread  []float64
		offered float64 // × the limit's capacity (rate, or conc/hold)
	}{
		{KindRate, []float64{0.5, 0.5}, 1.0},
		{KindRate, []float64{0.7, 0.3}, 0.5},
		{KindRate, []float64{0.7, 0.3}, 0.8},
		{KindRate, []float64{0.7, 0.3}, 1.0},
		{KindRate, []float64{0.7, 0.3}, 1.5},
		{KindRate, []float64{0.7, 0.3}, 2.0},
		{KindRate, []float64{0.9, 0.1}, 1.0},
		{KindRate, []float64{0.4, 0.3, 0.3}, 1.0},
		{KindConcurrency, []float64{0.5, 0.5}, 1.0},
		{KindConcurrency, []float64{0.7, 0.3}, 1.0},
		{KindConcurrency, []float64{0.7, 0.3}, 2.0},
	}
	t.Logf("%-12s %-14s %8s %9s %9s %9s", "limit", "spread", "offered", "analytic", "measured", "of limit")
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %v x%v", tt.kind, tt.spread, tt.offered), func(t *testing.T) {
			limit := serving.Limit{Tenant: "acme", Rate: rate, Burst: rate}
			capacity := rate
			var holdFor time.Duration
			if tt.kind == KindConcurrency {
				limit = serving.Limit{Tenant: "acme", Concurrency: conc}
				capacity, holdFor = conc/hold.Seconds(), hold
			}
			n := len(tt.spread)
			whole := simulate(t, limit, []float64{1}, tt.offered*capacity, holdFor, seconds)
			split := simulate(t, limit, tt.spread, tt.offered*capacity, holdFor, seconds)
			measured := float64(split) / float64(whole)
			analytic := 0.0
			if tt.kind == KindRate {
				for _, p := range tt.spread {
					analytic += min(p*tt.offered, 1/float64(n))
				}
				analytic /= min(tt.offered, 1)
			} else {
				// Erlang's loss formula: conc places, Poisson arrivals,
				// a refused request lost. Each gateway is its own
				// smaller pool of places.
				load := tt.offered * conc // Erlangs
				for _, p := range tt.spread {
					analytic += p * (1 - erlangB(conc/n, p*load))
				}
				analytic /= 1 - erlangB(conc, load)
			}
			// Never more than the limit allows over the run, beyond the
			// buckets' bursts.
			most := capacity*seconds + rate
			overshoot := float64(split) / most
			t.Logf("%-12s %-14s %8.1f %9.3f %9.3f %9.3f", tt.kind, fmt.Sprint(tt.spread), tt.offered, analytic, measured, overshoot)
			if measured < analytic-0.03 || measured > analytic+0.03 {
				t.Errorf("split admitted %.3f of what one gateway admits, want about %.3f", measured, analytic)
			}
			if overshoot > 1 {
				t.Errorf("split admitted %d, more than the limit allows (%.0f)", split, most)
			}
		})
	}
}

// simulate sends requests at offered per second, a Poisson stream, for
// seconds, to len(spread) gateways with the spread's odds, each enforcing
// 1/len(spread) of limit, and returns how many were admitted. Each
// admitted request holds its place in flight for hold.
func simulate(t *testing.T, limit serving.Limit, spread []float64, offered float64, hold time.Duration, seconds int) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	gws := make([]*Limiter, len(spread))
	for i := range gws {
		gws[i] = New(Options{})
		swap(t, gws[i], 1/float64(len(spread)), limit)
	}
	type held struct {
		until time.Time
		tk    Ticket
	}
	var inFlight []held // in order of admission: all hold alike
	admitted := 0
	end := t0.Add(time.Duration(seconds) * time.Second)
	for now := t0; now.Before(end); now = now.Add(time.Duration(rng.ExpFloat64() / offered * float64(time.Second))) {
		for len(inFlight) > 0 && !inFlight[0].until.After(now) {
			inFlight[0].tk.Release()
			inFlight = inFlight[1:]
		}
		g, u := 0, rng.Float64()
		for g < len(spread)-1 && u >= spread[g] {
			u -= spread[g]
			g++
		}
		tk, _, ok := gws[g].Admit("acme", "d", now)
		if !ok {
			continue
		}
		admitted++
		inFlight = append(inFlight, held{now.Add(hold), tk})
	}
	return admitted
}

// erlangB is the share of a Poisson stream of load Erlangs that finds all
// of places busy.
func erlangB(places int, load float64) float64 {
	b := 1.0
	for k := 1; k <= places; k++ {
		b = load * b / (float64(k) + load*b)
	}
	return b
}
