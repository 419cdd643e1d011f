package discovery

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/traffic"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// readyPod is a ready replica pod of deployment m at ip, serving track
// (empty for the primary).
func readyPod(name, ip, track string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{operator.LabelDeployment: "m"}},
		Status:     corev1.PodStatus{PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	if track != "" {
		p.Labels[kube.LabelTrack] = track
	}
	return p
}

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{v1alpha1.AddToScheme, corev1.AddToScheme, discoveryv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return scheme
}

func endpointIDs(rt *routing.Route) []string {
	if rt == nil {
		return nil
	}
	var ids []string
	for _, ep := range rt.Endpoints {
		ids = append(ids, ep.ID)
	}
	return ids
}

// TestRoutesPublishShadows checks that a deployment with spec.shadow is
// routed with the routing.Shadow that mirrors to its shadow's track, and
// the track with the pods labelled "shadow"; that the Shadow and its Tally
// last while the shadow is the same and start afresh for a new one; and
// that Shadows reports the tally with the shadow's ID.
func TestRoutesPublishShadows(t *testing.T) {
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "ns"}}
	md.Spec.Model = "/models/m.json"
	md.Spec.Shadow = &serving.Shadow{Model: "/models/m2.json", Percent: 20, Requests: 500}
	fc := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(md,
		readyPod("m-a", "127.0.0.2", ""), readyPod("m.shadow-b", "127.0.0.3", serving.ShadowTag)).Build()
	table := &routing.Table{}
	r := NewRoutes(objectCache{Client: fc}, "ns", FromPods, table, nil)
	ctx := t.Context()
	sync := func() {
		t.Helper()
		if err := r.sync(ctx, "m"); err != nil {
			t.Fatal(err)
		}
	}
	sync()
	rt := table.Lookup("m")
	if rt == nil || rt.Shadow == nil {
		t.Fatalf("route of m = %+v; want one with a Shadow", rt)
	}
	sh := rt.Shadow
	want := routing.Shadow{ID: md.Spec.Shadow.ID(), Key: "m.shadow", Model: "/models/m2.json", Percent: 20,
		Tolerance:      traffic.Tolerance{Abs: serving.DefaultTolerance.Abs, Rel: serving.DefaultTolerance.Rel},
		MaxConcurrency: serving.DefaultShadowMaxConcurrency, Requests: 500}
	if diff := cmp.Diff(want, *sh, cmpopts.IgnoreFields(routing.Shadow{}, "Tally", "InFlight")); diff != "" || sh.Tally == nil || sh.InFlight == nil {
		t.Errorf("m's Shadow (-want +got):\n%s\nTally %p, InFlight %p", diff, sh.Tally, sh.InFlight)
	}
	track := table.Lookup("m.shadow")
	if diff := cmp.Diff([]string{"m-a"}, endpointIDs(rt)); diff != "" {
		t.Errorf("m's endpoints (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"m.shadow-b"}, endpointIDs(track)); diff != "" {
		t.Errorf("m.shadow's endpoints (-want +got):\n%s", diff)
	}
	if track != nil && (track.Model != "/models/m2.json" || track.Shadow != nil || track.Meter == nil) {
		t.Errorf("m.shadow routed as %+v; want the shadow's model, a Meter, no Shadow of its own", track)
	}
	sh.Tally.Add(traffic.Pair{Result: traffic.Result{Agree: true}, PrimaryLatency: time.Millisecond, ShadowLatency: 2 * time.Millisecond})
	wantReport := map[string]operator.ShadowReport{"m": {ID: md.Spec.Shadow.ID(), Tally: sh.Tally.Snapshot()}}
	if diff := cmp.Diff(wantReport, r.Shadows()); diff != "" {
		t.Errorf("Shadows (-want +got):\n%s", diff)
	}

	steps := []struct {
		name  string
		edit  func(*v1alpha1.ModelDeployment)
		fresh bool // a new Shadow, with a new Tally
	}{
		{"replicas change", func(md *v1alpha1.ModelDeployment) { md.Spec.Replicas = ptr(int32(2)) }, false},
		{"defaults spelt out", func(md *v1alpha1.ModelDeployment) {
			md.Spec.Shadow.MaxConcurrency = serving.DefaultShadowMaxConcurrency
		}, false},
		{"another share", func(md *v1alpha1.ModelDeployment) { md.Spec.Shadow.Percent = 50 }, true},
		{"another model", func(md *v1alpha1.ModelDeployment) { md.Spec.Shadow.Model = "/models/m3.json" }, true},
		{"started again", func(md *v1alpha1.ModelDeployment) { md.Spec.Shadow.Started = "2026-03-01T12:00:00Z" }, true},
	}
	for _, st := range steps {
		if err := fc.Get(ctx, client.ObjectKeyFromObject(md), md); err != nil {
			t.Fatal(err)
		}
		st.edit(md)
		if err := fc.Update(ctx, md); err != nil {
			t.Fatal(err)
		}
		sync()
		got := table.Lookup("m").Shadow
		if got == nil {
			t.Fatalf("%s: m has no Shadow", st.name)
		}
		if fresh := got != sh; fresh != st.fresh || (got.Tally != sh.Tally) != st.fresh || (got.InFlight != sh.InFlight) != st.fresh {
			t.Errorf("%s: a new Shadow %v, Tally %v, InFlight %v; want new: %v", st.name, fresh, got.Tally != sh.Tally, got.InFlight != sh.InFlight, st.fresh)
		}
		if st.fresh && got.Tally.Judged() != 0 {
			t.Errorf("%s: the new shadow's tally starts at %d judged", st.name, got.Tally.Judged())
		}
		if id := r.Shadows()["m"].ID; id != md.Spec.Shadow.ID() {
			t.Errorf("%s: Shadows reports ID %q; want the spec's %q", st.name, id, md.Spec.Shadow.ID())
		}
		sh = got
	}

	md.Spec.Shadow = nil
	if err := fc.Update(ctx, md); err != nil {
		t.Fatal(err)
	}
	sync()
	if rt := table.Lookup("m"); rt == nil || rt.Shadow != nil || table.Lookup("m.shadow") != nil {
		t.Errorf("shadow ended: m routed %+v, m.shadow %+v; want m without a Shadow, no m.shadow", rt, table.Lookup("m.shadow"))
	}
	if diff := cmp.Diff([]string{"m-a"}, endpointIDs(table.Lookup("m"))); diff != "" {
		t.Errorf("shadow ended: m's endpoints (-want +got):\n%s", diff)
	}
	if got := r.Shadows(); len(got) != 0 {
		t.Errorf("shadow ended: Shadows = %v; want none", got)
	}
}

// TestRoutesTellShadowReplicasFromEndpointSlices checks that with
// EndpointSlices, which do not say what a pod serves, a replica of the
// shadow never takes the primary's requests: it is routed to the shadow's
// track once the status lists it as such, and to nothing before.
func TestRoutesTellShadowReplicasFromEndpointSlices(t *testing.T) {
	ep := func(pod, ip string) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: pod}}
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "m-x", Namespace: "ns", Labels: map[string]string{operator.LabelDeployment: "m"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{ep("m-a", "127.0.0.2"), ep("m.shadow-b", "127.0.0.3")},
	}
	tests := []struct {
		name             string
		statuses         []serving.ReplicaStatus
		primary, shadowd []string
	}{
		{"the status lists neither yet", nil, nil, nil},
		{"the status lists the primary's only", []serving.ReplicaStatus{{ID: "m-a"}}, []string{"m-a"}, nil},
		{"the status lists both", []serving.ReplicaStatus{{ID: "m-a"}, {ID: "m.shadow-b", Track: serving.ShadowTag}}, []string{"m-a"}, []string{"m.shadow-b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "ns"}}
			md.Spec.Model = "/models/m.json"
			md.Spec.Shadow = &serving.Shadow{Model: "/models/m2.json"}
			md.Status.ReplicaStatuses = tc.statuses
			fc := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(md, slice.DeepCopy()).Build()
			table := &routing.Table{}
			r := NewRoutes(objectCache{Client: fc}, "ns", FromEndpointSlices, table, nil)
			if err := r.sync(t.Context(), "m"); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.primary, endpointIDs(table.Lookup("m"))); diff != "" {
				t.Errorf("m's endpoints (-want +got):\n%s", diff)
			}
			if table.Lookup("m.shadow") == nil {
				t.Fatal("m.shadow is not routed")
			}
			if diff := cmp.Diff(tc.shadowd, endpointIDs(table.Lookup("m.shadow"))); diff != "" {
				t.Errorf("m.shadow's endpoints (-want +got):\n%s", diff)
			}
		})
	}
}

// shadowSource is a gateway's routes with shadow tallies only.
type shadowSource map[string]operator.ShadowReport

func (shadowSource) Recorders() map[string]*stats.Recorder       { return nil }
func (s shadowSource) Shadows() map[string]operator.ShadowReport { return s }

// TestShadowTalliesReachTheOperator sends the shadow tallies of two
// gateways, one of them still of an earlier shadow, through the operator's
// real demand handler, and checks what the operator sums of the current
// shadow.
func TestShadowTalliesReachTheOperator(t *testing.T) {
	demand := operator.NewDemand(5*time.Second, nil)
	srv := httptest.NewServer(demand.Handler(&wakeLog{seen: make(chan struct{}, 1)}))
	defer srv.Close()
	client := NewClient(srv.URL, nil)
	current, earlier := &serving.Shadow{Model: "m:2", Percent: 10}, &serving.Shadow{Model: "m:2"}
	add := func(tl *traffic.Tally, agree, disagree int) *traffic.Tally {
		for i := range agree + disagree {
			r := traffic.Result{Agree: i < agree, Reason: "differs"}
			tl.Add(traffic.Pair{Result: r, PrimaryLatency: time.Millisecond, ShadowLatency: 3 * time.Millisecond, Input: []byte("in")})
		}
		return tl
	}
	a := add(&traffic.Tally{}, 8, 2)
	b := add(&traffic.Tally{}, 20, 0)
	b.ShadowError(errors.New("503"))
	stale := add(&traffic.Tally{}, 0, 50)
	reps := []*Reporter{
		{Gateway: "gw-a", Client: client, Source: shadowSource{"m": {ID: current.ID(), Tally: a.Snapshot()}}},
		{Gateway: "gw-b", Client: client, Source: shadowSource{"m": {ID: current.ID(), Tally: b.Snapshot()}}},
		{Gateway: "gw-c", Client: client, Source: shadowSource{"m": {ID: earlier.ID(), Tally: stale.Snapshot()}}},
	}
	for _, r := range reps {
		if _, err := client.Report(t.Context(), r.Report(time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	got, ok := demand.Shadows().Summary("m", current)
	want := traffic.SumSnapshots(a.Snapshot(), b.Snapshot())
	if diff := cmp.Diff(want, got); diff != "" || !ok || got.Compared != 30 || got.Agreed != 28 || got.ShadowErrors != 1 {
		t.Errorf("operator's summary of m's shadow (ok %v) (-want +got):\n%s\n%+v", ok, diff, got)
	}
	if rep := (&Reporter{Gateway: "gw", Source: recorders{}}).Report(time.Now()); rep.Shadows != nil {
		t.Errorf("a gateway without shadows reports %v", rep.Shadows)
	}
}
