package discovery

import (
	"context"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/traffic"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func ptr[T any](v T) *T { return &v }

func TestReadyEndpoints(t *testing.T) {
	ep := func(pod, ip string, ready, terminating *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{
			Addresses:  []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ready, Terminating: terminating},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: pod},
		}
	}
	tests := []struct {
		name   string
		slices []discoveryv1.EndpointSlice
		want   []readyEndpoint
	}{
		{name: "none"},
		{
			name: "ready ones only, sorted, port from the slice",
			slices: []discoveryv1.EndpointSlice{{
				Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(9000))}},
				Endpoints: []discoveryv1.Endpoint{
					ep("m-b", "127.64.0.3", ptr(true), nil),
					ep("m-a", "127.64.0.2", nil, nil),
					ep("m-c", "127.64.0.4", ptr(false), nil),
					ep("m-d", "127.64.0.5", ptr(true), ptr(true)),
				},
			}},
			want: []readyEndpoint{{id: "m-a", url: "http://127.64.0.2:9000"}, {id: "m-b", url: "http://127.64.0.3:9000"}},
		},
		{
			name: "one endpoint per pod across slices, default port, IPv6",
			slices: []discoveryv1.EndpointSlice{
				{Endpoints: []discoveryv1.Endpoint{ep("m-a", "fd00::1", ptr(true), nil)}},
				{Endpoints: []discoveryv1.Endpoint{ep("m-a", "fd00::1", ptr(true), nil)}},
			},
			want: []readyEndpoint{{id: "m-a", url: "http://[fd00::1]:8080"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readyEndpoints(tt.slices)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(readyEndpoint{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

type recorders map[string]*stats.Recorder

func (r recorders) Recorders() map[string]*stats.Recorder { return r }

type wakeLog struct {
	mu    sync.Mutex
	names []string
	seen  chan struct{}
}

func (w *wakeLog) Wake(name string) {
	w.mu.Lock()
	w.names = append(w.names, name)
	w.mu.Unlock()
	w.seen <- struct{}{}
}

// TestReportAndWakeReachTheOperator sends a gateway's demand and a wake-up
// to the operator's real demand handler.
func TestReportAndWakeReachTheOperator(t *testing.T) {
	demand := operator.NewDemand(5*time.Second, nil)
	wl := &wakeLog{seen: make(chan struct{}, 16)}
	srv := httptest.NewServer(demand.Handler(wl))
	defer srv.Close()

	t0 := time.Now()
	busy, idle, held := &stats.Recorder{}, &stats.Recorder{}, &stats.Recorder{}
	busy.Begin(t0)
	busy.Begin(t0)
	busy.End(t0.Add(500 * time.Millisecond))
	idle.Sample(t0)
	held.Begin(t0)
	held.Begin(t0)
	held.Begin(t0)
	src := recorders{"busy": busy, "idle": idle, "held": held}
	client := NewClient(srv.URL, nil)

	rep := (&Reporter{Gateway: "gw-1", Source: recorders{"busy": busy, "idle": idle}, Client: client}).Report(t0.Add(time.Second))
	want := operator.DemandReport{Gateway: "gw-1", Deployments: map[string]operator.GatewayDemand{
		"busy": {InFlight: 1, Concurrency: 1.5, Requests: 2},
	}}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	ans, err := client.Report(t.Context(), rep)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Gateways != 1 {
		t.Errorf("the operator counts %d gateways, want 1 (gw-1)", ans.Gateways)
	}
	if got := demand.InFlight("busy"); got != 1 {
		t.Errorf("operator sees %d in flight for busy, want 1", got)
	}

	w := NewWaker("gw-1", client, src, nil)
	w.Wake("held")
	select {
	case <-wl.seen:
	case <-time.After(10 * time.Second):
		t.Fatal("the operator was not woken")
	}
	if got := demand.InFlight("held"); got != 3 {
		t.Errorf("operator sees %d held for held, want 3", got)
	}

	bad := NewClient("http://127.0.0.1:1", nil)
	if _, err := bad.Report(t.Context(), rep); err == nil {
		t.Error("reporting to a closed port succeeded")
	}
}

// TestReadyPodsCarryVersions checks that a ready replica pod's registry
// version comes from the label the kube backend sets.
func TestReadyPodsCarryVersions(t *testing.T) {
	pod := func(name, version string) corev1.Pod {
		p := corev1.Pod{
			Status: corev1.PodStatus{PodIP: "127.0.0.5", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		}
		p.Name = name
		if version != "" {
			p.Labels = map[string]string{kube.LabelModelVersion: version}
		}
		return p
	}
	got := readyPods([]corev1.Pod{pod("m-b", "4"), pod("m-a", "")})
	want := []readyEndpoint{{id: "m-a", url: "http://127.0.0.5:8080"}, {id: "m-b", url: "http://127.0.0.5:8080", version: "4"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(readyEndpoint{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestClientSendsItsToken checks that reports and wake-ups carry the
// gateway's token to an operator that requires scope gateway.
func TestClientSendsItsToken(t *testing.T) {
	demand := operator.NewDemand(5*time.Second, nil)
	wl := &wakeLog{seen: make(chan struct{}, 16)}
	authn := tokenAuth{"ebb_gw": {Name: "gateways", Scopes: []string{auth.ScopeGateway}}, "ebb_read": {Name: "r", Scopes: []string{auth.ScopeRead}}}
	srv := httptest.NewServer(auth.Require(authn, auth.Gateway, demand.Handler(wl)))
	defer srv.Close()
	rep := operator.DemandReport{Gateway: "gw-1", Deployments: map[string]operator.GatewayDemand{"busy": {InFlight: 2}}}
	for _, tc := range []struct {
		token string
		ok    bool
	}{{"", false}, {"ebb_read", false}, {"ebb_gw", true}} {
		c := NewClient(srv.URL, nil).WithToken(tc.token)
		if _, err := c.Report(t.Context(), rep); (err == nil) != tc.ok {
			t.Errorf("report with token %q: %v, want ok %v", tc.token, err, tc.ok)
		}
		if err := c.Wake(t.Context(), "busy", operator.WakeRequest{Gateway: "gw-1", InFlight: 1}); (err == nil) != tc.ok {
			t.Errorf("wake with token %q: %v, want ok %v", tc.token, err, tc.ok)
		}
	}
	if got := demand.InFlight("busy"); got == 0 {
		t.Error("the operator sees nothing in flight: the authenticated report and wake-up did not count")
	}
}

// tokenAuth is an authenticator over fixed tokens.
type tokenAuth map[string]auth.Principal

func (a tokenAuth) Authenticate(_ context.Context, token string) (auth.Principal, error) {
	p, ok := a[token]
	if !ok {
		return auth.Principal{}, auth.Unauthenticated("unknown token")
	}
	return p, nil
}

// meteredSource is a gateway's routes with meters: no demand, only the
// meters of m and m.canary.
type meteredSource map[string]*traffic.Meter

func (meteredSource) Recorders() map[string]*stats.Recorder { return nil }
func (s meteredSource) Meters() map[string]*traffic.Meter   { return s }

// TestMetersReachTheOperator meters the requests of a split at two
// gateways whose reports reach the operator's real demand handler or fail,
// and checks that the operator's merged meters measure what one meter that
// saw every request measures: failed reports are resent, reports that
// arrived but whose answer was lost are not counted twice.
func TestMetersReachTheOperator(t *testing.T) {
	demand := operator.NewDemand(5*time.Second, nil)
	srv := httptest.NewServer(demand.Handler(&wakeLog{seen: make(chan struct{}, 1)}))
	defer srv.Close()
	good, bad := NewClient(srv.URL, nil), NewClient("http://127.0.0.1:1", nil)

	keys := []string{"m", "m.canary"}
	all := map[string]*traffic.Meter{}
	gws := []meteredSource{{}, {}}
	for _, k := range keys {
		all[k] = traffic.NewMeter(0, 0)
		for _, g := range gws {
			g[k] = traffic.NewMeter(0, 0)
		}
	}
	reporters := []*Reporter{
		{Gateway: "gw-a", Source: gws[0], Client: good},
		{Gateway: "gw-b", Source: gws[1], Client: good},
	}
	t0 := time.Unix(time.Now().Unix()-120, 0)
	rng := rand.New(rand.NewPCG(3, 4))
	for sec := range 40 {
		for i := range 50 {
			at := t0.Add(time.Duration(sec)*time.Second + time.Duration(i)*20*time.Millisecond)
			k := keys[rng.IntN(2)]
			lat := time.Duration(1+rng.IntN(90)) * time.Millisecond
			failed := rng.IntN(10) == 0
			all[k].Observe(at, lat, failed)
			gws[rng.IntN(2)][k].Observe(at, lat, failed)
		}
		now := t0.Add(time.Duration(sec+1)*time.Second + 300*time.Millisecond)
		for g, r := range reporters {
			rep := r.Report(now)
			switch {
			case g == 1 && sec >= 10 && sec < 15: // the operator is unreachable
				if _, err := bad.Report(t.Context(), rep); err == nil {
					t.Fatal("reporting to a closed port succeeded")
				}
			case g == 1 && sec >= 20 && sec < 23: // the report arrives, its answer is lost
				if _, err := good.Report(t.Context(), rep); err != nil {
					t.Fatal(err)
				}
			default:
				if _, err := good.Report(t.Context(), rep); err != nil {
					t.Fatal(err)
				}
				r.Acknowledge()
			}
		}
	}
	end := t0.Add(40 * time.Second)
	for _, k := range keys {
		want := all[k].Snapshot(t0, end)
		if want.Requests < 800 {
			t.Fatalf("only %d requests for %s", want.Requests, k)
		}
		if diff := cmp.Diff(want, demand.Meters().Measure(k, t0, end)); diff != "" {
			t.Errorf("operator's measure of %s (-one meter +merged):\n%s", k, diff)
		}
	}
	if got := demand.Meters().Measure("other", t0, end); got != (traffic.Measurement{}) {
		t.Errorf("measure of a key no gateway reported = %+v; want no data", got)
	}
}

// TestReporterBoundsTheBacklog checks that after failed reports a report
// carries no bucket older than MeterBacklog, and that a gateway without
// meters sends none.
func TestReporterBoundsTheBacklog(t *testing.T) {
	t0 := time.Unix(1772366400, 0)
	m := traffic.NewMeter(0, 0)
	for i := range 60 {
		m.Observe(t0.Add(time.Duration(i)*time.Second), time.Millisecond, false)
	}
	r := &Reporter{Gateway: "gw", Source: meteredSource{"m.canary": m}, MeterBacklog: 10 * time.Second}
	now := t0.Add(60 * time.Second)
	rep := r.Report(now) // never acknowledged, as if every report failed
	bs := rep.Meters["m.canary"]
	if len(bs) != 10 || bs[0].Start != t0.Unix()+49 || bs[9].Start != t0.Unix()+58 {
		t.Errorf("report after a minute of failures carries %d buckets from %d; want the 10 of seconds 49..58", len(bs), bs[0].Start-t0.Unix())
	}
	r.Acknowledge()
	if rep := r.Report(now.Add(time.Second)); len(rep.Meters["m.canary"]) != 1 {
		t.Errorf("after an acknowledged report the next carries %d buckets; want second 59's only", len(rep.Meters["m.canary"]))
	}
	if rep := (&Reporter{Gateway: "gw", Source: recorders{}}).Report(now); rep.Meters != nil {
		t.Errorf("a gateway without meters reports %v", rep.Meters)
	}
}

// TestOperatorRefusesInvalidMeters checks that a report whose meters a
// gateway cannot have made is refused, saying why.
func TestOperatorRefusesInvalidMeters(t *testing.T) {
	demand := operator.NewDemand(5*time.Second, nil)
	srv := httptest.NewServer(demand.Handler(&wakeLog{seen: make(chan struct{}, 1)}))
	defer srv.Close()
	rep := operator.DemandReport{Gateway: "gw", Meters: map[string][]traffic.Bucket{"m.canary": {{Start: 1772366400, Requests: 2, Hist: []uint32{4, 1}}}}}
	_, err := NewClient(srv.URL, nil).Report(t.Context(), rep)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "2 requests but the histogram counts 1") {
		t.Errorf("report with an invalid bucket: %v; want 400 saying what is wrong", err)
	}
}

// objectCache is a cache.Cache over a fake client: what Routes.sync reads.
type objectCache struct {
	cache.Cache
	client.Client
}

func (c objectCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	return c.Client.Get(ctx, key, obj, opts...)
}

func (c objectCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return c.Client.List(ctx, list, opts...)
}

// TestRoutesMeterSplits checks that the primary and the track of a split
// are routed with a Meter each, kept across syncs and reported by Meters,
// and that a deployment without a split, or whose split ended, has none.
func TestRoutesMeterSplits(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	md := func(name string, traffic ...serving.TrafficTarget) *v1alpha1.ModelDeployment {
		m := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
		m.Spec.Model, m.Spec.Traffic = "/models/"+name+".json", traffic
		return m
	}
	split := md("m", serving.TrafficTarget{Model: "/models/m.json", Weight: 90, Tag: "v1"}, serving.TrafficTarget{Model: "/models/m2.json", Weight: 10, Tag: "canary"})
	fc := fake.NewClientBuilder().WithScheme(scheme).WithObjects(split, md("plain")).Build()
	table := &routing.Table{}
	r := NewRoutes(objectCache{Client: fc}, "ns", FromPods, table, nil)
	ctx := t.Context()
	sync := func() {
		t.Helper()
		for _, name := range []string{"m", "plain"} {
			if err := r.sync(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
	}
	sync()
	primary, canary := table.Lookup("m"), table.Lookup("m.canary")
	if primary == nil || canary == nil || primary.Meter == nil || canary.Meter == nil || primary.Meter == canary.Meter {
		t.Fatalf("routes of the split: m %+v, m.canary %+v; want a Meter each", primary, canary)
	}
	if rt := table.Lookup("plain"); rt == nil || rt.Meter != nil {
		t.Errorf("route of a deployment without a split = %+v; want one without a Meter", rt)
	}
	want := map[string]*traffic.Meter{"m": primary.Meter, "m.canary": canary.Meter}
	if diff := cmp.Diff(want, r.Meters(), cmp.Comparer(func(a, b *traffic.Meter) bool { return a == b })); diff != "" {
		t.Errorf("Meters (-want +got):\n%s", diff)
	}

	// A change republishes the routes with the Meters they had.
	split.Spec.Traffic[0].Weight, split.Spec.Traffic[1].Weight = 50, 50
	if err := fc.Update(ctx, split); err != nil {
		t.Fatal(err)
	}
	sync()
	if p, c := table.Lookup("m"), table.Lookup("m.canary"); p == primary || p.Meter != primary.Meter || c.Meter != canary.Meter {
		t.Errorf("after the weights moved: m republished %v with Meter %p (had %p), m.canary's %p (had %p)", p != primary, p.Meter, primary.Meter, c.Meter, canary.Meter)
	}

	split.Spec.Traffic = nil
	if err := fc.Update(ctx, split); err != nil {
		t.Fatal(err)
	}
	sync()
	if rt := table.Lookup("m"); rt == nil || rt.Meter != nil || table.Lookup("m.canary") != nil {
		t.Errorf("split ended: m routed %+v, m.canary %+v; want m without a Meter, no m.canary", rt, table.Lookup("m.canary"))
	}
	if got := r.Meters(); len(got) != 0 {
		t.Errorf("split ended: Meters = %v; want none", got)
	}
}

// TestRoutesCarryRouting: spec.routing and spec.scaling.maxConcurrency
// reach the routes of a deployment and of its split's tracks, and a change
// of either alone republishes them.
func TestRoutesCarryRouting(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	m := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "ns"}}
	m.Spec.Model = "/models/m.json"
	m.Spec.Traffic = []serving.TrafficTarget{{Model: "/models/m.json", Weight: 90, Tag: "v1"}, {Model: "/models/m2.json", Weight: 10, Tag: "canary"}}
	m.Spec.Routing = &serving.Routing{Policy: serving.RoutingConsistentHash, Key: &serving.RoutingKey{Header: "X-Session"}}
	m.Spec.Scaling.MaxConcurrency = 4
	fc := fake.NewClientBuilder().WithScheme(scheme).WithObjects(m).Build()
	table := &routing.Table{}
	r := NewRoutes(objectCache{Client: fc}, "ns", FromPods, table, nil)
	ctx := t.Context()
	if err := r.sync(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"m", "m.canary"} {
		if rt := table.Lookup(key); rt == nil || rt.Routing == nil || rt.Routing.Key.Header != "X-Session" || rt.MaxConcurrency != 4 {
			t.Fatalf("route %s = %+v; want spec.routing and spec.scaling.maxConcurrency on it", key, rt)
		}
	}
	m.Spec.Scaling.MaxConcurrency = 0
	if err := fc.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := r.sync(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"m", "m.canary"} {
		if rt := table.Lookup(key); rt.MaxConcurrency != 0 {
			t.Fatalf("after the cap was removed, route %s has maxConcurrency %d; want 0", key, rt.MaxConcurrency)
		}
	}
	m.Spec.Routing.Key.Header = "X-User"
	if err := fc.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := r.sync(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if rt := table.Lookup("m"); rt.Routing == nil || rt.Routing.Key.Header != "X-User" {
		t.Fatalf("after the key changed, route m routes by %+v; want X-User", rt.Routing)
	}
}
