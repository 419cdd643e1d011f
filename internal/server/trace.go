package server

import (
	"context"
	"net/http"

	"github.com/ebb-ml/ebb/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (Options.Tracer). An infer request's W3C trace context, from
// its traceparent header (REST) or metadata (gRPC), is the parent of the
// replica's spans: with batching, the batcher records the request's
// telemetry.SpanBatchWait and telemetry.SpanEngineCall (package batch);
// without, the model call is the request's SpanEngineCall. A request that
// comes without a sampled trace context gets no span, so a replica traces
// only what its gateway traces. A Python model's call is its worker's
// round trip: the worker protocol has no room for trace context, so the
// span is recorded here, around it.

// engineAttrs are the attributes of the replica's SpanEngineCall spans.
func (s *Server) engineAttrs() []attribute.KeyValue {
	var attrs []attribute.KeyValue
	if s.opts.Engine != "" {
		attrs = append(attrs, telemetry.AttrEngine.String(s.opts.Engine))
	}
	if s.opts.ModelVersion != "" {
		attrs = append(attrs, telemetry.AttrModelVersion.String(s.opts.ModelVersion))
	}
	if s.opts.ReplicaID != "" {
		attrs = append(attrs, telemetry.AttrReplica.String(s.opts.ReplicaID))
	}
	return attrs
}

// traceEngineCall starts the SpanEngineCall of a model call under ctx's
// span, when that span is sampled; else it returns ctx and nil.
func (s *Server) traceEngineCall(ctx context.Context) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return ctx, nil
	}
	return s.opts.Tracer.Start(ctx, telemetry.SpanEngineCall, trace.WithAttributes(s.engineAttrs()...))
}

// endSpan ends span, of a call that returned err.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// extractHTTP returns ctx with the W3C trace context of h, for requests
// served by net/http (ServeHTTP).
func extractHTTP(ctx context.Context, h http.Header) context.Context {
	return propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(h))
}
