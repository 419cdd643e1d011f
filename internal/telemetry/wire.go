package telemetry

import (
	"context"
	"os"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/metadata"
)

// This file is what the request path and the control loop use to wire
// tracing in: whether a provider traces at all, the flags a process hands
// to the replicas it starts, W3C trace context in gRPC metadata, and the
// record of cold starts that held requests link to.

// Enabled reports whether tp records spans: false for nil, for the no-op
// provider Setup returns without an endpoint, and for otel's no-op. The
// request path asks once, at construction, and skips its tracing entirely
// when it is false.
func Enabled(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case nil, offProvider, noop.TracerProvider, *noop.TracerProvider:
		return false
	}
	return true
}

// Args returns the flags (AddFlags') that give a child process, such as a
// replica, the tracing configuration of c as it resolves here: an endpoint
// taken from $OTEL_EXPORTER_OTLP_ENDPOINT is passed explicitly. With caFile
// false, --otlp-ca-file is left out (a path that means nothing where the
// child runs, as in a pod). Nil when c traces nothing.
func (c Config) Args(caFile bool) []string {
	t, err := c.resolve()
	if err != nil || t == nil {
		return nil
	}
	ep := c.Endpoint
	if ep == "" {
		ep = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	args := []string{"--otlp-endpoint", ep, "--otlp-protocol", t.protocol,
		"--trace-sample-ratio", strconv.FormatFloat(c.SampleRatio, 'g', -1, 64)}
	if caFile && c.CAFile != "" {
		args = append(args, "--otlp-ca-file", c.CAFile)
	}
	return args
}

// ExtractGRPC returns ctx with the remote span context of the W3C
// traceparent (and tracestate) in ctx's incoming gRPC metadata, or ctx
// itself when there is none or it is invalid.
func ExtractGRPC(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	tp := md.Get(HeaderTraceparent)
	if len(tp) == 0 {
		return ctx
	}
	sc, ok := parseTraceparent([]byte(tp[0]))
	if !ok {
		return ctx
	}
	if ts := md.Get(HeaderTracestate); len(ts) > 0 && ts[0] != "" {
		if state, err := trace.ParseTraceState(ts[0]); err == nil {
			sc = sc.WithTraceState(state)
		}
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// InjectGRPC returns ctx with the span context of ctx in its outgoing gRPC
// metadata (traceparent, and tracestate when there is one), or ctx itself
// without a valid span context.
func InjectGRPC(ctx context.Context) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ctx
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	flags := "00"
	if sc.IsSampled() {
		flags = "01"
	}
	kv := []string{HeaderTraceparent, "00-" + tid.String() + "-" + sid.String() + "-" + flags}
	if ts := sc.TraceState(); ts.Len() > 0 {
		kv = append(kv, HeaderTracestate, ts.String())
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// maxColdStarts bounds the deployments ColdStarts remembers; past it, the
// oldest record is dropped.
const maxColdStarts = 10000

// ColdStarts records replicas' cold starts as spans (RecordPhases) and
// remembers the latest of each deployment, so that a request held while
// the deployment was cold can link its SpanHold to the cold start that
// released it. A nil *ColdStarts records nothing. It is safe for
// concurrent use.
type ColdStarts struct {
	tracer trace.Tracer

	mu   sync.Mutex
	last map[string]coldStart // by deployment
}

type coldStart struct {
	sc  trace.SpanContext
	end time.Time
}

// NewColdStarts returns a ColdStarts that records with tp, or nil when tp
// does not trace (Enabled).
func NewColdStarts(tp trace.TracerProvider) *ColdStarts {
	if !Enabled(tp) {
		return nil
	}
	return &ColdStarts{tracer: tp.Tracer(TracerName), last: map[string]coldStart{}}
}

// Record records the cold start of a replica of deployment that began at
// start, with phases, as its own trace (a SpanColdStart root with attrs,
// the deployment's among them), and remembers it as the deployment's
// latest.
func (c *ColdStarts) Record(deployment string, start time.Time, phases []Phase, attrs ...attribute.KeyValue) trace.SpanContext {
	if c == nil {
		return trace.SpanContext{}
	}
	attrs = append([]attribute.KeyValue{AttrDeployment.String(deployment)}, attrs...)
	sc := RecordPhases(context.Background(), c.tracer, start, phases, attrs...)
	end := start
	for _, p := range phases {
		if p.End.After(end) {
			end = p.End
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.last[deployment]; !ok && len(c.last) >= maxColdStarts {
		oldest := ""
		for d, cs := range c.last {
			if oldest == "" || cs.end.Before(c.last[oldest].end) {
				oldest = d
			}
		}
		delete(c.last, oldest)
	}
	c.last[deployment] = coldStart{sc, end}
	return sc
}

// Since returns the span context of deployment's latest recorded cold
// start if it ended at or after t (a hold that began at t waited for it).
func (c *ColdStarts) Since(deployment string, t time.Time) (trace.SpanContext, bool) {
	if c == nil {
		return trace.SpanContext{}, false
	}
	c.mu.Lock()
	cs, ok := c.last[deployment]
	c.mu.Unlock()
	if !ok || cs.end.Before(t) {
		return trace.SpanContext{}, false
	}
	return cs.sc, true
}

// PhaseSpan returns the span name of a cold-start phase as ebb's backends
// name it (serving.Phase.Name: process_started, artifact_fetched,
// model_loaded, ready; the kube backend's scheduled, image_pulled,
// container_started; a pooled model's pool_replica), or "" for a name it
// does not know.
func PhaseSpan(phase string) string {
	switch phase {
	case "scheduled":
		return SpanPhaseScheduled
	case "image_pulled", "image":
		return SpanPhaseImage
	case "process_started", "container_started":
		return SpanPhaseProcessStarted
	case "artifact_fetched":
		return SpanPhaseArtifactFetched
	case "pool_replica":
		return SpanPhasePoolReplica
	case "model_loaded":
		return SpanPhaseModelLoaded
	case "ready":
		return SpanPhaseReady
	}
	return ""
}
