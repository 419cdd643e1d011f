package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/traffic"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	clocktesting "k8s.io/utils/clock/testing"
)

// serviceTime is how long the fake replicas take to answer, on the fake
// clock.
const serviceTime = 30 * time.Millisecond

// meterFixture routes deployment m, split between its primary and the
// track m.canary, each with a Meter, on a fake clock; its holder plays
// the activator of a cold track.
type meterFixture struct {
	clk             *clocktesting.FakeClock
	tab             *routing.Table
	holder          *coldHolder
	primary, canary *traffic.Meter
	since           time.Time
}

// newMeterFixture routes m and m.canary to replica (m's at once; the
// canary's once a request for it is held).
func newMeterFixture(t *testing.T, clk *clocktesting.FakeClock, replica func() *balance.Endpoint) *meterFixture {
	t.Helper()
	f := &meterFixture{clk: clk, tab: &routing.Table{}, primary: traffic.NewMeter(0, 0), canary: traffic.NewMeter(0, 0), since: clk.Now()}
	split, err := routing.NewSplit([]routing.Track{{Key: "m", Tag: "v3", Weight: 90}, {Key: "m.canary", Tag: "canary", Weight: 10}})
	if err != nil {
		t.Fatal(err)
	}
	f.tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica()}, Split: split, Meter: f.primary})
	f.holder = &coldHolder{clk: clk, tab: f.tab, routes: map[string]routing.Route{
		"m":        {Deployment: "m", Endpoints: []*balance.Endpoint{replica()}, Split: split, Meter: f.primary},
		"m.canary": {Deployment: "m.canary", Endpoints: []*balance.Endpoint{replica()}, Meter: f.canary},
	}}
	f.coldCanary()
	return f
}

// coldCanary routes the canary without a ready replica.
func (f *meterFixture) coldCanary() {
	f.tab.Publish(routing.Route{Deployment: "m.canary", Meter: f.canary})
}

// measure returns what m (the primary) and m.canary measured so far.
func (f *meterFixture) measure() (primary, canary traffic.Measurement) {
	now := f.clk.Now().Add(time.Second)
	return f.primary.Snapshot(f.since, now), f.canary.Snapshot(f.since, now)
}

// coldHolder holds a request for hold on the fake clock, as the activator
// holds one while its deployment starts, then routes the deployment's
// ready replica; with err set it fails the request instead.
type coldHolder struct {
	clk    *clocktesting.FakeClock
	tab    *routing.Table
	routes map[string]routing.Route
	hold   time.Duration
	err    error
}

func (h *coldHolder) WaitTenant(_ context.Context, name, _ string) (*routing.Route, error) {
	h.clk.Step(h.hold)
	if h.err != nil {
		return nil, h.err
	}
	if rt := h.tab.Lookup(name); rt != nil && len(rt.Endpoints) > 0 {
		return rt, nil
	}
	return h.tab.Publish(h.routes[name]), nil
}

// statusReplica is a REST replica that takes serviceTime on clk and
// answers with the status in the query's "status" (default 200).
func statusReplica(t *testing.T, clk *clocktesting.FakeClock) *balance.Endpoint {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clk.Step(serviceTime)
		code := http.StatusOK
		if s := r.URL.Query().Get("status"); s != "" {
			code, _ = strconv.Atoi(s)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"outputs":[]}`))
	}))
	t.Cleanup(srv.Close)
	return balance.NewEndpoint("r", srv.URL)
}

type meterStep struct {
	name  string
	cold  bool  // the canary is cold: the request is held
	fail  error // the holder fails the request with it
	arg   string
	track string // Ebb-Version
	// want are what the canary and the primary measured after the step.
	wantCode                           int
	wantCanary, wantCanaryErrors, want int64
	wantP99                            time.Duration // of the canary; 0: not checked
}

// meterSteps are the same for REST (arg is the replica's status) and
// gRPC (arg names the code the replica answers with).
func meterSteps(ok, internal, invalid, unavailable string) []meterStep {
	return []meterStep{
		{name: "held while cold: the hold is not latency", cold: true, arg: ok, track: "canary", wantCode: 200, wantCanary: 1, wantP99: serviceTime},
		{name: "5xx from the replica fails", arg: internal, track: "canary", wantCode: 500, wantCanary: 2, wantCanaryErrors: 1},
		{name: "4xx is the client's", arg: invalid, track: "canary", wantCode: 400, wantCanary: 3, wantCanaryErrors: 1},
		{name: "503 from the replica fails", arg: unavailable, track: "canary", wantCode: 503, wantCanary: 4, wantCanaryErrors: 2},
		{name: "the primary meters its own", arg: ok, track: "v3", wantCode: 200, wantCanary: 4, wantCanaryErrors: 2, want: 1},
		{name: "a track that cannot start fails", cold: true, fail: activator.ErrTimeout, track: "canary", wantCode: 503, wantCanary: 5, wantCanaryErrors: 3, want: 1},
	}
}

func (f *meterFixture) check(t *testing.T, s meterStep) {
	t.Helper()
	primary, canary := f.measure()
	if canary.Requests != s.wantCanary || canary.Errors != s.wantCanaryErrors || primary.Requests != s.want || primary.Errors != 0 {
		t.Errorf("canary measured %d requests, %d errors, primary %d requests, %d errors; want %d, %d, %d, 0",
			canary.Requests, canary.Errors, primary.Requests, primary.Errors, s.wantCanary, s.wantCanaryErrors, s.want)
	}
	// The hold was 10s, on the clock the gateway reads: a latency that
	// counted it would be 10.03s.
	if s.wantP99 != 0 && (canary.P99 < s.wantP99*31/32 || canary.P99 > s.wantP99*33/32) {
		t.Errorf("canary p99 = %v; want %v (the service time, not the hold)", canary.P99, s.wantP99)
	}
}

func TestMeterREST(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	f := newMeterFixture(t, clk, func() *balance.Endpoint { return statusReplica(t, clk) })
	url := serve(t, New(f.tab, f.holder, Options{Clock: clk, HoldTimeout: time.Second}))
	for _, s := range meterSteps("200", "500", "400", "503") {
		t.Run(s.name, func(t *testing.T) {
			f.holder.hold, f.holder.err = 10*time.Second, s.fail
			if s.cold {
				f.coldCanary()
			}
			path := "/v2/models/m/infer"
			if s.arg != "" {
				path += "?status=" + s.arg
			}
			resp, out := (&fixture{url: url}).postWith(t, path, map[string]string{VersionHeader: s.track})
			if resp.StatusCode != s.wantCode {
				t.Fatalf("= %d %s; want %d", resp.StatusCode, out, s.wantCode)
			}
			f.check(t, s)
		})
	}
}

// codeReplica is a gRPC replica that takes serviceTime on clk and answers
// ModelInfer with the code named by the request's id ("" for OK).
type codeReplica struct {
	oipgrpc.UnimplementedGRPCInferenceServiceServer
	clk *clocktesting.FakeClock
}

func (r *codeReplica) ModelInfer(_ context.Context, req *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
	r.clk.Step(serviceTime)
	if req.GetId() == "" {
		return &oipgrpc.ModelInferResponse{ModelName: req.GetModelName()}, nil
	}
	var c codes.Code
	if err := c.UnmarshalJSON([]byte(`"` + req.GetId() + `"`)); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "unknown code %q", req.GetId())
	}
	return nil, status.Error(c, "as asked")
}

func grpcCodeReplica(t *testing.T, clk *clocktesting.FakeClock) *balance.Endpoint {
	t.Helper()
	ln := listenLoopback(t)
	s := grpc.NewServer()
	oipgrpc.RegisterGRPCInferenceServiceServer(s, &codeReplica{clk: clk})
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return balance.NewEndpoint("r", "http://"+ln.Addr().String())
}

func TestMeterGRPC(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	f := newMeterFixture(t, clk, func() *balance.Endpoint { return grpcCodeReplica(t, clk) })
	gw := NewGRPC(f.tab, f.holder, Options{Clock: clk, HoldTimeout: time.Second})
	ln := listenLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ctx, ln, time.Second) }()
	t.Cleanup(func() { cancel(); <-served })
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := oipgrpc.NewGRPCInferenceServiceClient(cc)
	// Unavailable from a replica is retried, not passed on: the fourth
	// step has it answer DataLoss, which maps to 500 as Internal does.
	steps := meterSteps("", "INTERNAL", "INVALID_ARGUMENT", "DATA_LOSS")
	steps[3].name, steps[3].wantCode = "another 5xx code from the replica fails", 500
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			f.holder.hold, f.holder.err = 10*time.Second, s.fail
			if s.cold {
				f.coldCanary()
			}
			ctx := metadata.AppendToOutgoingContext(context.Background(), "ebb-version", s.track)
			_, err := client.ModelInfer(ctx, &oipgrpc.ModelInferRequest{ModelName: "m", Id: s.arg})
			if got := httpStatus(status.Code(err)); got != s.wantCode {
				t.Fatalf("ModelInfer: %v (HTTP %d); want HTTP %d", err, got, s.wantCode)
			}
			f.check(t, s)
		})
	}
}

// BenchmarkForwardSplit is BenchmarkForward for a request pinned to the
// canary track of a split, with and without the track's Meter: the cost
// of choosing a track, and of metering it.
func BenchmarkForwardSplit(b *testing.B) {
	for _, metered := range []bool{false, true} {
		b.Run("metered="+strconv.FormatBool(metered), func(b *testing.B) {
			split, err := routing.NewSplit([]routing.Track{{Key: "m", Tag: "v3", Weight: 90}, {Key: "m.canary", Tag: "canary", Weight: 10}})
			if err != nil {
				b.Fatal(err)
			}
			f := newFixture(b, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(b, "p1")}, Split: split})
			canary := routing.Route{Deployment: "m.canary", Endpoints: []*balance.Endpoint{replica(b, "c1")}}
			if metered {
				canary.Meter = traffic.NewMeter(0, 0)
			}
			f.tab.Publish(canary)
			benchHandler(b, f.g.Handler(nil), inferCtx("/v2/models/m/infer", map[string]string{VersionHeader: "canary"}), func(r *fasthttp.Response) bool {
				return r.StatusCode() == http.StatusOK && string(r.Header.Peek(replicaHeader)) == "c1"
			})
			if metered && canary.Meter.Snapshot(time.Now().Add(-time.Minute), time.Now()).Requests == 0 {
				b.Error("the canary's meter counted nothing")
			}
		})
	}
}

// BenchmarkStageMeter measures what metering adds to a request of a
// metered track: reading the clock when a replica is picked, and
// observing the request in the track's Meter when it ends.
func BenchmarkStageMeter(b *testing.B) {
	g := New(&routing.Table{}, nil, Options{})
	x := &exchange{meter: traffic.NewMeter(0, 0)}
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		x.picked = g.opts.Clock.Now()
		x.observe(g.now(start), http.StatusOK)
	}
}
