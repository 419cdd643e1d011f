package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of every tracer in ebb:
// tp.Tracer(TracerName).
const TracerName = "github.com/ebb-ml/ebb"

// Span names, the same wherever ebb records them. A request's spans nest
// as SpanRequest ⊃ SpanHold (only while cold) and SpanProxy ⊃ (on the
// replica) SpanBatchWait, SpanEngineCall.
const (
	// SpanRequest is an inference request at the gateway (the server span).
	SpanRequest = "ebb.request"
	// SpanHold is the time a request is held because its deployment has
	// no ready replica; it links to the SpanColdStart it waited for.
	SpanHold = "ebb.hold"
	// SpanProxy is the gateway's call to a replica.
	SpanProxy = "ebb.proxy"
	// SpanSegment is one segment of a scattered request (spec.scatter),
	// a child of its SpanRequest: its holds (SpanHold) and its tries on
	// replicas (SpanProxy) are its children.
	SpanSegment = "ebb.scatter.segment"
	// SpanBatchWait is the time a request waits in the replica's batcher.
	SpanBatchWait = "ebb.batch.wait"
	// SpanEngineCall is the engine's predict call for the batch that
	// holds the request.
	SpanEngineCall = "ebb.engine.call"

	// SpanColdStart is one replica's start, from the decision to start it
	// to ready; its children are the phases below, in this order, each
	// from the end of the one before to its own end. A phase a backend
	// does not have (image, for a local process) is left out.
	SpanColdStart = "ebb.cold_start"
	// SpanPhaseScheduled ends when the replica is placed (a pod bound to
	// a node; a process's slot chosen).
	SpanPhaseScheduled = "ebb.cold_start.scheduled"
	// SpanPhaseImage ends when the replica's container image is present.
	SpanPhaseImage = "ebb.cold_start.image"
	// SpanPhaseProcessStarted ends when the replica's process runs.
	SpanPhaseProcessStarted = "ebb.cold_start.process_started"
	// SpanPhaseArtifactFetched ends when the model artifact is local and
	// verified.
	SpanPhaseArtifactFetched = "ebb.cold_start.artifact_fetched"
	// SpanPhasePoolReplica ends when a replica of its multi-model pool
	// could begin a pooled model's load (the model waited for one to
	// start); a pooled model's cold start has it in place of the phases
	// before, and fetches its artifact in SpanPhaseModelLoaded.
	SpanPhasePoolReplica = "ebb.cold_start.pool_replica"
	// SpanPhaseModelLoaded ends when the engine has loaded the model.
	SpanPhaseModelLoaded = "ebb.cold_start.model_loaded"
	// SpanPhaseReady ends when the replica is ready and routed.
	SpanPhaseReady = "ebb.cold_start.ready"
)

// ColdStartPhases are the phase span names in the order they happen.
var ColdStartPhases = []string{
	SpanPhaseScheduled,
	SpanPhaseImage,
	SpanPhaseProcessStarted,
	SpanPhaseArtifactFetched,
	SpanPhasePoolReplica,
	SpanPhaseModelLoaded,
	SpanPhaseReady,
}

// Span attribute keys.
const (
	AttrDeployment   = attribute.Key("ebb.deployment")
	AttrModel        = attribute.Key("ebb.model")
	AttrModelVersion = attribute.Key("ebb.model.version")
	AttrTenant       = attribute.Key("ebb.tenant")
	AttrRequestID    = attribute.Key("ebb.request.id")
	// AttrColdStart is true on a SpanRequest that was held.
	AttrColdStart = attribute.Key("ebb.cold_start")
	// AttrHoldOutcome is how a SpanHold ended: released, timeout,
	// queue_full, not_found, failed or canceled.
	AttrHoldOutcome = attribute.Key("ebb.hold.outcome")
	// AttrHoldQueueDepth is the number of requests held for the
	// deployment when this one joined them.
	AttrHoldQueueDepth = attribute.Key("ebb.hold.queue_depth")
	AttrReplica        = attribute.Key("ebb.replica")
	// AttrBackend is the replica backend: process or kube.
	AttrBackend = attribute.Key("ebb.backend")
	// AttrEngine is the engine kind: onnx, trees, python, http.
	AttrEngine = attribute.Key("ebb.engine")
	// AttrBatchSize is the size of the batch that carried the request.
	AttrBatchSize = attribute.Key("ebb.batch.size")
	// AttrBatchTrigger is why the batch left: full, preferred or delay.
	AttrBatchTrigger = attribute.Key("ebb.batch.trigger")
	// AttrArtifactURI is the model artifact a cold start fetched (on its
	// SpanPhaseArtifactFetched, or a pooled model's SpanPhaseModelLoaded).
	AttrArtifactURI     = attribute.Key("ebb.artifact.uri")
	AttrArtifactBytes   = attribute.Key("ebb.artifact.bytes")
	AttrArtifactCached  = attribute.Key("ebb.artifact.cached")
	AttrColdStartFailed = attribute.Key("ebb.cold_start.failed")
	// AttrPool is the multi-model pool whose replica loaded a pooled
	// model (its SpanColdStart).
	AttrPool = attribute.Key("ebb.pool")
	// AttrSegment is a SpanSegment's index in its request (from 0), and
	// AttrSegmentRows the rows it carries.
	AttrSegment     = attribute.Key("ebb.scatter.segment")
	AttrSegmentRows = attribute.Key("ebb.scatter.rows")
)

// Phase is one cold-start phase that ended at End. A zero End means the
// phase did not happen and is left out.
type Phase struct {
	Name  string
	End   time.Time
	Attrs []attribute.KeyValue
}

// RecordPhases records, after the fact, a cold start that began at start:
// a SpanColdStart span under ctx's span (a root when ctx has none) with
// attrs, and one child per phase from the end of the phase before (start,
// for the first) to its own End. The SpanColdStart span ends at the last
// phase's End. It returns that span's context, for a SpanHold to link to
// (trace.WithLinks).
func RecordPhases(ctx context.Context, tracer trace.Tracer, start time.Time, phases []Phase, attrs ...attribute.KeyValue) trace.SpanContext {
	end := start
	for _, p := range phases {
		if p.End.After(end) {
			end = p.End
		}
	}
	ctx, cs := tracer.Start(ctx, SpanColdStart, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	from := start
	for _, p := range phases {
		if p.End.IsZero() {
			continue
		}
		_, s := tracer.Start(ctx, p.Name, trace.WithTimestamp(from), trace.WithAttributes(p.Attrs...))
		s.End(trace.WithTimestamp(p.End))
		from = p.End
	}
	cs.End(trace.WithTimestamp(end))
	return cs.SpanContext()
}
