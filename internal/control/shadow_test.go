package control

import (
	"context"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/traffic"
)

func setShadow(t *testing.T, f *fixture, sh *serving.Shadow) {
	t.Helper()
	if _, err := f.store.UpdateDeployment(context.Background(), "m", func(d *serving.Deployment) error {
		d.Spec.Shadow = sh
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.ctl.Notify("m")
}

// waitRoute waits until the route of key satisfies cond.
func waitRoute(t *testing.T, f *fixture, key, what string, cond func(*routing.Route) bool) *routing.Route {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if rt := f.routes.Lookup(key); cond(rt) {
			return rt
		}
		if time.Now().After(deadline) {
			t.Fatalf("route %s: timed out waiting for %s; route is %+v", key, what, f.routes.Lookup(key))
		}
		f.tick()
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShadowRunsATrack: spec.shadow runs the shadow as a track of its own
// (name.shadow) without touching the primary's replicas, publishes it on
// the primary's route with a Tally that lives as long as the shadow is
// unchanged, and removing it removes the track.
func TestShadowRunsATrack(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 1, MaxReplicas: 2}))
	f.tick()
	before := f.until("m", "a ready primary", ready(1))

	setShadow(t, f, &serving.Shadow{Model: "/models/m-v2.json", Percent: 50, Requests: 10})
	shadow := waitRoute(t, f, "m.shadow", "a ready shadow replica", func(rt *routing.Route) bool { return rt != nil && len(rt.Endpoints) == 1 })
	spec := f.backend.get(shadow.Endpoints[0].ID).spec
	if spec.Deployment != "m" || spec.Track != serving.ShadowTag || spec.Model != "/models/m-v2.json" {
		t.Errorf("shadow replica runs %+v; want deployment m, track shadow, model m-v2", spec)
	}
	if shadow.Shadow != nil {
		t.Errorf("the shadow's own route has a shadow: %+v", shadow.Shadow)
	}
	rt := f.routes.Lookup("m")
	sh := rt.Shadow
	if sh == nil || sh.Key != "m.shadow" || sh.Model != "/models/m-v2.json" || sh.Percent != 50 || sh.Requests != 10 ||
		sh.MaxConcurrency != serving.DefaultShadowMaxConcurrency || sh.Tolerance != (traffic.Tolerance{Abs: 1e-6, Rel: 1e-5}) || sh.Tally == nil || sh.InFlight == nil {
		t.Fatalf("primary route's shadow = %+v; want m.shadow at 50%% with the defaults", sh)
	}
	after := f.ctl.Status("m")
	for id := range ids(before) {
		if _, ok := ids(after)[id]; !ok {
			t.Errorf("primary replica %s was replaced when the shadow started", id)
		}
	}

	// Unchanged shadow, new publish (a scale event): the same tally.
	sh.Tally.Drop()
	f.tick()
	f.ctl.Notify("m")
	f.tick()
	if got := f.routes.Lookup("m").Shadow; got == nil || got.Tally != sh.Tally {
		t.Errorf("a publish with the same shadow replaced its tally")
	}
	// A new shadow starts afresh.
	setShadow(t, f, &serving.Shadow{Model: "/models/m-v2.json", Percent: 100})
	fresh := waitRoute(t, f, "m", "the new shadow", func(rt *routing.Route) bool { return rt.Shadow != nil && rt.Shadow.Percent == 100 })
	if fresh.Shadow.Tally == sh.Tally || fresh.Shadow.Tally.Summary().Dropped != 0 {
		t.Errorf("a new shadow kept the old tally")
	}
	// Started again with the same settings: a new ID, a new tally, and the
	// routing table reports the new ID, so a status does not take the old
	// figures for the new shadow's.
	again := &serving.Shadow{Model: "/models/m-v2.json", Percent: 100, Started: "2026-12-02T12:00:00Z"}
	setShadow(t, f, again)
	restarted := waitRoute(t, f, "m", "the shadow started again", func(rt *routing.Route) bool { return rt.Shadow != nil && rt.Shadow.ID == again.ID() })
	if restarted.Shadow.Tally == fresh.Shadow.Tally {
		t.Errorf("a shadow started again kept the earlier start's tally")
	}
	if _, id, ok := f.routes.ShadowSummary("m"); !ok || id != again.ID() || id == fresh.Shadow.ID {
		t.Errorf("ShadowSummary id = %q, %v; want the new start's %q", id, ok, again.ID())
	}
	// Removed: the route has no shadow and the track goes.
	setShadow(t, f, nil)
	waitRoute(t, f, "m", "no shadow", func(rt *routing.Route) bool { return rt.Shadow == nil })
	waitRoute(t, f, "m.shadow", "the shadow track removed", func(rt *routing.Route) bool { return rt == nil || len(rt.Endpoints) == 0 })
}

func TestShadowActive(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	tally := &traffic.Tally{}
	tally.Add(traffic.Pair{Result: traffic.Result{Agree: true}})
	tally.ShadowError(nil)
	for _, c := range []struct {
		name string
		sh   routing.Shadow
		want bool
	}{
		{"no limits", routing.Shadow{Tally: tally}, true},
		{"under the requests", routing.Shadow{Tally: tally, Requests: 3}, true},
		{"requests judged (errors count)", routing.Shadow{Tally: tally, Requests: 2}, false},
		{"before until", routing.Shadow{Tally: tally, Until: now.Add(time.Second)}, true},
		{"at until", routing.Shadow{Tally: tally, Until: now}, false},
	} {
		if got := c.sh.Active(now); got != c.want {
			t.Errorf("%s: Active = %v, want %v", c.name, got, c.want)
		}
	}
}
