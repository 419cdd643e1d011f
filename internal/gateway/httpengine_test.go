package gateway

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/engine/httpproxy"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
)

// httpEngineReplica runs a real http-engine replica of deployment "m" in
// front of an OIP v2 server that speaks REST only and knows the model as
// "upstream-m", with a secret, and returns its endpoint.
func httpEngineReplica(t *testing.T, id string) *balance.Endpoint {
	t.Helper()
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(server.New("upstream-m", m, server.Options{}))
	t.Cleanup(up.Close)
	ready := make(chan struct{})
	r, err := httpproxy.New(httpproxy.Options{Upstream: up.URL, ReplicaID: id, Deployment: "m", UpstreamModel: "upstream-m",
		Secret: "s-" + id, Logger: slog.New(slog.DiscardHandler), OnReady: func(time.Time, time.Time) { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-ran })
	select {
	case <-ready:
	case err := <-ran:
		t.Fatal(err)
	}
	ep := balance.NewEndpoint(id, "http://"+ln.Addr().String())
	ep.Secret = "s-" + id
	return ep
}

// TestGRPCToHTTPEngine sends gRPC calls through the gateway to a replica
// of engine http whose server speaks only REST. They used to wait out
// their deadline: the replica answered the HTTP/2 preface with HTTP/1, the
// gateway took it for dead and held the call for another replica.
func TestGRPCToHTTPEngine(t *testing.T) {
	f := newGRPCFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{httpEngineReplica(t, "h1")}}, nil)
	start := time.Now()
	id, err := f.infer(t, "m")
	if err != nil {
		t.Fatalf("gRPC infer through an http-engine replica: %v (after %v)", err, time.Since(start))
	}
	if id != "h1" {
		t.Errorf("answered by %q; want h1", id)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("gRPC infer took %v", took)
	}
}

// TestRESTToHTTPEngineRenames checks that a REST answer through the
// gateway names the deployment, not the upstream's model.
func TestRESTToHTTPEngineRenames(t *testing.T) {
	f := newFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{httpEngineReplica(t, "h1")}})
	resp, out := f.post(t, "/v2/models/m/infer", body)
	if resp.StatusCode != 200 || !strings.Contains(out, `"model_name":"m"`) || !strings.Contains(out, `"data":[1,2]`) {
		t.Errorf("infer = %d %s; want 200 naming m with the echoed data", resp.StatusCode, out)
	}
}
