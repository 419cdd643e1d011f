package registry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ebb-ml/ebb/internal/registry"
)

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

const day = 24 * time.Hour

// TestRetire walks five versions through two months of retirement steps:
// v1 has an alias, v2 is named by a deployment, v3 and v5 are never used
// (v5 has the same artifact as v1), v4 is used once on day 20.
func TestRetire(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: t0}
	reg := prometheus.NewRegistry()
	e := newEnv(t, registry.Options{Now: clock.Now, Metrics: registry.NewMetrics(reg)})
	e.st.Now = clock.Now
	dir := t.TempDir()
	for i, content := range []string{`{"ok":true}`, `{"ok":true,"v":2}`, `{"ok":true,"v":3}`, `{"ok":true,"v":4}`, `{"ok":true}`} {
		file := writeFile(t, dir, fmt.Sprintf("v%d.json", i+1), content)
		if _, err := e.svc.Push(ctx, registry.PushRequest{Model: "m", Path: file}); err != nil {
			t.Fatalf("Push: %v", err)
		}
	}
	if _, err := e.svc.MoveAlias(ctx, "m", "champion", 1, 0, "alice"); err != nil {
		t.Fatal(err)
	}
	use := registry.Usage{InUse: func(model string, version int) bool { return model == "m" && version == 2 }}
	policy := registry.RetirePolicy{WarnAfter: 10 * day, RetireAfter: 30 * day, GCGrace: 7 * day}
	v3, _ := e.st.GetVersion(ctx, "m", 3)
	v5, _ := e.st.GetVersion(ctx, "m", 5)

	const (
		A = registry.StateActive
		W = registry.StateWarned
		R = registry.StateRetired
		P = registry.StatePurged
	)
	steps := []struct {
		day    int
		before func(t *testing.T)
		events []string
		states [5]registry.State
	}{
		{day: 5, states: [5]registry.State{A, A, A, A, A}},
		{day: 11, events: []string{"3 active->warned", "4 active->warned", "5 active->warned"},
			states: [5]registry.State{A, A, W, W, W}},
		{day: 20, before: func(t *testing.T) {
			if err := e.svc.RecordServing(ctx, "web", "m", 4); err != nil {
				t.Fatal(err)
			}
		}, states: [5]registry.State{A, A, W, A, W}}, // RecordServing reactivated v4 at once
		{day: 25, states: [5]registry.State{A, A, W, A, W}},
		{day: 31, events: []string{"3 warned->retired", "4 active->warned", "5 warned->retired"},
			states: [5]registry.State{A, A, R, W, R}},
		{day: 37, states: [5]registry.State{A, A, R, W, R}},
		{day: 38, events: []string{"3 retired->purged", "5 retired->purged"},
			states: [5]registry.State{A, A, P, W, P}},
		{day: 60, before: func(t *testing.T) {
			if _, err := e.svc.MoveAlias(ctx, "m", "challenger", 4, 0, "bob"); err != nil {
				t.Fatal(err)
			}
			if _, err := e.svc.MoveAlias(ctx, "m", "challenger", 3, 4, "bob"); !isInvalid(err) {
				t.Errorf("moving an alias to purged version 3: %v, want an InvalidError", err)
			}
		}, states: [5]registry.State{A, A, P, A, P}},
		{day: 90, states: [5]registry.State{A, A, P, A, P}},
	}
	for _, st := range steps {
		t.Run(fmt.Sprintf("day %d", st.day), func(t *testing.T) {
			clock.t = t0.Add(time.Duration(st.day) * day)
			if st.before != nil {
				st.before(t)
			}
			events, err := e.svc.Retire(ctx, clock.t, use, policy)
			if err != nil {
				t.Fatalf("Retire: %v", err)
			}
			got := []string{}
			for _, ev := range events {
				got = append(got, fmt.Sprintf("%d %s->%s", ev.Version, ev.From, ev.To))
				if !ev.At.Equal(clock.t) || ev.Message == "" {
					t.Errorf("event %+v: want At %v and a message", ev, clock.t)
				}
			}
			if diff := cmp.Diff(append([]string{}, st.events...), got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			var states [5]registry.State
			for i := range states {
				v, err := e.st.GetVersion(ctx, "m", i+1)
				if err != nil {
					t.Fatal(err)
				}
				states[i] = v.State
			}
			if diff := cmp.Diff(st.states, states); diff != "" {
				t.Errorf("states of versions 1-5 (-want +got):\n%s", diff)
			}
		})
	}
	// v3's artifact was deleted; v5's is v1's and stays.
	if diff := cmp.Diff([]string{v3.ArtifactURI}, e.art.deleted); diff != "" {
		t.Errorf("deleted artifacts (-want +got):\n%s", diff)
	}
	if v5.ArtifactURI != func() string { v, _ := e.st.GetVersion(ctx, "m", 1); return v.ArtifactURI }() {
		t.Fatal("test setup: v5 should share v1's artifact")
	}
	if _, err := e.art.Open(ctx, v5.ArtifactURI, v5.SHA256); err != nil {
		t.Errorf("v1's artifact is gone: %v", err)
	}
	want := `
# HELP ebb_registry_versions Model versions by state (active, warned, retired, purged), as of the latest retirement step.
# TYPE ebb_registry_versions gauge
ebb_registry_versions{state="active"} 3
ebb_registry_versions{state="purged"} 2
ebb_registry_versions{state="retired"} 0
ebb_registry_versions{state="warned"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ebb_registry_versions"); err != nil {
		t.Errorf("metrics: %v", err)
	}
}

// TestRetireKeepsLastVersions: deployment web served versions 1 to 4 of m
// and 1 of other, and still exists; deployment gone served version 5 and
// was deleted. The last KeepVersions versions web served stay active, the
// rest retire; gone's keep nothing.
func TestRetireKeepsLastVersions(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const (
		A = registry.StateActive
		R = registry.StateRetired
	)
	tests := []struct {
		keep  int
		m     [5]registry.State
		other registry.State
	}{
		{keep: 0, m: [5]registry.State{R, R, R, R, R}, other: R},
		{keep: 1, m: [5]registry.State{R, R, R, A, R}, other: R},
		{keep: 3, m: [5]registry.State{R, R, A, A, R}, other: A},
		{keep: 10, m: [5]registry.State{A, A, A, A, R}, other: A},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("keep %d", tt.keep), func(t *testing.T) {
			clock := &fakeClock{t: t0}
			e := newEnv(t, registry.Options{Now: clock.Now})
			e.st.Now = clock.Now
			dir := t.TempDir()
			push := func(model string, n int) {
				for i := range n {
					file := writeFile(t, dir, fmt.Sprintf("%s-%d.json", model, i), fmt.Sprintf(`{"ok":true,"v":%d}`, i))
					if _, err := e.svc.Push(ctx, registry.PushRequest{Model: model, Path: file}); err != nil {
						t.Fatal(err)
					}
				}
			}
			push("m", 5)
			push("other", 1)
			for i, s := range []struct {
				deployment, model string
				version           int
			}{{"web", "m", 1}, {"web", "m", 2}, {"web", "m", 3}, {"web", "other", 1}, {"web", "m", 4}, {"gone", "m", 5}} {
				clock.t = t0.Add(time.Duration(i) * time.Minute)
				if err := e.svc.RecordServing(ctx, s.deployment, s.model, s.version); err != nil {
					t.Fatal(err)
				}
			}
			asked := 0
			use := registry.Usage{Deployments: func(context.Context) ([]string, error) { asked++; return []string{"web", "idle"}, nil }}
			policy := registry.RetirePolicy{WarnAfter: 10 * day, RetireAfter: 30 * day, KeepVersions: tt.keep}
			for _, d := range []int{11, 31} {
				if _, err := e.svc.Retire(ctx, t0.Add(time.Duration(d)*day), use, policy); err != nil {
					t.Fatalf("Retire on day %d: %v", d, err)
				}
			}
			if tt.keep > 0 && asked != 2 {
				t.Errorf("deployments were listed %d times in two steps; want 2", asked)
			}
			var m [5]registry.State
			for i := range m {
				v, err := e.st.GetVersion(ctx, "m", i+1)
				if err != nil {
					t.Fatal(err)
				}
				m[i] = v.State
			}
			if diff := cmp.Diff(tt.m, m); diff != "" {
				t.Errorf("states of m:1-5 (-want +got):\n%s", diff)
			}
			if v, _ := e.st.GetVersion(ctx, "other", 1); v.State != tt.other {
				t.Errorf("other:1 is %s; want %s", v.State, tt.other)
			}
		})
	}
}

// TestRetireWithoutDeployments: when the deployments cannot be listed,
// nothing retires, since what they served last is unknown.
func TestRetireWithoutDeployments(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: t0}
	e := newEnv(t, registry.Options{Now: clock.Now})
	e.st.Now = clock.Now
	if _, err := e.svc.Push(ctx, registry.PushRequest{Model: "m", Path: writeFile(t, t.TempDir(), "m.json", `{"ok":true}`)}); err != nil {
		t.Fatal(err)
	}
	use := registry.Usage{Deployments: func(context.Context) ([]string, error) { return nil, errors.New("API server unreachable") }}
	events, err := e.svc.Retire(ctx, t0.Add(100*day), use, registry.RetirePolicy{WarnAfter: day, KeepVersions: 3})
	if err == nil || !strings.Contains(err.Error(), "API server unreachable") || len(events) != 0 {
		t.Errorf("Retire = %v, %v; want the listing's error and no events", events, err)
	}
	if v, _ := e.st.GetVersion(ctx, "m", 1); v.State != registry.StateActive {
		t.Errorf("m:1 is %s; want active", v.State)
	}
}

func TestRetireWithoutDeleter(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: t0}
	e := newEnv(t, registry.Options{Now: clock.Now})
	e.st.Now = clock.Now
	svc := registry.NewService(e.st, struct{ registry.ArtifactStore }{e.art}, registry.Options{Now: clock.Now, Validator: jsonValidator})
	if _, err := svc.Push(ctx, registry.PushRequest{Model: "m", Path: writeFile(t, t.TempDir(), "m.json", `{"ok":true}`)}); err != nil {
		t.Fatal(err)
	}
	policy := registry.RetirePolicy{WarnAfter: day, RetireAfter: 2 * day, GCGrace: day}
	for _, d := range []int{1, 2, 3, 10} {
		if _, err := svc.Retire(ctx, t0.Add(time.Duration(d)*day), registry.Usage{}, policy); err != nil {
			t.Fatal(err)
		}
	}
	v, _ := e.st.GetVersion(ctx, "m", 1)
	if v.State != registry.StateRetired || len(e.art.deleted) != 0 {
		t.Errorf("without an ArtifactDeleter: state %s, deleted %v; want retired and nothing deleted", v.State, e.art.deleted)
	}
}

func TestRetirePolicyValidate(t *testing.T) {
	tests := []struct {
		p  registry.RetirePolicy
		ok bool
	}{
		{registry.RetirePolicy{}, true},
		{registry.RetirePolicy{WarnAfter: day, RetireAfter: 2 * day, GCGrace: day}, true},
		{registry.RetirePolicy{WarnAfter: 2 * day, RetireAfter: day}, false},
		{registry.RetirePolicy{WarnAfter: -day}, false},
		{registry.RetirePolicy{KeepVersions: 3}, true},
		{registry.RetirePolicy{KeepVersions: -1}, false},
	}
	for _, tt := range tests {
		if err := tt.p.Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v.Validate() = %v, want ok %v", tt.p, err, tt.ok)
		}
	}
}
