package telemetry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/telemetry/jaegertest"
	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// TestOTLPToJaeger sends the spans of one cold request, from a "gateway"
// and a "replica" provider joined by W3C trace context in fasthttp
// headers, through Setup over OTLP gRPC and over OTLP HTTP to a real
// Jaeger, and reads them back through Jaeger's query API: names, the span
// tree, links, attributes, resource and timing.
func TestOTLPToJaeger(t *testing.T) {
	j := jaegertest.Start(t)
	for _, tc := range []struct {
		protocol, endpoint string
	}{
		{ProtocolGRPC, j.OTLPGRPC},
		{ProtocolHTTP, "http://" + j.OTLPHTTP},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			gwService, replicaService := "ebb-test-gateway-"+tc.protocol, "ebb-test-replica-"+tc.protocol
			setup := func(service string) (trace.Tracer, func()) {
				tp, shutdown, err := Setup(context.Background(), Config{
					Endpoint:           tc.endpoint,
					Protocol:           tc.protocol,
					SampleRatio:        1,
					ServiceName:        service,
					ResourceAttributes: map[string]string{"ebb.test.protocol": tc.protocol},
				})
				if err != nil {
					t.Fatal(err)
				}
				return tp.Tracer(TracerName), func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					if err := shutdown(ctx); err != nil {
						t.Errorf("shutdown %s: %v", service, err)
					}
				}
			}
			gw, gwDone := setup(gwService)
			replica, replicaDone := setup(replicaService)
			traceID := coldRequest(t, gw, replica)
			gwDone()
			replicaDone()

			tr := j.WaitTrace(t, gwService, traceID, len(wantSpans))
			checkColdTrace(t, tr, gwService, replicaService, tc.protocol)
		})
	}
}

// ms is a millisecond in Jaeger's microseconds.
const ms = 1000

// The cold request's spans: parent, start and end (ms after the request
// started), service (g: gateway, r: replica).
var wantSpans = map[string]struct {
	parent     string
	start, end int64
	service    byte
}{
	SpanRequest:              {"", 0, 520, 'g'},
	SpanHold:                 {SpanRequest, 1, 440, 'g'},
	SpanColdStart:            {SpanRequest, 2, 422, 'g'},
	SpanPhaseScheduled:       {SpanColdStart, 2, 12, 'g'},
	SpanPhaseProcessStarted:  {SpanColdStart, 12, 52, 'g'},
	SpanPhaseArtifactFetched: {SpanColdStart, 52, 252, 'g'},
	SpanPhaseModelLoaded:     {SpanColdStart, 252, 402, 'g'},
	SpanPhaseReady:           {SpanColdStart, 402, 422, 'g'},
	SpanProxy:                {SpanRequest, 441, 518, 'g'},
	SpanBatchWait:            {SpanProxy, 445, 455, 'r'},
	SpanEngineCall:           {SpanProxy, 455, 515, 'r'},
}

// coldRequest records a cold request with explicit timestamps and returns
// its trace id.
func coldRequest(t *testing.T, gw, replica trace.Tracer) string {
	t0 := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	at := func(m int64) time.Time { return t0.Add(time.Duration(m) * time.Millisecond) }
	dep := AttrDeployment.String("iris")

	ctx, req := gw.Start(context.Background(), SpanRequest, trace.WithTimestamp(at(0)), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(dep, AttrTenant.String("team-a"), AttrColdStart.Bool(true)))
	cs := RecordPhases(ctx, gw, at(2), []Phase{
		{Name: SpanPhaseScheduled, End: at(12)},
		{Name: SpanPhaseImage}, // a process backend has no image
		{Name: SpanPhaseProcessStarted, End: at(52)},
		{Name: SpanPhaseArtifactFetched, End: at(252), Attrs: []attribute.KeyValue{AttrArtifactCached.Bool(false), AttrArtifactBytes.Int64(1 << 20)}},
		{Name: SpanPhaseModelLoaded, End: at(402)},
		{Name: SpanPhaseReady, End: at(422)},
	}, dep, AttrBackend.String("process"))
	_, hold := gw.Start(ctx, SpanHold, trace.WithTimestamp(at(1)), trace.WithLinks(trace.Link{SpanContext: cs}),
		trace.WithAttributes(AttrHoldQueueDepth.Int(3)))
	hold.SetAttributes(AttrHoldOutcome.String("released"))
	hold.End(trace.WithTimestamp(at(440)))

	pctx, proxy := gw.Start(ctx, SpanProxy, trace.WithTimestamp(at(441)), trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(AttrReplica.String("iris-1")))
	var h fasthttp.RequestHeader
	InjectFastHTTP(pctx, &h)

	// The replica's side of the wire.
	rctx := ExtractFastHTTP(context.Background(), &h)
	if !trace.SpanContextFromContext(rctx).IsRemote() {
		t.Fatal("the replica got no remote span context")
	}
	_, wait := replica.Start(rctx, SpanBatchWait, trace.WithTimestamp(at(445)), trace.WithAttributes(AttrBatchSize.Int(4), AttrBatchTrigger.String("delay")))
	wait.End(trace.WithTimestamp(at(455)))
	_, call := replica.Start(rctx, SpanEngineCall, trace.WithTimestamp(at(455)), trace.WithAttributes(AttrEngine.String("onnx"), AttrModelVersion.String("3")))
	call.End(trace.WithTimestamp(at(515)))

	proxy.End(trace.WithTimestamp(at(518)))
	req.End(trace.WithTimestamp(at(520)))
	return req.SpanContext().TraceID().String()
}

func checkColdTrace(t *testing.T, tr jaegertest.Trace, gwService, replicaService, protocol string) {
	t.Helper()
	byID := map[string]jaegertest.Span{}
	byName := map[string]jaegertest.Span{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
		if _, dup := byName[s.OperationName]; dup {
			t.Errorf("span %q twice", s.OperationName)
		}
		byName[s.OperationName] = s
	}
	if len(byName) != len(wantSpans) {
		t.Errorf("%d spans %v; want %d", len(byName), keys(byName), len(wantSpans))
	}
	t0 := byName[SpanRequest].StartTime
	for name, w := range wantSpans {
		s, ok := byName[name]
		if !ok {
			t.Errorf("no span %q", name)
			continue
		}
		parent := ""
		for _, r := range s.References {
			if r.RefType == "CHILD_OF" {
				parent = byID[r.SpanID].OperationName
			}
		}
		if parent != w.parent {
			t.Errorf("%s: parent %q; want %q", name, parent, w.parent)
		}
		if start, end := s.StartTime-t0, s.StartTime-t0+s.Duration; start != w.start*ms || end != w.end*ms {
			t.Errorf("%s: from %dµs to %dµs; want %dµs to %dµs", name, start, end, w.start*ms, w.end*ms)
		}
		service := map[byte]string{'g': gwService, 'r': replicaService}[w.service]
		p := tr.Processes[s.ProcessID]
		if p.ServiceName != service || jaegertest.TagMap(p.Tags)["ebb.test.protocol"] != protocol {
			t.Errorf("%s: process %+v; want service %s with ebb.test.protocol=%s", name, p, service, protocol)
		}
	}

	// Attributes, as Jaeger's JSON gives them (numbers are float64).
	for name, want := range map[string]map[string]any{
		SpanRequest:              {"ebb.deployment": "iris", "ebb.tenant": "team-a", "ebb.cold_start": true, "span.kind": "server"},
		SpanHold:                 {"ebb.hold.outcome": "released", "ebb.hold.queue_depth": float64(3)},
		SpanColdStart:            {"ebb.deployment": "iris", "ebb.backend": "process"},
		SpanPhaseArtifactFetched: {"ebb.artifact.cached": false, "ebb.artifact.bytes": float64(1 << 20)},
		SpanProxy:                {"ebb.replica": "iris-1", "span.kind": "client"},
		SpanBatchWait:            {"ebb.batch.size": float64(4), "ebb.batch.trigger": "delay"},
		SpanEngineCall:           {"ebb.engine": "onnx", "ebb.model.version": "3"},
	} {
		got := jaegertest.TagMap(byName[name].Tags)
		for k, v := range want {
			if diff := cmp.Diff(v, got[k]); diff != "" {
				t.Errorf("%s: tag %s (-want +got):\n%s", name, k, diff)
			}
		}
	}

	// The hold links to the cold start it waited for.
	linked := false
	for _, r := range byName[SpanHold].References {
		if r.RefType == "FOLLOWS_FROM" && r.SpanID == byName[SpanColdStart].SpanID {
			linked = true
		}
	}
	if !linked {
		t.Errorf("hold's references %+v do not link to the cold start %s", byName[SpanHold].References, byName[SpanColdStart].SpanID)
	}
}

func keys(m map[string]jaegertest.Span) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return strings.Join(ks, ", ")
}
