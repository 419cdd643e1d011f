package gateway

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// grpcReplica starts a real replica server with the echo model, REST and
// gRPC on one port, and returns its endpoint.
func grpcReplica(t *testing.T, id string) *balance.Endpoint {
	t.Helper()
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	ln := listenLoopback(t)
	s := server.New("m", m, server.Options{ReplicaID: id})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ServeWithGRPC(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })
	return balance.NewEndpoint(id, "http://"+ln.Addr().String())
}

func listenLoopback(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// wakeSignal is an activator.Waker that reports wakes on a channel and
// publishes nothing: the test plays the control loop.
type wakeSignal chan string

func (w wakeSignal) Wake(name string) {
	select {
	case w <- name:
	default:
	}
}

type grpcFixture struct {
	tab     *routing.Table
	rec     *stats.Recorder
	act     *activator.Activator
	gw      *GRPC
	metrics *Metrics
	client  oipgrpc.GRPCInferenceServiceClient
}

// newGRPCFixture serves a GRPC gateway on a real listener over a routing
// table that starts with route; waker is told of cold requests (nil: a
// publisher with no endpoints), which are held up to 300ms.
func newGRPCFixture(t *testing.T, route routing.Route, waker activator.Waker) *grpcFixture {
	return newGRPCFixtureHold(t, route, waker, 300*time.Millisecond)
}

func newGRPCFixtureHold(t *testing.T, route routing.Route, waker activator.Waker, hold time.Duration) *grpcFixture {
	t.Helper()
	return newGRPCFixtureOpts(t, route, waker, hold, Options{})
}

// newGRPCFixtureOpts is newGRPCFixtureHold with more gateway options.
func newGRPCFixtureOpts(t *testing.T, route routing.Route, waker activator.Waker, hold time.Duration, opts Options) *grpcFixture {
	t.Helper()
	f := &grpcFixture{tab: &routing.Table{}, rec: &stats.Recorder{}}
	route.Stats = f.rec
	f.tab.Publish(route)
	if waker == nil {
		waker = &publisher{tab: f.tab, rec: f.rec}
	}
	f.act = activator.New(f.tab, waker, activator.Options{Timeout: hold})
	f.metrics = NewMetrics(prometheus.NewRegistry())
	opts.Metrics, opts.HoldTimeout, opts.Version = f.metrics, 200*time.Millisecond, "v1"
	f.gw = NewGRPC(f.tab, f.act, opts)
	ln := listenLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.gw.Serve(ctx, ln, 5*time.Second) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("GRPC.Serve: %v", err)
		}
	})
	f.client = oipgrpc.NewGRPCInferenceServiceClient(cc)
	return f
}

var echoInput = []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, 2}, Data: []float32{1, 2}}}

func inferRequest(t *testing.T, model string) *oipgrpc.ModelInferRequest {
	t.Helper()
	req := &oipgrpc.ModelInferRequest{ModelName: model}
	if err := oipgrpc.SetInputs(req, echoInput, false); err != nil {
		t.Fatal(err)
	}
	return req
}

// infer calls ModelInfer and returns the replica that answered.
func (f *grpcFixture) infer(t *testing.T, model string) (string, error) {
	t.Helper()
	var hdr metadata.MD
	resp, err := f.client.ModelInfer(context.Background(), inferRequest(t, model), grpc.Header(&hdr))
	if err != nil {
		return "", err
	}
	out, err := oipgrpc.OutputTensors(resp)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(echoInput, out); diff != "" {
		t.Errorf("echoed outputs (-want +got):\n%s", diff)
	}
	if ids := hdr.Get("ebb-replica"); len(ids) == 1 {
		return ids[0], nil
	}
	t.Errorf("ebb-replica header = %v; want one ID", hdr.Get("ebb-replica"))
	return "", nil
}

func TestGRPCForwardWarm(t *testing.T) {
	f := newGRPCFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{grpcReplica(t, "r1")}}, nil)
	id, err := f.infer(t, "m")
	if err != nil || id != "r1" {
		t.Fatalf("ModelInfer = replica %q, %v; want r1", id, err)
	}
	meta, err := f.client.ModelMetadata(context.Background(), &oipgrpc.ModelMetadataRequest{Name: "m"})
	if err != nil || meta.GetName() != "m" || meta.GetPlatform() != "ebb_echo" || len(meta.GetInputs()) != 1 {
		t.Errorf("ModelMetadata = %v, %v; want the echo model's metadata", meta, err)
	}
	if n := f.rec.InFlight(); n != 0 {
		t.Errorf("recorder in flight after the requests = %d; want 0", n)
	}
	if got := f.rec.Sample(time.Now()).Requests; got != 1 {
		t.Errorf("recorder counted %d requests; want 1 (infer: metadata is not demand, so polling it keeps nothing warm)", got)
	}
	if got := testutil.ToFloat64(f.metrics.requests.WithLabelValues("m", "200", "")); got != 2 {
		t.Errorf("ebb_gateway_requests_total{m,200} = %v; want 2", got)
	}
	live, err := f.client.ServerLive(context.Background(), &oipgrpc.ServerLiveRequest{})
	if err != nil || !live.GetLive() {
		t.Errorf("ServerLive = %v, %v", live, err)
	}
	ready, err := f.client.ServerReady(context.Background(), &oipgrpc.ServerReadyRequest{})
	if err != nil || !ready.GetReady() {
		t.Errorf("ServerReady = %v, %v", ready, err)
	}
	sm, err := f.client.ServerMetadata(context.Background(), &oipgrpc.ServerMetadataRequest{})
	if err != nil || sm.GetName() != "ebb" || sm.GetVersion() != "v1" {
		t.Errorf("ServerMetadata = %v, %v; want ebb v1", sm, err)
	}
}

func TestGRPCForwardRetriesDeadReplica(t *testing.T) {
	f := newGRPCFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{deadEndpoint(t, "dead"), grpcReplica(t, "alive")}}, nil)
	for i := range 20 {
		id, err := f.infer(t, "m")
		if err != nil || id != "alive" {
			t.Fatalf("request %d answered by %q, %v; want alive", i, id, err)
		}
	}
	if got := testutil.ToFloat64(f.metrics.retries.WithLabelValues("m")); got == 0 {
		t.Error("no retry counted although the dead replica was routed")
	}
}

// TestGRPCForwardHoldsWhileCold holds a call until the test, playing the
// control loop, routes a replica after the activator's wake.
func TestGRPCForwardHoldsWhileCold(t *testing.T) {
	woken := make(wakeSignal, 1)
	f := newGRPCFixtureHold(t, routing.Route{Deployment: "m"}, woken, time.Minute)
	type result struct {
		id  string
		err error
	}
	done := make(chan result, 1)
	go func() {
		id, err := f.infer(t, "m")
		done <- result{id, err}
	}()
	if name := <-woken; name != "m" {
		t.Fatalf("woke %q; want m", name)
	}
	if got := f.act.QueueDepth("m"); got != 1 {
		t.Errorf("held calls = %d; want 1", got)
	}
	select {
	case r := <-done:
		t.Fatalf("call returned (%q, %v) while the deployment was cold", r.id, r.err)
	default:
	}
	f.tab.Publish(routing.Route{Deployment: "m", Stats: f.rec, Endpoints: []*balance.Endpoint{grpcReplica(t, "r1")}})
	r := <-done
	if r.err != nil || r.id != "r1" {
		t.Fatalf("held call = %q, %v; want an answer from r1 once routed", r.id, r.err)
	}
}

func TestGRPCForwardErrors(t *testing.T) {
	tests := []struct {
		name      string
		route     routing.Route
		model     string
		wantCode  codes.Code
		wantMsg   string
		wantRetry string
	}{
		{name: "unknown model", route: routing.Route{Deployment: "m"}, model: "other",
			wantCode: codes.NotFound, wantMsg: `model "other" not found`},
		{name: "deployment cannot start", route: routing.Route{Deployment: "m", Failure: "model.json: not an XGBoost model"}, model: "m",
			wantCode: codes.Unavailable, wantMsg: "not an XGBoost model: retry in 10s", wantRetry: "10"},
		{name: "no replica in time", route: routing.Route{Deployment: "m"}, model: "m",
			wantCode: codes.Unavailable, wantMsg: "no ready replica in time", wantRetry: "5"},
		{name: "every replica dead", route: routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{deadEndpoint(t, "d1"), deadEndpoint(t, "d2")}}, model: "m",
			wantCode: codes.Unavailable, wantMsg: "could take the request", wantRetry: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newGRPCFixture(t, tt.route, wakeSignal(make(chan string, 1)))
			var trailer metadata.MD
			_, err := f.client.ModelInfer(context.Background(), inferRequest(t, tt.model), grpc.Trailer(&trailer))
			if status.Code(err) != tt.wantCode || !strings.Contains(status.Convert(err).Message(), tt.wantMsg) {
				t.Errorf("ModelInfer error = %v; want %v containing %q", err, tt.wantCode, tt.wantMsg)
			}
			if got := strings.Join(trailer.Get("retry-after"), ","); got != tt.wantRetry {
				t.Errorf("retry-after trailer = %q; want %q", got, tt.wantRetry)
			}
			if n := f.rec.InFlight(); n != 0 {
				t.Errorf("recorder in flight = %d; want 0", n)
			}
		})
	}
}

// TestGRPCForwardReplicaError passes a replica's InvalidArgument through
// without retrying it elsewhere.
func TestGRPCForwardReplicaError(t *testing.T) {
	f := newGRPCFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{grpcReplica(t, "r1"), grpcReplica(t, "r2")}}, nil)
	req := inferRequest(t, "m")
	req.Inputs[0].Shape = []int64{1, 3}
	_, err := f.client.ModelInfer(context.Background(), req)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "holds 3 elements but contents.fp32_contents has 2") {
		t.Errorf("ModelInfer error = %v; want the replica's InvalidArgument", err)
	}
	if got := testutil.ToFloat64(f.metrics.retries.WithLabelValues("m")); got != 0 {
		t.Errorf("%v retries; want none for a request the replica rejected", got)
	}
	if got := testutil.ToFloat64(f.metrics.requests.WithLabelValues("m", "400", "")); got != 1 {
		t.Errorf("ebb_gateway_requests_total{m,400} = %v; want 1", got)
	}
}

func TestGRPCModelReady(t *testing.T) {
	tests := []struct {
		name      string
		route     routing.Route
		model     string
		wantReady bool
		wantCode  codes.Code
	}{
		{"cold but startable", routing.Route{Deployment: "m"}, "m", true, codes.OK},
		{"failing", routing.Route{Deployment: "m", Failure: "boom"}, "m", false, codes.OK},
		{"unknown", routing.Route{Deployment: "m"}, "x", false, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			woken := make(wakeSignal, 1)
			f := newGRPCFixture(t, tt.route, woken)
			resp, err := f.client.ModelReady(context.Background(), &oipgrpc.ModelReadyRequest{Name: tt.model})
			if status.Code(err) != tt.wantCode || resp.GetReady() != tt.wantReady {
				t.Errorf("ModelReady = %v, %v; want ready %v, code %v", resp, err, tt.wantReady, tt.wantCode)
			}
			select {
			case name := <-woken:
				t.Errorf("ModelReady woke %q; it must not wake a deployment", name)
			default:
			}
		})
	}
}

// TestGRPCConnectionsFollowRoutes checks that the gateway closes its
// connection to a replica once the replica leaves the route, and all of
// them when the deployment goes away.
func TestGRPCConnectionsFollowRoutes(t *testing.T) {
	r1, r2 := grpcReplica(t, "r1"), grpcReplica(t, "r2")
	f := newGRPCFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{r1}}, nil)
	if _, err := f.infer(t, "m"); err != nil {
		t.Fatal(err)
	}
	f.gw.conns.mu.Lock()
	cc1 := f.gw.conns.conns[r1.URL]
	f.gw.conns.mu.Unlock()
	if cc1 == nil {
		t.Fatal("no cached connection to r1 after a call")
	}

	f.tab.Publish(routing.Route{Deployment: "m", Stats: f.rec, Endpoints: []*balance.Endpoint{r2}})
	if id, err := f.infer(t, "m"); err != nil || id != "r2" {
		t.Fatalf("after rerouting, ModelInfer = %q, %v; want r2", id, err)
	}
	waitUntil(t, "the connection to r1 to close", func() bool { return cc1.cc.GetState().String() == "SHUTDOWN" })
	f.gw.conns.mu.Lock()
	_, has1 := f.gw.conns.conns[r1.URL]
	_, has2 := f.gw.conns.conns[r2.URL]
	f.gw.conns.mu.Unlock()
	if has1 || !has2 {
		t.Errorf("cached connections: r1 %v, r2 %v; want only r2", has1, has2)
	}

	f.tab.Remove("m")
	waitUntil(t, "every connection to close", func() bool { return f.gw.conns.len() == 0 })
}

// TestGRPCConnectionShared checks that a connection two deployments share
// (models of a multi-model pool on one replica) stays open while either
// still routes to the replica: one model leaving the replica (evicted)
// must not close the other's connection. The stand-in replica serves m
// only, so b's calls are answered NotFound, over the same connection.
func TestGRPCConnectionShared(t *testing.T) {
	r1 := grpcReplica(t, "r1")
	f := newGRPCFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{r1}}, nil)
	f.tab.Publish(routing.Route{Deployment: "b", Stats: f.rec, Endpoints: []*balance.Endpoint{r1}})
	// b dials first: the connection is not b's alone.
	if _, err := f.infer(t, "b"); status.Code(err) != codes.NotFound {
		t.Fatalf("infer b: %v, want NotFound from the replica", err)
	}
	if _, err := f.infer(t, "m"); err != nil {
		t.Fatalf("infer m: %v", err)
	}
	f.gw.conns.mu.Lock()
	cc := f.gw.conns.conns[r1.URL]
	shared := cc != nil && cc.users["m"] && cc.users["b"]
	f.gw.conns.mu.Unlock()
	if !shared || f.gw.conns.len() != 1 {
		t.Fatalf("%d cached connections, shared by m and b: %v; want one", f.gw.conns.len(), shared)
	}

	// b leaves the replica: m keeps the connection.
	f.tab.Publish(routing.Route{Deployment: "b", Stats: f.rec})
	waitUntil(t, "b to stop using the connection", func() bool {
		f.gw.conns.mu.Lock()
		defer f.gw.conns.mu.Unlock()
		return !cc.users["b"]
	})
	if s := cc.cc.GetState().String(); s == "SHUTDOWN" {
		t.Fatal("the connection m still routes to was closed when b left the replica")
	}
	if _, err := f.infer(t, "m"); err != nil {
		t.Fatalf("infer m after b left: %v", err)
	}
	f.gw.conns.mu.Lock()
	same := f.gw.conns.conns[r1.URL] == cc
	f.gw.conns.mu.Unlock()
	if !same {
		t.Error("m's call redialed instead of using its open connection")
	}

	// m leaves too: the connection closes.
	f.tab.Remove("m")
	waitUntil(t, "the connection to close", func() bool { return cc.cc.GetState().String() == "SHUTDOWN" })
	if n := f.gw.conns.len(); n != 0 {
		t.Errorf("%d cached connections after both left, want 0", n)
	}
}

// waitUntil polls cond; the deadline only guards against a hung test.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGRPCBufferedBytes: a gRPC request's bytes count against
// MaxBufferedBytes in the budget it shares with REST bodies, while it is
// held cold and in flight; over the cap it is Unavailable with a retry
// hint, counted as limited{buffered_bytes}, and the bytes come back when
// it ends.
func TestGRPCBufferedBytes(t *testing.T) {
	size := int64(proto.Size(inferRequest(t, "m")))
	shared := &BodyBudget{}
	woken := make(wakeSignal, 1)
	f := newGRPCFixtureOpts(t, routing.Route{Deployment: "m"}, woken, time.Minute,
		Options{MaxBufferedBytes: size + size/2, Budget: shared})

	// A cold request holds its bytes while it waits.
	done := make(chan error, 1)
	go func() {
		_, err := f.infer(t, "m")
		done <- err
	}()
	<-woken
	if got := shared.Held(); got != size {
		t.Fatalf("budget held %d bytes while the call is held; want its %d", got, size)
	}
	// A second one does not fit next to it.
	var trailer metadata.MD
	_, err := f.client.ModelInfer(t.Context(), inferRequest(t, "m"), grpc.Trailer(&trailer))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "--max-buffered-bytes") || len(trailer.Get("retry-after")) != 1 {
		t.Fatalf("second call over the cap: %v (trailer %v); want Unavailable naming --max-buffered-bytes, with retry-after", err, trailer)
	}
	if got := testutil.ToFloat64(f.metrics.limited.WithLabelValues(limitBufferedBytes)); got != 1 {
		t.Errorf("limited{buffered_bytes} = %v; want 1", got)
	}
	f.tab.Publish(routing.Route{Deployment: "m", Stats: f.rec, Endpoints: []*balance.Endpoint{grpcReplica(t, "r1")}})
	if err := <-done; err != nil {
		t.Fatalf("held call: %v", err)
	}
	if got := shared.Held(); got != 0 {
		t.Errorf("budget holds %d bytes after the calls ended; want 0", got)
	}
	// REST bodies held in the same budget crowd gRPC out too.
	if !shared.reserve(size, size+size/2) {
		t.Fatal("cannot reserve a REST body's bytes")
	}
	if _, err := f.infer(t, "m"); status.Code(err) != codes.Unavailable {
		t.Errorf("call while REST holds the budget: %v; want Unavailable", err)
	}
	shared.release(size)
	if _, err := f.infer(t, "m"); err != nil {
		t.Errorf("call once REST released the budget: %v", err)
	}
}

// TestGRPCMessageSize: a request message over MaxBodyBytes is refused by
// gRPC's transport (ResourceExhausted) and counted as
// limited{grpc_message_size}; one within it is served and not counted.
func TestGRPCMessageSize(t *testing.T) {
	size := int64(proto.Size(inferRequest(t, "m")))
	tests := []struct {
		name      string
		maxBody   int64
		wantCode  codes.Code
		wantCount float64
	}{
		{name: "within the limit", maxBody: size, wantCode: codes.OK},
		{name: "over the limit", maxBody: size - 1, wantCode: codes.ResourceExhausted, wantCount: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newGRPCFixtureOpts(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{grpcReplica(t, "r1")}}, nil,
				300*time.Millisecond, Options{MaxBodyBytes: tt.maxBody})
			_, err := f.client.ModelInfer(t.Context(), inferRequest(t, "m"))
			if status.Code(err) != tt.wantCode {
				t.Errorf("ModelInfer of %d bytes, limit %d: %v; want %v", size, tt.maxBody, err, tt.wantCode)
			}
			// The server counts once the call ended, which may be just
			// after the client has its answer.
			limited := f.metrics.limited.WithLabelValues(limitGRPCMessageSize)
			for deadline := time.Now().Add(2 * time.Second); testutil.ToFloat64(limited) < tt.wantCount && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if got := testutil.ToFloat64(limited); got != tt.wantCount {
				t.Errorf("limited{grpc_message_size} = %v; want %v", got, tt.wantCount)
			}
		})
	}
}
