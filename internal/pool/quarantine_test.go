package pool

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestQuarantine(t *testing.T) {
	now := at(time.Hour)
	crash := func(model, replica string, ago time.Duration) Crash {
		return Crash{Model: model, Replica: replica, At: now.Add(-ago)}
	}
	tests := []struct {
		name    string
		crashes []Crash
		want    []string // models quarantined
	}{
		{"none", nil, nil},
		{"below the limit", []Crash{crash("a", "0", time.Minute), crash("a", "1", 2*time.Minute)}, nil},
		{"at the limit within the window", []Crash{crash("a", "0", time.Minute), crash("a", "1", 2*time.Minute), crash("a", "0", 9*time.Minute)}, []string{"a"}},
		{"one outside the window", []Crash{crash("a", "0", time.Minute), crash("a", "1", 2*time.Minute), crash("a", "0", 10*time.Minute)}, nil},
		{"in the future (replay): ignored", []Crash{crash("a", "0", -time.Minute), crash("a", "1", 0), crash("a", "0", time.Second)}, nil},
		{"per model", []Crash{crash("a", "0", 1), crash("b", "0", 2), crash("a", "0", 3), crash("b", "1", 4), crash("a", "1", 5)}, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Quarantine(now, tt.crashes, Policy{})
			var models []string
			for m, reason := range got {
				models = append(models, m)
				if !strings.Contains(reason, "crashed its replica 3 times within 10m0s") || !strings.Contains(reason, "on 2 replicas") {
					t.Errorf("reason %q does not say how often, where and within what window", reason)
				}
			}
			slices.Sort(models)
			if !slices.Equal(models, tt.want) {
				t.Errorf("quarantined %v, want %v", models, tt.want)
			}
		})
	}
}

// TestPlanQuarantineIsolation: a model that keeps crashing its replicas is
// quarantined and unloaded; the other models of its shard keep their
// replicas and new ones still load there.
func TestPlanQuarantineIsolation(t *testing.T) {
	ids := replicaIDs(6)
	now := at(time.Hour)
	p := Policy{Replicas: 2, DefaultBytes: 10}
	shard := Shard("bad", ids, 2)
	// Every other model on the bad model's replicas.
	var neighbours []string
	for _, m := range modelNames(200) {
		if s := Shard(m, ids, 2); slices.Contains(s, shard[0]) || slices.Contains(s, shard[1]) {
			neighbours = append(neighbours, m)
		}
	}
	state := State{Models: map[string]Model{}}
	for _, id := range ids {
		r := Replica{ID: id, Budget: 1 << 20}
		for _, m := range append([]string{"bad"}, neighbours...) {
			if slices.Contains(Shard(m, ids, 2), id) {
				r.Models = append(r.Models, ready(m, 10, time.Minute))
			}
		}
		state.Replicas = append(state.Replicas, r)
	}
	for i := range 3 {
		state.Crashes = append(state.Crashes, Crash{Model: "bad", Replica: shard[i%2], At: now.Add(-time.Duration(i) * time.Minute)})
	}
	demand := []Demand{{Model: "bad", Held: 5}, {Model: "fresh", Held: 1}}
	for _, m := range neighbours {
		demand = append(demand, Demand{Model: m, Rate: 1})
	}
	d := Plan(now, state, demand, p)

	if d.Models["bad"].Quarantine == "" {
		t.Fatal("the crashing model is not quarantined")
	}
	if err := d.Unplaced["bad"]; err == nil || !strings.Contains(err.Error(), "quarantined") {
		t.Errorf("Unplaced[bad] = %v, want the quarantine", err)
	}
	if _, ok := d.Routes["bad"]; ok {
		t.Errorf("the quarantined model still has routes %v", d.Routes["bad"])
	}
	for _, a := range d.Actions {
		switch {
		case a.Kind == Unload && a.Model != "bad":
			t.Errorf("a neighbour was unloaded: %+v", a)
		case a.Kind == Load && a.Model == "bad":
			t.Errorf("the quarantined model was loaded: %+v", a)
		}
	}
	unloads := 0
	for _, a := range d.Actions {
		if a.Kind == Unload && a.Model == "bad" {
			unloads++
		}
	}
	if unloads != 2 {
		t.Errorf("the quarantined model was unloaded from %d replicas, want its 2", unloads)
	}
	for _, m := range append(neighbours, "fresh") {
		if got := d.Routes[m]; len(got) != 2 {
			t.Errorf("model %s has routes %v, want its 2 replicas", m, got)
		}
	}
	// The quarantine outlives the crash window until it is cleared.
	state.Models = d.Models
	later := Plan(now.Add(time.Hour), state, []Demand{{Model: "bad", Held: 1}}, p)
	if err := later.Unplaced["bad"]; err == nil || !strings.Contains(err.Error(), "quarantined") || later.Routes["bad"] != nil {
		t.Errorf("an hour later the model is no longer quarantined: unplaced %v, routes %v", err, later.Routes["bad"])
	}
}
