package pool

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// ready is a model held and idle on a replica, last used ago before t0+1h.
func ready(model string, bytes int64, ago time.Duration) Hosted {
	return Hosted{Model: model, State: Ready, Bytes: bytes, LastUsed: at(time.Hour - ago)}
}

func busy(h Hosted, inFlight int) Hosted {
	h.InFlight = inFlight
	return h
}

// step is an action in a compact form for comparisons.
type step struct {
	Kind           ActionKind
	Replica, Model string
	Bytes          int64
}

func steps(as []Action) []step {
	var out []step
	for _, a := range as {
		out = append(out, step{a.Kind, a.Replica, a.Model, a.Bytes})
	}
	return out
}

func TestPlanMemory(t *testing.T) {
	now := at(time.Hour)
	one := func(budget int64, hosted ...Hosted) []Replica {
		return []Replica{{ID: "0", Budget: budget, Models: hosted}}
	}
	p := Policy{Replicas: 1}
	tests := []struct {
		name    string
		state   State
		demand  []Demand
		p       Policy
		want    []step
		routes  map[string][]string
		refused string // substring of Unplaced["new"]
	}{
		{
			name:   "fits: load only",
			state:  State{Replicas: one(100, ready("a", 30, time.Minute))},
			demand: []Demand{{Model: "new", Held: 1}},
			p:      Policy{Replicas: 1, DefaultBytes: 30},
			want:   []step{{Load, "0", "new", 30}},
			routes: map[string][]string{"a": {"0"}, "new": {"0"}},
		},
		{
			name: "evicts the least recently used",
			state: State{Replicas: one(100, ready("a", 30, 3*time.Minute), ready("b", 30, 2*time.Minute), ready("c", 30, time.Minute)),
				Models: map[string]Model{"new": {Bytes: 30}}},
			demand: []Demand{{Model: "new", Held: 1}},
			p:      p,
			want:   []step{{Unload, "0", "a", 30}, {Load, "0", "new", 30}},
			routes: map[string][]string{"b": {"0"}, "c": {"0"}, "new": {"0"}},
		},
		{
			name: "never evicts a model with requests in flight",
			state: State{Replicas: one(100, busy(ready("a", 30, 3*time.Minute), 1), ready("b", 30, 2*time.Minute), ready("c", 30, time.Minute)),
				Models: map[string]Model{"new": {Bytes: 30}}},
			demand: []Demand{{Model: "new", Held: 1}},
			p:      p,
			want:   []step{{Unload, "0", "b", 30}, {Load, "0", "new", 30}},
		},
		{
			name: "evicts several small ones for a big one",
			state: State{Replicas: one(100, ready("a", 20, 3*time.Minute), ready("b", 20, 2*time.Minute), ready("c", 20, time.Minute), ready("d", 20, 0)),
				Models: map[string]Model{"new": {Bytes: 70}}},
			demand: []Demand{{Model: "new", Held: 1}},
			p:      p,
			want:   []step{{Unload, "0", "a", 20}, {Unload, "0", "b", 20}, {Unload, "0", "c", 20}, {Load, "0", "new", 70}},
		},
		{
			name: "no room: nothing evicted in vain",
			state: State{Replicas: one(100, busy(ready("a", 40, time.Minute), 1), ready("b", 40, time.Minute)),
				Models: map[string]Model{"new": {Bytes: 50}}},
			demand:  []Demand{{Model: "new", Held: 1}, {Model: "b", InFlight: 0.5}},
			p:       p,
			want:    nil,
			refused: "no room",
		},
		{
			name:    "bigger than the whole budget: refused with both sizes",
			state:   State{Replicas: one(100), Models: map[string]Model{"new": {Bytes: 200}}},
			demand:  []Demand{{Model: "new", Held: 1}},
			p:       p,
			want:    nil,
			refused: "needs 200 B (200 bytes, measured after load) but a replica of the pool has a memory budget of 100 B (100 bytes)",
		},
		{
			name:   "never measured: counted at the mean of the measured",
			state:  State{Replicas: one(100, ready("a", 40, 2*time.Minute), ready("b", 20, time.Minute), ready("c", 30, 0))},
			demand: []Demand{{Model: "new", Held: 1}},
			p:      p,
			want:   []step{{Unload, "0", "a", 40}, {Load, "0", "new", 30}},
		},
		{
			name: "a model still loading counts, and is not evicted",
			state: State{Replicas: one(100, Hosted{Model: "l", State: Loading}, ready("a", 30, time.Minute), ready("b", 30, 0)),
				Models: map[string]Model{"new": {Bytes: 30}}},
			demand: []Demand{{Model: "new", Held: 1}},
			p:      Policy{Replicas: 1, DefaultBytes: 30},
			want:   []step{{Unload, "0", "a", 30}, {Load, "0", "new", 30}},
		},
		{
			name:   "over budget without demand: sheds idle models",
			state:  State{Replicas: one(100, ready("a", 60, time.Minute), ready("b", 60, 0))},
			p:      p,
			want:   []step{{Unload, "0", "a", 60}},
			routes: map[string][]string{"b": {"0"}},
		},
		{
			name:   "two loads in one plan do not evict each other",
			state:  State{Replicas: one(100, ready("a", 50, time.Minute)), Models: map[string]Model{"new": {Bytes: 60}, "x": {Bytes: 60}}},
			demand: []Demand{{Model: "new", Held: 2}, {Model: "x", Held: 1}},
			p:      p,
			want:   []step{{Unload, "0", "a", 50}, {Load, "0", "new", 60}},
		},
		{
			name:    "a failed load is not retried",
			state:   State{Replicas: one(100, Hosted{Model: "new", State: Unavailable, Reason: "bad file"})},
			demand:  []Demand{{Model: "new", Held: 1}},
			p:       p,
			want:    nil,
			refused: "failed to load on replica 0: bad file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Plan(now, tt.state, tt.demand, tt.p)
			if diff := cmp.Diff(tt.want, steps(d.Actions)); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			if tt.routes != nil {
				if diff := cmp.Diff(tt.routes, d.Routes); diff != "" {
					t.Errorf("routes (-want +got):\n%s", diff)
				}
			}
			err := d.Unplaced["new"]
			switch {
			case tt.refused == "" && err != nil:
				t.Errorf("new unplaced: %v", err)
			case tt.refused != "" && (err == nil || !strings.Contains(err.Error(), tt.refused)):
				t.Errorf("new unplaced: %v, want an error containing %q", err, tt.refused)
			}
			checkBudgets(t, tt.state, d, tt.p)
			// PlanActions decides the same, without the routes.
			a := PlanActions(now, tt.state, tt.demand, tt.p)
			if diff := cmp.Diff(steps(d.Actions), steps(a.Actions)); diff != "" || a.Routes != nil || len(a.Unplaced) != len(d.Unplaced) {
				t.Errorf("PlanActions: routes %v, unplaced %v; actions (-Plan +PlanActions):\n%s", a.Routes, a.Unplaced, diff)
			}
		})
	}
}

// checkBudgets checks that no replica's planned memory passes its budget
// after d's actions, unless it was over before and nothing idle is left.
func checkBudgets(t *testing.T, s State, d Decision, p Policy) {
	t.Helper()
	for _, r := range s.Replicas {
		var used, before int64
		est := estimateBytes(s, p.withDefaults())
		for _, h := range r.Models {
			size := h.Bytes
			if h.State == Loading && size == 0 {
				size = est
			}
			used += size
			before += size
		}
		for _, a := range d.Actions {
			if a.Replica != r.ID {
				continue
			}
			if a.Kind == Load {
				used += a.Bytes
			} else {
				used -= a.Bytes
			}
		}
		if used > r.Budget && used > before {
			t.Errorf("replica %s: planned %d bytes of %d budget", r.ID, used, r.Budget)
		}
	}
}

func TestPlanTooLargeError(t *testing.T) {
	s := State{Replicas: []Replica{{ID: "0", Budget: 512 << 20}}, Models: map[string]Model{"huge": {Bytes: 3 << 30}}}
	d := Plan(at(0), s, []Demand{{Model: "huge", Held: 1}}, Policy{})
	var tl *TooLargeError
	if !errors.As(d.Unplaced["huge"], &tl) || tl.Bytes != 3<<30 || tl.Budget != 512<<20 {
		t.Fatalf("Unplaced[huge] = %v, want a TooLargeError with 3 GiB and 512 MiB", d.Unplaced["huge"])
	}
	if msg := tl.Error(); !strings.Contains(msg, "3 GiB") || !strings.Contains(msg, "512 MiB") {
		t.Errorf("error %q does not give both sizes", msg)
	}
	if err := CheckFits("huge", 3<<30, 512<<20); !errors.As(err, &tl) {
		t.Errorf("CheckFits = %v, want a TooLargeError", err)
	}
	if err := CheckFits("small", 1<<20, 512<<20); err != nil {
		t.Errorf("CheckFits of a model that fits = %v", err)
	}
}

func TestPlanShardsAndWidth(t *testing.T) {
	ids := replicaIDs(6)
	var reps []Replica
	for _, id := range ids {
		reps = append(reps, Replica{ID: id, Budget: 1 << 30})
	}
	now := at(time.Hour)
	p := Policy{Replicas: 2, TargetInFlight: 4, DefaultBytes: 1 << 20}

	// A cold model loads on its shard, and only there.
	d := Plan(now, State{Replicas: reps}, []Demand{{Model: "m", Held: 1}}, p)
	shard := Shard("m", ids, 2)
	slices.Sort(shard)
	if got := d.Routes["m"]; !slices.Equal(got, shard) {
		t.Errorf("routes of m = %v, want its shard %v", got, shard)
	}
	if len(d.Actions) != 2 {
		t.Errorf("actions %v, want 2 loads", steps(d.Actions))
	}

	// A hot model widens onto the next replicas of its ranking.
	hot := State{Replicas: slices.Clone(reps), Models: map[string]Model{"m": {Bytes: 1 << 20, Width: Width{Replicas: 2, BusyAt: now}}}}
	d = Plan(now, hot, []Demand{{Model: "m", InFlight: 20}}, p)
	if got, want := d.Models["m"].Width.Replicas, 5; got != want {
		t.Errorf("width of a model with 20 in flight = %d, want %d", got, want)
	}
	wide := Rank("m", ids)[:5]
	slices.Sort(wide)
	if got := d.Routes["m"]; !slices.Equal(got, wide) {
		t.Errorf("routes of the hot model = %v, want %v", got, wide)
	}

	// A copy outside the shard is unloaded when idle, kept while busy.
	outside := Rank("m", ids)[5]
	for _, inFlight := range []int{0, 3} {
		s := State{Replicas: slices.Clone(reps)}
		for i := range s.Replicas {
			if s.Replicas[i].ID == outside {
				s.Replicas[i].Models = []Hosted{busy(ready("m", 1<<20, time.Minute), inFlight)}
			}
		}
		d = Plan(now, s, nil, p)
		unloaded := slices.ContainsFunc(d.Actions, func(a Action) bool { return a.Kind == Unload && a.Replica == outside })
		if unloaded != (inFlight == 0) {
			t.Errorf("in flight %d: unloaded outside its shard = %v", inFlight, unloaded)
		}
	}
}
