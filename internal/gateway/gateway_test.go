package gateway

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const body = `{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`

// replica starts a real replica server with the echo model.
func replica(t testing.TB, id string) *balance.Endpoint {
	t.Helper()
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New("m", m, server.Options{ReplicaID: id}))
	t.Cleanup(srv.Close)
	return balance.NewEndpoint(id, srv.URL)
}

// versionedReplica starts a real replica server with the echo model that
// serves registry version ("m:3"), and returns its endpoint, which carries
// the version as the control loop's do.
func versionedReplica(t testing.TB, id, version string) *balance.Endpoint {
	t.Helper()
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New("m", m, server.Options{ReplicaID: id, ModelVersion: version}))
	t.Cleanup(srv.Close)
	ep := balance.NewEndpoint(id, srv.URL)
	ep.Version = serving.OIPVersion(version)
	return ep
}

// deadEndpoint is a loopback address where nothing listens.
func deadEndpoint(t *testing.T, id string) *balance.Endpoint {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	return balance.NewEndpoint(id, url)
}

// publisher plays the control loop: on Wake it routes the given endpoints.
type publisher struct {
	tab *routing.Table
	rec *stats.Recorder
	eps []*balance.Endpoint
}

func (p *publisher) Wake(name string) {
	if p.eps != nil {
		p.tab.Publish(routing.Route{Deployment: name, Endpoints: p.eps, Stats: p.rec})
	}
}

type fixture struct {
	tab     *routing.Table
	rec     *stats.Recorder
	pub     *publisher
	metrics *Metrics
	g       *Gateway
	url     string // the base URL of the gateway's front server
}

// serve runs g behind its front server (Server) on a loopback listener
// capped as cmd/ebb caps it, and returns its base URL.
func serve(t testing.TB, g *Gateway) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(g, nil)
	go s.Serve(g.Listener(ln))
	t.Cleanup(func() { s.Close() })
	return "http://" + ln.Addr().String()
}

func newFixture(t testing.TB, route routing.Route) *fixture {
	t.Helper()
	f := &fixture{tab: &routing.Table{}, rec: &stats.Recorder{}}
	route.Stats = f.rec
	f.tab.Publish(route)
	f.pub = &publisher{tab: f.tab, rec: f.rec}
	act := activator.New(f.tab, f.pub, activator.Options{Timeout: 300 * time.Millisecond})
	f.metrics = NewMetrics(prometheus.NewRegistry())
	f.g = New(f.tab, act, Options{Metrics: f.metrics, HoldTimeout: 200 * time.Millisecond, MaxBodyBytes: 4096})
	f.url = serve(t, f.g)
	return f
}

func (f *fixture) post(t *testing.T, path, b string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Post(f.url+path, "application/json", strings.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

func TestForwardWarm(t *testing.T) {
	f := newFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(t, "r1")}})
	resp, out := f.post(t, "/v2/models/m/infer", body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(out, `"data":[1,2]`) {
		t.Fatalf("infer = %d %s; want 200 with the echoed data", resp.StatusCode, out)
	}
	if got := resp.Header.Get("Ebb-Replica"); got != "r1" {
		t.Errorf("Ebb-Replica = %q; want r1", got)
	}
	if n := f.rec.InFlight(); n != 0 {
		t.Errorf("recorder in flight after the request = %d; want 0", n)
	}
	if got := testutil.ToFloat64(f.metrics.requests.WithLabelValues("m", "200", "")); got != 1 {
		t.Errorf("ebb_gateway_requests_total{m,200} = %v; want 1", got)
	}
}

func TestForwardRetriesDeadReplica(t *testing.T) {
	f := newFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{deadEndpoint(t, "dead"), replica(t, "alive")}})
	for i := range 20 {
		resp, out := f.post(t, "/v2/models/m/infer", body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Ebb-Replica") != "alive" {
			t.Fatalf("request %d = %d from %q: %s; want 200 from alive", i, resp.StatusCode, resp.Header.Get("Ebb-Replica"), out)
		}
	}
	if got := testutil.ToFloat64(f.metrics.retries.WithLabelValues("m")); got == 0 {
		t.Error("no retry counted although the dead replica was routed")
	}
}

func TestForwardHoldsWhileCold(t *testing.T) {
	f := newFixture(t, routing.Route{Deployment: "m"})
	f.pub.eps = []*balance.Endpoint{replica(t, "r1")}
	resp, out := f.post(t, "/v2/models/m/infer", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("cold infer = %d %s; want 200 once a replica is routed", resp.StatusCode, out)
	}
}

func TestForwardErrors(t *testing.T) {
	tests := []struct {
		name       string
		route      routing.Route
		path, body string
		wantCode   int
		wantRetry  bool
		wantInBody string
	}{
		{
			name: "unknown model", route: routing.Route{Deployment: "m"},
			path: "/v2/models/other/infer", body: body,
			wantCode: http.StatusNotFound, wantInBody: `model \"other\" not found`,
		},
		{
			name: "deployment cannot start", route: routing.Route{Deployment: "m", Failure: "model.json: not an XGBoost model"},
			path: "/v2/models/m/infer", body: body,
			wantCode: http.StatusServiceUnavailable, wantRetry: true, wantInBody: "not an XGBoost model",
		},
		{
			name: "no replica in time", route: routing.Route{Deployment: "m"},
			path: "/v2/models/m/infer", body: body,
			wantCode: http.StatusServiceUnavailable, wantRetry: true, wantInBody: "no ready replica in time",
		},
		{
			name: "every replica dead", route: routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{deadEndpoint(t, "d1"), deadEndpoint(t, "d2")}},
			path: "/v2/models/m/infer", body: body,
			wantCode: http.StatusServiceUnavailable, wantRetry: true, wantInBody: "could take the request",
		},
		{
			name: "body too large", route: routing.Route{Deployment: "m"},
			path: "/v2/models/m/infer", body: strings.Repeat(" ", 5000),
			wantCode: http.StatusRequestEntityTooLarge, wantInBody: "exceeds the limit of 4096 bytes (--max-body-bytes)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.route)
			resp, out := f.post(t, tt.path, tt.body)
			if resp.StatusCode != tt.wantCode || !strings.Contains(out, tt.wantInBody) {
				t.Errorf("POST %s = %d %s; want %d containing %q", tt.path, resp.StatusCode, out, tt.wantCode, tt.wantInBody)
			}
			if got := resp.Header.Get("Retry-After") != ""; got != tt.wantRetry {
				t.Errorf("Retry-After present = %v; want %v", got, tt.wantRetry)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("Content-Type = %q; want JSON", resp.Header.Get("Content-Type"))
			}
			if n := f.rec.InFlight(); n != 0 {
				t.Errorf("recorder in flight = %d; want 0", n)
			}
		})
	}
}

func TestModelReady(t *testing.T) {
	tests := []struct {
		name     string
		route    routing.Route
		path     string
		wantCode int
		wantBody string
	}{
		{"cold but startable", routing.Route{Deployment: "m"}, "/v2/models/m/ready", 200, `"ready":true`},
		{"failing", routing.Route{Deployment: "m", Failure: "boom"}, "/v2/models/m/ready", 503, `"ready":false`},
		{"unknown", routing.Route{Deployment: "m"}, "/v2/models/x/ready", 404, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.route)
			resp, err := http.Get(f.url + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode || !strings.Contains(string(b), tt.wantBody) {
				t.Errorf("GET %s = %d %s; want %d with %s", tt.path, resp.StatusCode, b, tt.wantCode, tt.wantBody)
			}
		})
	}
}
