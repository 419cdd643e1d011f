package gateway

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/metadata"
)

// BenchmarkStageMetrics measures what request metrics add to one request:
// its deployment's series found, counted in flight, and its end observed
// under the version that served it.
func BenchmarkStageMetrics(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	b.ReportAllocs()
	for b.Loop() {
		s := m.start("m")
		s.end(http.StatusOK, "3", time.Millisecond)
	}
}

// TestMetricsNoAllocs: once a deployment's version has its series, a
// request's metrics allocate nothing, whichever of its versions serves it.
func TestMetricsNoAllocs(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	versions := []string{"3", "4", "canary"}
	for _, v := range versions {
		m.start("m").end(http.StatusOK, v, time.Millisecond)
	}
	i := 0
	if n := testing.AllocsPerRun(100, func() {
		m.start("m").end(http.StatusOK, versions[i%len(versions)], time.Millisecond)
		i++
	}); n != 0 {
		t.Errorf("%v allocations per request; want 0", n)
	}
}

func TestVersionLabel(t *testing.T) {
	v3 := balance.NewEndpoint("r3", "http://127.0.0.1:1")
	v3.Version = "3"
	unversioned := balance.NewEndpoint("r", "http://127.0.0.1:2")
	tests := []struct {
		name string
		rt   *routing.Route
		ep   *balance.Endpoint
		tag  string
		want string
	}{
		{name: "the replica's version", rt: &routing.Route{Version: "3"}, ep: v3, want: "3"},
		{name: "an old replica in a rollover", rt: &routing.Route{Version: "4"}, ep: v3, want: "3"},
		{name: "no replica reached", rt: &routing.Route{Version: "4"}, want: "4"},
		{name: "a replica that does not say", rt: &routing.Route{Version: "4"}, ep: unversioned, want: "4"},
		{name: "a track of models given by path", rt: &routing.Route{}, ep: unversioned, tag: "canary", want: "canary"},
		{name: "a model given by path", rt: &routing.Route{}, ep: unversioned, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := versionLabel(tt.rt, tt.ep, tt.tag); got != tt.want {
				t.Errorf("versionLabel = %q; want %q", got, tt.want)
			}
		})
	}
}

// latencyCount returns how many requests of deployment and version m's
// latency histogram observed.
func latencyCount(t *testing.T, m *Metrics, deployment, version string) uint64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.latency)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["deployment"] == deployment && labels["version"] == version {
				return mt.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// TestMetricsSplitVersions: the two versions of a split deployment, m:3 on
// its primary and m:4 on its canary track, count under the deployment in
// series of their own, over REST and gRPC.
func TestMetricsSplitVersions(t *testing.T) {
	// Each drives 2 requests to the primary (tag v3), 3 to the canary,
	// and 1 to a tag the split does not have.
	pins := []string{"v3", "canary", "canary", "v3", "canary", "nope"}
	tests := []struct {
		name  string
		drive func(t *testing.T) *Metrics
	}{
		{name: "REST", drive: func(t *testing.T) *Metrics {
			f := splitFixture(t, 50) // replicas that say their version
			for _, pin := range pins {
				f.postWith(t, "/v2/models/m/infer", map[string]string{VersionHeader: pin})
			}
			return f.metrics
		}},
		{name: "gRPC", drive: func(t *testing.T) *Metrics {
			// Replicas that do not say their version: their routes do.
			split, _ := routing.NewSplit([]routing.Track{{Key: "m", Tag: "v3", Weight: 50}, {Key: "m.canary", Tag: "canary", Weight: 50}})
			f := newGRPCFixture(t, routing.Route{Deployment: "m", Version: "3", Endpoints: []*balance.Endpoint{grpcReplica(t, "p1")}, Split: split}, nil)
			f.tab.Publish(routing.Route{Deployment: "m.canary", Version: "4", Endpoints: []*balance.Endpoint{grpcReplica(t, "c1")}, Stats: &stats.Recorder{}})
			for _, pin := range pins {
				ctx := metadata.AppendToOutgoingContext(context.Background(), "ebb-version", pin)
				_, _ = f.client.ModelInfer(ctx, inferRequest(t, "m"))
			}
			return f.metrics
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.drive(t)
			for version, want := range map[string]int{"3": 2, "4": 3} {
				if got := testutil.ToFloat64(m.requests.WithLabelValues("m", "200", version)); got != float64(want) {
					t.Errorf("ebb_gateway_requests_total{m,200,%s} = %v; want %d", version, got, want)
				}
				if got := latencyCount(t, m, "m", version); got != uint64(want) {
					t.Errorf("ebb_gateway_request_duration_seconds{m,%s} counted %d; want %d", version, got, want)
				}
			}
			if got := testutil.ToFloat64(m.requests.WithLabelValues("m", "404", "")); got != 1 {
				t.Errorf("ebb_gateway_requests_total{m,404,\"\"} = %v; want 1 (the unknown tag)", got)
			}
			if got := latencyCount(t, m, "m.canary", "4"); got != 0 {
				t.Errorf("the canary's track counted %d requests as a deployment of its own; want them under m", got)
			}
			if got := testutil.ToFloat64(m.inFlight.WithLabelValues("m")); got != 0 {
				t.Errorf("ebb_gateway_requests_in_flight{m} = %v after the requests; want 0", got)
			}
		})
	}
}
