package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/ebb-ml/ebb/internal/telemetry/jaegertest"
	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// TestTraceToJaeger runs requests through a real gateway (REST and gRPC,
// its activator holding the first while the deployment is cold) and a
// real replica server (fasthttp REST and gRPC on one port, batching on),
// each process's spans exported over OTLP to a real Jaeger, and reads the
// traces back: one trace id from the client's traceparent to the engine
// call, each span under the right parent, the hold linked to the cold
// start that released it (a trace of its own, as the control loop records
// it), attributes, and the timing of the cold request.
func TestTraceToJaeger(t *testing.T) {
	j := jaegertest.Start(t)
	const gwService, replicaService = "ebb-test-trace-gateway", "ebb-test-trace-replica"
	provider := func(service string) (trace.Tracer, *telemetry.ColdStarts, func()) {
		tp, shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{Endpoint: j.OTLPGRPC, SampleRatio: 1, ServiceName: service})
		if err != nil {
			t.Fatal(err)
		}
		return tp.Tracer(telemetry.TracerName), telemetry.NewColdStarts(tp), func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := shutdown(ctx); err != nil {
				t.Errorf("flushing %s's spans: %v", service, err)
			}
		}
	}
	gwTracer, coldStarts, flushGateway := provider(gwService)
	replicaTracer, _, flushReplica := provider(replicaService)

	// The replica: batching on, so a request waits in the batcher (the
	// delay: it is alone) before its engine call.
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	rs := server.New("m", m, server.Options{ReplicaID: "m-1", Engine: "echo", Tracer: replicaTracer,
		Batching: server.BatchingPolicy(8, nil, 5*time.Millisecond)})
	rln := listenLoopback(t)
	rctx, stopReplica := context.WithCancel(context.Background())
	replicaDone := make(chan error, 1)
	go func() { replicaDone <- rs.ServeWithGRPC(rctx, rln) }()
	t.Cleanup(func() { stopReplica(); <-replicaDone })
	ep := balance.NewEndpoint("m-1", "http://"+rln.Addr().String())

	// The deployment starts cold; the first wake plays the control loop:
	// 50ms later the replica is "ready", its cold start recorded before it
	// is routed, as becameReady does.
	tab := &routing.Table{}
	tab.Publish(routing.Route{Deployment: "m"})
	waker := &coldStarter{tab: tab, ep: ep, coldStarts: coldStarts, delay: 50 * time.Millisecond}
	act := activator.New(tab, waker, activator.Options{Timeout: 5 * time.Second, Tracer: gwTracer, ColdStarts: coldStarts})
	opts := Options{Tracer: gwTracer, HoldTimeout: 5 * time.Second}
	g := New(tab, act, opts)
	t.Cleanup(g.Close)
	base := serve(t, g)
	gg := NewGRPC(tab, act, opts)
	gln := listenLoopback(t)
	gctx, stopGRPC := context.WithCancel(context.Background())
	grpcDone := make(chan error, 1)
	go func() { grpcDone <- gg.Serve(gctx, gln, 5*time.Second) }()
	t.Cleanup(func() { stopGRPC(); <-grpcDone })

	// REST, cold, with the client's trace context.
	restTrace, restParent := trace.TraceID{0x0e, 0xbb, 1}, trace.SpanID{0x0e, 0xbb, 1}
	req, _ := http.NewRequest(http.MethodPost, base+"/v2/models/m/infer", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", fmt.Sprintf("00-%s-%s-01", restTrace, restParent))
	req.Header.Set("X-Request-Id", "rest-1")
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	took := time.Since(began)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("REST infer: status %d", resp.StatusCode)
	}

	// gRPC, warm, with another trace context.
	grpcTrace, grpcParent := trace.TraceID{0x0e, 0xbb, 2}, trace.SpanID{0x0e, 0xbb, 2}
	cc, err := grpc.NewClient(gln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	gcx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", fmt.Sprintf("00-%s-%s-01", grpcTrace, grpcParent))
	if _, err := oipgrpc.NewGRPCInferenceServiceClient(cc).ModelInfer(gcx, inferRequest(t, "m")); err != nil {
		t.Fatalf("gRPC infer: %v", err)
	}

	flushGateway()
	flushReplica()

	// The cold REST request.
	rest := spansOf(t, j.WaitTraceID(t, restTrace.String(), 5), gwService, replicaService)
	rest.tree(t, restParent.String(), map[string]string{
		telemetry.SpanRequest:    "client",
		telemetry.SpanHold:       telemetry.SpanRequest,
		telemetry.SpanProxy:      telemetry.SpanRequest,
		telemetry.SpanBatchWait:  telemetry.SpanProxy,
		telemetry.SpanEngineCall: telemetry.SpanProxy,
	})
	rest.attrs(t, map[string]map[string]any{
		telemetry.SpanRequest:    {"ebb.deployment": "m", "ebb.cold_start": true, "ebb.request.id": "rest-1", "span.kind": "server", "http.response.status_code": float64(200)},
		telemetry.SpanHold:       {"ebb.deployment": "m", "ebb.hold.outcome": "released", "ebb.hold.queue_depth": float64(0)},
		telemetry.SpanProxy:      {"ebb.replica": "m-1", "span.kind": "client", "http.response.status_code": float64(200)},
		telemetry.SpanBatchWait:  {"ebb.batch.size": float64(1), "ebb.batch.trigger": "delay"},
		telemetry.SpanEngineCall: {"ebb.engine": "echo", "ebb.replica": "m-1", "ebb.batch.size": float64(1)},
	})
	// Timing: the hold, then the proxy; on the replica the wait (at least
	// the batch delay), then the engine call, within the proxy; all within
	// what the client measured.
	hold, proxy, wait, call := rest.span(telemetry.SpanHold), rest.span(telemetry.SpanProxy), rest.span(telemetry.SpanBatchWait), rest.span(telemetry.SpanEngineCall)
	reqSpan := rest.span(telemetry.SpanRequest)
	for _, c := range []struct {
		what string
		ok   bool
	}{
		{"the request lasts no longer than the client waited", reqSpan.Duration <= took.Microseconds()},
		{"the hold lasts the cold start (50ms) at least", hold.Duration >= 50_000},
		{"the hold is within the request", hold.StartTime >= reqSpan.StartTime && end(hold) <= end(reqSpan)},
		{"the proxy follows the hold", proxy.StartTime >= end(hold) && end(proxy) <= end(reqSpan)},
		{"the batch wait is the batch delay (5ms) at least", wait.Duration >= 5_000},
		{"the engine call follows the batch wait", call.StartTime >= end(wait)},
	} {
		if !c.ok {
			t.Errorf("%s: request %+v hold %+v proxy %+v wait %+v call %+v", c.what, reqSpan, hold, proxy, wait, call)
		}
	}

	// The hold links to the cold start, a trace of its own.
	var link jaegertest.Reference
	for _, r := range hold.References {
		if r.RefType == "FOLLOWS_FROM" {
			link = r
		}
	}
	if link.SpanID == "" {
		t.Fatalf("the hold links to no cold start: %+v", hold.References)
	}
	cs := spansOf(t, j.WaitTraceID(t, link.TraceID, 4), gwService, replicaService)
	cs.tree(t, "", map[string]string{
		telemetry.SpanColdStart:            "",
		telemetry.SpanPhaseProcessStarted:  telemetry.SpanColdStart,
		telemetry.SpanPhaseArtifactFetched: telemetry.SpanColdStart,
		telemetry.SpanPhaseModelLoaded:     telemetry.SpanColdStart,
		telemetry.SpanPhaseReady:           telemetry.SpanColdStart,
	})
	if got := cs.span(telemetry.SpanColdStart).SpanID; got != link.SpanID {
		t.Errorf("the hold links to span %s; the cold start is %s", link.SpanID, got)
	}
	cs.attrs(t, map[string]map[string]any{
		telemetry.SpanColdStart:            {"ebb.deployment": "m", "ebb.replica": "m-1", "ebb.backend": "process"},
		telemetry.SpanPhaseArtifactFetched: {"ebb.artifact.cached": true},
	})

	// The warm gRPC request: no hold.
	rpc := spansOf(t, j.WaitTraceID(t, grpcTrace.String(), 4), gwService, replicaService)
	rpc.tree(t, grpcParent.String(), map[string]string{
		telemetry.SpanRequest:    "client",
		telemetry.SpanProxy:      telemetry.SpanRequest,
		telemetry.SpanBatchWait:  telemetry.SpanProxy,
		telemetry.SpanEngineCall: telemetry.SpanProxy,
	})
	rpc.attrs(t, map[string]map[string]any{
		telemetry.SpanRequest: {"ebb.deployment": "m", "span.kind": "server", "rpc.grpc.status_code": "OK"},
		telemetry.SpanProxy:   {"ebb.replica": "m-1", "span.kind": "client"},
	})
}

// coldStarter is the control loop of TestTraceToJaeger: on the first
// wake, after delay, it records a cold start of phases that end now and
// routes ep.
type coldStarter struct {
	tab        *routing.Table
	ep         *balance.Endpoint
	coldStarts *telemetry.ColdStarts
	delay      time.Duration
	once       sync.Once
}

func (c *coldStarter) Wake(name string) {
	c.once.Do(func() {
		start := time.Now()
		time.AfterFunc(c.delay, func() {
			now := time.Now()
			at := func(f float64) time.Time { return start.Add(time.Duration(f * float64(now.Sub(start)))) }
			c.coldStarts.Record(name, start, []telemetry.Phase{
				{Name: telemetry.SpanPhaseProcessStarted, End: at(0.2)},
				{Name: telemetry.SpanPhaseArtifactFetched, End: at(0.4), Attrs: []attribute.KeyValue{telemetry.AttrArtifactCached.Bool(true)}},
				{Name: telemetry.SpanPhaseModelLoaded, End: at(0.9)},
				{Name: telemetry.SpanPhaseReady, End: now},
			}, telemetry.AttrReplica.String(c.ep.ID), telemetry.AttrBackend.String("process"))
			c.tab.Publish(routing.Route{Deployment: name, Endpoints: []*balance.Endpoint{c.ep}})
		})
	})
}

// traceSpans is a trace read back from Jaeger, its spans by name (each
// name once) and the service of each.
type traceSpans struct {
	byName  map[string]jaegertest.Span
	byID    map[string]jaegertest.Span
	service map[string]string // span name → service
}

func spansOf(t *testing.T, tr jaegertest.Trace, services ...string) traceSpans {
	t.Helper()
	s := traceSpans{byName: map[string]jaegertest.Span{}, byID: map[string]jaegertest.Span{}, service: map[string]string{}}
	for _, sp := range tr.Spans {
		if _, dup := s.byName[sp.OperationName]; dup {
			t.Errorf("trace %s: span %q twice", tr.TraceID, sp.OperationName)
		}
		s.byName[sp.OperationName], s.byID[sp.SpanID] = sp, sp
		s.service[sp.OperationName] = tr.Processes[sp.ProcessID].ServiceName
	}
	return s
}

func (s traceSpans) span(name string) jaegertest.Span { return s.byName[name] }

// tree checks that the trace has exactly the spans of want, each under
// its parent: want maps a span to its parent's name, "" for a root, or
// "client" for the span whose parent is the client's (clientSpan), which
// is not in the trace. Spans on the replica (batch wait, engine call) must
// come from the replica's service, the others from the gateway's.
func (s traceSpans) tree(t *testing.T, clientSpan string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for name, sp := range s.byName {
		got[name] = ""
		for _, r := range sp.References {
			if r.RefType != "CHILD_OF" {
				continue
			}
			switch p, ok := s.byID[r.SpanID]; {
			case ok:
				got[name] = p.OperationName
			case r.SpanID == clientSpan:
				got[name] = "client"
			default:
				got[name] = "unknown span " + r.SpanID
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("span → parent (-want +got):\n%s", diff)
	}
	for name, service := range s.service {
		onReplica := name == telemetry.SpanBatchWait || name == telemetry.SpanEngineCall
		if onReplica != strings.HasSuffix(service, "-replica") {
			t.Errorf("span %s comes from service %s", name, service)
		}
	}
}

// attrs checks the spans' attributes (as Jaeger's JSON gives them:
// numbers are float64; span.kind is a tag).
func (s traceSpans) attrs(t *testing.T, want map[string]map[string]any) {
	t.Helper()
	for name, tags := range want {
		got := jaegertest.TagMap(s.byName[name].Tags)
		for k, v := range tags {
			if diff := cmp.Diff(v, got[k]); diff != "" {
				t.Errorf("%s: tag %s (-want +got):\n%s", name, k, diff)
			}
		}
	}
}

// end is when sp ended, in µs since the epoch.
func end(sp jaegertest.Span) int64 { return sp.StartTime + sp.Duration }
