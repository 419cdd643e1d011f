package routing

import (
	"github.com/ebb-ml/ebb/internal/fairqueue"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/traffic"
	"github.com/google/go-cmp/cmp"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestPublishWakesOnlyTheReplacedRoute(t *testing.T) {
	var tab Table
	a1 := tab.Publish(Route{Deployment: "a"})
	b1 := tab.Publish(Route{Deployment: "b"})
	if closed(a1.Changed()) || closed(b1.Changed()) {
		t.Fatal("fresh routes already changed")
	}
	a2 := tab.Publish(Route{Deployment: "a", Endpoints: []*balance.Endpoint{balance.NewEndpoint("r", "u")}})
	if !closed(a1.Changed()) {
		t.Error("replaced route's Changed not closed")
	}
	if closed(b1.Changed()) {
		t.Error("publishing a woke the waiters of b")
	}
	if got := tab.Lookup("a"); got != a2 || len(got.Endpoints) != 1 {
		t.Errorf("Lookup(a) = %+v; want the new route", got)
	}
	tab.Remove("a")
	if !closed(a2.Changed()) || tab.Lookup("a") != nil {
		t.Error("Remove did not close Changed or left the route")
	}
	if n := tab.Len(); n != 1 {
		t.Errorf("Len = %d; want 1", n)
	}
	tab.Remove("missing") // no panic, no effect
}

func TestVersions(t *testing.T) {
	ep := func(id, version string) *balance.Endpoint {
		e := balance.NewEndpoint(id, "http://"+id)
		e.Version = version
		return e
	}
	tests := []struct {
		name   string
		route  Route
		serves map[string]bool
		want   []string
	}{
		{name: "path model", route: Route{Endpoints: []*balance.Endpoint{ep("a", "")}}, serves: map[string]bool{"1": false, "": true}},
		{name: "cold registry version", route: Route{Version: "3"}, serves: map[string]bool{"3": false}, want: []string{"3"}},
		{name: "rollout from 3 to 10", route: Route{Version: "10", Endpoints: []*balance.Endpoint{ep("a", "3"), ep("b", "10"), ep("c", "3")}},
			serves: map[string]bool{"3": true, "10": true, "4": false}, want: []string{"3", "10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for v, want := range tt.serves {
				if got := tt.route.Serves(v); got != want {
					t.Errorf("Serves(%q) = %v; want %v", v, got, want)
				}
			}
			got := tt.route.Versions()
			if len(got) != len(tt.want) {
				t.Fatalf("Versions() = %q; want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("Versions() = %q; want %q", got, tt.want)
				}
			}
		})
	}
}

func TestAll(t *testing.T) {
	var tab Table
	if got := tab.All(); len(got) != 0 {
		t.Errorf("All of an empty table = %v", got)
	}
	tab.Publish(Route{Deployment: "a"})
	b := tab.Publish(Route{Deployment: "b", Protocol: "openai"})
	tab.Publish(Route{Deployment: "c"})
	tab.Remove("c")
	got := map[string]*Route{}
	for _, r := range tab.All() {
		got[r.Deployment] = r
	}
	if len(got) != 2 || got["a"] == nil || got["b"] != b {
		t.Errorf("All = %v; want the current routes of a and b", got)
	}
}

func TestMeasure(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var tab Table
	m := traffic.NewMeter(0, 0)
	m.Observe(t0.Add(100*time.Millisecond), 2*time.Millisecond, false)
	m.Observe(t0.Add(200*time.Millisecond), 2*time.Millisecond, true)
	tab.Publish(Route{Deployment: "m", Meter: traffic.NewMeter(0, 0)})
	tab.Publish(Route{Deployment: "m.canary", Meter: m})
	tab.Publish(Route{Deployment: "plain"})
	tests := []struct {
		key  string
		want traffic.Measurement
	}{
		{key: "m.canary", want: m.Snapshot(t0, t0.Add(time.Second))},
		{key: "m"},       // metered, no request
		{key: "plain"},   // no meter
		{key: "missing"}, // no route
	}
	if tests[0].want.Requests != 2 {
		t.Fatalf("the canary's meter has %+v; want 2 requests", tests[0].want)
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, tab.Measure(tt.key, t0, t0.Add(time.Second))); diff != "" {
			t.Errorf("Measure(%q) (-want +got):\n%s", tt.key, diff)
		}
	}
	// A republished route keeps measuring with the Meter it carries.
	tab.Publish(Route{Deployment: "m.canary", Meter: m})
	if got := tab.Measure("m.canary", t0, t0.Add(time.Second)); got.Errors != 1 {
		t.Errorf("after republishing, Measure = %+v; want 1 error", got)
	}
}

func TestCapacity(t *testing.T) {
	two := []*balance.Endpoint{balance.NewEndpoint("a", "u"), balance.NewEndpoint("b", "u")}
	tests := []struct {
		name  string
		route Route
		want  int
	}{
		{name: "no cap", route: Route{Endpoints: two}, want: -1},
		{name: "no cap while cold", route: Route{}, want: -1},
		{name: "cap per replica", route: Route{Endpoints: two, MaxConcurrency: 8}, want: 16},
		{name: "capped and cold holds everything", route: Route{MaxConcurrency: 8}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.route.Capacity(); got != tt.want {
				t.Errorf("Capacity = %d; want %d", got, tt.want)
			}
		})
	}
}

// TestPublishQueue: a capped deployment's routes share one admission
// queue whose capacity follows its endpoints; uncapping or removing it
// lets its waiters go.
func TestPublishQueue(t *testing.T) {
	var tab Table
	ep := func(id string) *balance.Endpoint { return &balance.Endpoint{ID: id} }
	cold := tab.Publish(Route{Deployment: "d", MaxConcurrency: 4})
	q := cold.Queue()
	if q == nil || q.Capacity() != 0 {
		t.Fatalf("cold capped route: queue %v, want one of capacity 0", q)
	}
	warm := tab.Publish(Route{Deployment: "d", MaxConcurrency: 4, Endpoints: []*balance.Endpoint{ep("a"), ep("b")}})
	if warm.Queue() != q || q.Capacity() != 8 {
		t.Errorf("two replicas: queue shared %v, capacity %d; want shared, 8", warm.Queue() == q, q.Capacity())
	}
	if un := tab.Publish(Route{Deployment: "d", Endpoints: []*balance.Endpoint{ep("a")}}); un.Queue() != nil || q.Capacity() != fairqueue.Unlimited {
		t.Errorf("uncapped: route queue %v, old queue capacity %d; want nil, unlimited", un.Queue(), q.Capacity())
	}
	q2 := tab.Publish(Route{Deployment: "d", MaxConcurrency: 1, Endpoints: []*balance.Endpoint{ep("a")}}).Queue()
	if q2 == nil || q2 == q || q2.Capacity() != 1 {
		t.Errorf("capped again: a new queue of capacity 1 wanted, got %v (old %v)", q2, q2 == q)
	}
	tab.Remove("d")
	if q2.Capacity() != fairqueue.Unlimited {
		t.Errorf("removed: queue capacity %d, want unlimited", q2.Capacity())
	}
	if tab.Publish(Route{Deployment: "e"}).Queue() != nil {
		t.Error("uncapped deployment got a queue")
	}
}
