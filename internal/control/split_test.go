package control

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/google/go-cmp/cmp"
)

// splitDep is deployment m serving /models/m.json and, with weight canary,
// /models/m-v2.json tagged "canary".
func splitDep(canary int32) serving.Deployment {
	d := dep("m", serving.Scaling{MinReplicas: 1, MaxReplicas: 2})
	d.Spec.Traffic = []serving.TrafficTarget{
		{Model: "/models/m.json", Weight: 100 - canary},
		{Model: "/models/m-v2.json", Weight: canary, Tag: "canary"},
	}
	return d
}

func TestSplitRunsATrackPerTarget(t *testing.T) {
	f := newFixture(t, splitDep(10))
	f.tick()
	st := f.until("m", "a replica per target", func(st serving.Status) bool {
		return st.ReadyReplicas == 2 && len(st.Traffic) == 2 && st.Traffic[1].ReadyReplicas == 1
	})
	want := []serving.TrafficStatus{
		{Tag: "t" + st.Traffic[0].Tag[1:], Model: "/models/m.json", Weight: 90, Primary: true, Replicas: 1, ReadyReplicas: 1, DesiredReplicas: 1},
		{Tag: "canary", Model: "/models/m-v2.json", Weight: 10, Replicas: 1, ReadyReplicas: 1, DesiredReplicas: 1},
	}
	if diff := cmp.Diff(want, st.Traffic, cmpIgnoreReason); diff != "" {
		t.Errorf("status.traffic (-want +got):\n%s", diff)
	}
	rt := f.routes.Lookup("m")
	if rt == nil || rt.Split == nil {
		t.Fatalf("route of m = %+v; want a split", rt)
	}
	if got := []string{rt.Split.Tracks[0].Key, rt.Split.Tracks[1].Key}; !slices.Equal(got, []string{"m", "m.canary"}) {
		t.Errorf("split tracks = %v; want [m m.canary]", got)
	}
	canary := f.routes.Lookup("m.canary")
	if canary == nil || len(canary.Endpoints) != 1 || len(rt.Endpoints) != 1 {
		t.Fatalf("routes: m has %d endpoints, m.canary %+v; want one each", len(rt.Endpoints), canary)
	}
	spec := f.backend.get(canary.Endpoints[0].ID).spec
	if spec.Deployment != "m" || spec.Track != "canary" || spec.Model != "/models/m-v2.json" {
		t.Errorf("canary replica runs %+v; want deployment m, track canary, model m-v2", spec)
	}
	primary := f.backend.get(rt.Endpoints[0].ID).spec
	if primary.Track != "" || primary.Model != "/models/m.json" {
		t.Errorf("primary replica runs %+v; want no track and model m.json", primary)
	}
	var tracks []string
	for _, rs := range st.ReplicaStatuses {
		tracks = append(tracks, rs.Track)
	}
	slices.Sort(tracks)
	if !slices.Equal(tracks, []string{"", "canary"}) {
		t.Errorf("replica statuses' tracks = %q; want the primary's and the canary's", tracks)
	}
}

var cmpIgnoreReason = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Reason" }, cmp.Ignore())

func TestSplitWeightsMoveWithoutRestarts(t *testing.T) {
	f := newFixture(t, splitDep(10))
	f.tick()
	before := f.until("m", "a replica per target", ready(2))
	setTraffic(t, f, splitDep(50).Spec.Traffic)
	f.until("m", "weights moved", func(st serving.Status) bool { return len(st.Traffic) == 2 && st.Traffic[1].Weight == 50 })
	if s := f.routes.Lookup("m").Split; s == nil || s.Tracks[1].Weight != 50 {
		t.Errorf("routed split = %+v; want the canary at 50", s)
	}
	after := f.ctl.Status("m")
	if diff := cmp.Diff(ids(before), ids(after)); diff != "" {
		t.Errorf("replicas changed when only weights moved (-before +after):\n%s", diff)
	}
}

func TestSplitRemovedRetiresTrack(t *testing.T) {
	f := newFixture(t, splitDep(10))
	f.tick()
	f.until("m", "a replica per target", ready(2))
	setTraffic(t, f, nil)
	st := f.until("m", "the canary gone", ready(1))
	if st.Traffic != nil || f.routes.Lookup("m").Split != nil {
		t.Errorf("split still reported: status %+v, route split %+v", st.Traffic, f.routes.Lookup("m").Split)
	}
	if f.routes.Lookup("m.canary") != nil {
		t.Error("the removed target's route is still published")
	}
}

func TestSplitSurvivesRestart(t *testing.T) {
	f := newFixture(t, splitDep(10))
	f.tick()
	before := f.until("m", "a replica per target", ready(2))
	// Simulate a crash of ebb: a new loop starts over the same store and
	// replicas, the old one never stopping them.
	f.ctl = New(f.store, f.backend, f.routes, Options{Clock: f.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.ctl.Run(ctx)
	<-f.ctl.Loaded()
	after := f.until("m", "recovered replicas ready", ready(2))
	if diff := cmp.Diff(ids(before), ids(after)); diff != "" {
		t.Errorf("replicas after a restart (-before +after):\n%s", diff)
	}
	if n := len(f.backend.started); n != 2 {
		t.Errorf("backend started %d replicas in all; want 2 (recovered, not restarted)", n)
	}
	if c := f.routes.Lookup("m.canary"); c == nil || len(c.Endpoints) != 1 {
		t.Errorf("canary route after a restart = %+v; want its recovered replica", c)
	}
}

func setTraffic(t *testing.T, f *fixture, traffic []serving.TrafficTarget) {
	t.Helper()
	if _, err := f.store.UpdateDeployment(context.Background(), "m", func(d *serving.Deployment) error {
		d.Spec.Traffic = traffic
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.ctl.Notify("m")
}

// ids maps a status's replica IDs to their tracks.
func ids(st serving.Status) map[string]string {
	out := map[string]string{}
	for _, rs := range st.ReplicaStatuses {
		out[rs.ID] = rs.Track
	}
	return out
}

// TestSplitMetersLiveWithTheSplit checks that the primary and every track
// of a split each route one Meter, the same across republishes, and that
// a deployment without a split, or one whose split ended, has none.
func TestSplitMetersLiveWithTheSplit(t *testing.T) {
	f := newFixture(t, splitDep(10), dep("plain", serving.Scaling{MinReplicas: 1, MaxReplicas: 1}))
	f.tick()
	f.until("m", "a replica per target", ready(2))
	f.until("plain", "a replica", ready(1))
	if m := f.routes.Lookup("plain").Meter; m != nil {
		t.Errorf("deployment without a split routes a Meter")
	}
	primary, canary := f.routes.Lookup("m"), f.routes.Lookup("m.canary")
	if primary.Meter == nil || canary.Meter == nil || primary.Meter == canary.Meter {
		t.Fatalf("meters of m %p and m.canary %p; want one each", primary.Meter, canary.Meter)
	}
	now := time.Now()
	canary.Meter.Observe(now, time.Millisecond, true)

	setTraffic(t, f, splitDep(50).Spec.Traffic)
	for _, old := range []*routing.Route{primary, canary} {
		select {
		case <-old.Changed():
		case <-time.After(10 * time.Second):
			t.Fatalf("route of %s not republished after the weights moved", old.Deployment)
		}
		if got := f.routes.Lookup(old.Deployment); got.Meter != old.Meter {
			t.Errorf("republished route of %s has Meter %p; want the one it had, %p", old.Deployment, got.Meter, old.Meter)
		}
	}
	if got := f.routes.Measure("m.canary", now.Add(-time.Second), now); got.Requests != 1 || got.Errors != 1 {
		t.Errorf("Measure(m.canary) after republishing = %+v; want the request observed before", got)
	}

	setTraffic(t, f, nil)
	f.until("m", "the canary gone", ready(1))
	deadline := time.Now().Add(10 * time.Second)
	for f.routes.Lookup("m").Meter != nil || f.routes.Lookup("m.canary") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("split ended: m still routes Meter %p, m.canary route %+v", f.routes.Lookup("m").Meter, f.routes.Lookup("m.canary"))
		}
		time.Sleep(time.Millisecond)
	}
	if got := f.routes.Measure("m.canary", now.Add(-time.Second), now); got.Requests != 0 {
		t.Errorf("Measure of a track gone = %+v; want no data", got)
	}
}
