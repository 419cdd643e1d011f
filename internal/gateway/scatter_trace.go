package gateway

import (
	"context"
	"net/http"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Tracing a scattered request (scatter.go, Options.Tracer). Each segment
// of a sampled request is a telemetry.SpanSegment, the child of the
// request's SpanRequest, with its index and rows; its hold while the
// deployment is cold (the activator's SpanHold) and each of its tries on
// a replica (a SpanProxy, whose context the replica gets in traceparent)
// are its children. A segment of a request the sampler left out carries
// the request's unsampled trace context to its replica, and records no
// span. Without a Tracer the segments carry the client's traceparent and
// tracestate as they came, as an unsplit request does.

// scatterTrace is a split request's trace context.
type scatterTrace struct {
	tracer trace.Tracer    // nil: tracing is off
	ctx    context.Context // the request's (its SpanRequest), with a tracer
	// tp and ts are the client's traceparent and tracestate, passed on
	// as they came when tracing is off.
	tp, ts string
}

// traceFrom sets r's trace context from x's request, in ctx.
func (r *scatterRun) traceFrom(ctx *fasthttp.RequestCtx, x *exchange) {
	if r.trace.tracer = r.g.opts.Tracer; r.trace.tracer != nil {
		r.trace.ctx = x.ctx.traced
		return
	}
	if tp := ctx.Request.Header.PeekBytes(headerTraceparent); len(tp) > 0 {
		r.trace.tp, r.trace.ts = string(tp), string(ctx.Request.Header.PeekBytes(headerTracestate))
	}
}

// traceHeaders gives req, a segment's, the trace context it carries when
// no SpanProxy of its own replaces it (traceProxy).
func (r *scatterRun) traceHeaders(req *fasthttp.Request) {
	switch {
	case r.trace.ctx != nil:
		telemetry.InjectFastHTTP(r.trace.ctx, &req.Header)
	case r.trace.tp != "":
		req.Header.SetCanonical(headerTraceparent, s2b(r.trace.tp))
		if r.trace.ts != "" {
			req.Header.SetCanonical(headerTracestate, s2b(r.trace.ts))
		}
	}
}

// tracedSegment is segment under its SpanSegment when the request is
// sampled.
func (r *scatterRun) tracedSegment(ctx context.Context, i int) segmentResult {
	if r.trace.ctx == nil || !trace.SpanFromContext(r.trace.ctx).IsRecording() {
		return r.segment(ctx, i)
	}
	lo, hi := r.rowsOf(i)
	_, span := r.trace.tracer.Start(r.trace.ctx, telemetry.SpanSegment, trace.WithAttributes(
		telemetry.AttrDeployment.String(r.name), telemetry.AttrSegment.Int(i), telemetry.AttrSegmentRows.Int(hi-lo)))
	// ctx carries the run's cancellation; the span goes with it.
	res := r.segment(trace.ContextWithSpan(ctx, span), i)
	if res.replica != nil {
		span.SetAttributes(telemetry.AttrReplica.String(res.replica.ID))
	}
	code := res.status
	if code == 0 {
		code = http.StatusOK
	}
	span.SetAttributes(attrStatusCode.Int(code))
	switch {
	case res.cancelled:
		span.SetStatus(codes.Error, "cancelled")
	case res.status != 0:
		span.SetStatus(codes.Error, res.msg)
	}
	span.End()
	return res
}

// traceProxy starts the SpanProxy of a segment's try on ep, under the
// segment's span in ctx, and puts its context in req; nil, and req's
// trace context left as traceHeaders set it, when the segment is not
// sampled.
func (r *scatterRun) traceProxy(ctx context.Context, ep *balance.Endpoint, req *fasthttp.Request) trace.Span {
	if r.trace.tracer == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return nil
	}
	pctx, span := r.trace.tracer.Start(ctx, telemetry.SpanProxy, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(telemetry.AttrReplica.String(ep.ID)))
	telemetry.InjectFastHTTP(pctx, &req.Header)
	return span
}
