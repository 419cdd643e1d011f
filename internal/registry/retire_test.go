package registry_test

import (
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
	inUse := func(model string, version int) bool { return model == "m" && version == 2 }
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
			events, err := e.svc.Retire(ctx, clock.t, inUse, policy)
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
		if _, err := svc.Retire(ctx, t0.Add(time.Duration(d)*day), nil, policy); err != nil {
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
	}
	for _, tt := range tests {
		if err := tt.p.Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v.Validate() = %v, want ok %v", tt.p, err, tt.ok)
		}
	}
}
