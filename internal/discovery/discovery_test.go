package discovery

import (
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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
			want: []readyEndpoint{{"m-a", "http://127.64.0.2:9000"}, {"m-b", "http://127.64.0.3:9000"}},
		},
		{
			name: "one endpoint per pod across slices, default port, IPv6",
			slices: []discoveryv1.EndpointSlice{
				{Endpoints: []discoveryv1.Endpoint{ep("m-a", "fd00::1", ptr(true), nil)}},
				{Endpoints: []discoveryv1.Endpoint{ep("m-a", "fd00::1", ptr(true), nil)}},
			},
			want: []readyEndpoint{{"m-a", "http://[fd00::1]:8080"}},
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
	if err := client.Report(t.Context(), rep); err != nil {
		t.Fatal(err)
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
	if err := bad.Report(t.Context(), rep); err == nil {
		t.Error("reporting to a closed port succeeded")
	}
}
