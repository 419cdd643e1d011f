package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Tracing (Options.Tracer). An inference request, REST (OIP v2 or the
// OpenAI API) or gRPC, gets a telemetry.SpanRequest server span, the child
// of the W3C trace context it came with (a scattered request's segments
// are its children: scatter_trace.go); the activator adds a telemetry.SpanHold under it while the
// deployment is cold; each try on a replica is a telemetry.SpanProxy
// client span, whose context the request to the replica carries
// (traceparent header, or gRPC metadata), so the replica's spans are its
// children. A request the sampler leaves out still carries its (unsampled)
// trace context on, and costs no more spans.
//
// Without a Tracer none of this runs: a request's cost is one nil check,
// and a traceparent it came with is passed to the replica as it came
// (send, traceCall).

// attrStatusCode is the semantic conventions' HTTP response status.
const attrStatusCode = attribute.Key("http.response.status_code")

// traceRequest starts x's SpanRequest, from start, for an inference
// request to deployment dep (of version, if any) by tenant; x.release
// ends it (endTrace).
func (g *Gateway) traceRequest(ctx *fasthttp.RequestCtx, x *exchange, dep, version, tenant string, start time.Time) {
	parent := telemetry.ExtractFastHTTP(context.Background(), &ctx.Request.Header)
	sctx, span := g.opts.Tracer.Start(parent, telemetry.SpanRequest, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start))
	x.span, x.ctx.traced = span, sctx
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(telemetry.AttrDeployment.String(dep))
	if version != "" {
		span.SetAttributes(telemetry.AttrModelVersion.String(version))
	}
	if tenant != "" {
		span.SetAttributes(telemetry.AttrTenant.String(tenant))
	}
	if id := x.hdr.requestID; len(id) > 0 {
		span.SetAttributes(telemetry.AttrRequestID.String(string(id)))
	}
}

// endTrace ends x's SpanRequest with the status the client gets.
func (x *exchange) endTrace() {
	span := x.span
	x.span, x.ctx.traced = nil, nil
	if span.IsRecording() {
		code := x.ctx.rc.Response.StatusCode()
		span.SetAttributes(attrStatusCode.Int(code))
		if code >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(code))
		}
	}
	span.End()
}

// traceProxy puts x's trace context in its request to ep: a new
// SpanProxy's, returned, when x is sampled; else x's own, and nil.
func (g *Gateway) traceProxy(x *exchange, ep *balance.Endpoint) trace.Span {
	if !x.span.IsRecording() {
		telemetry.InjectFastHTTP(x.ctx.traced, &x.req.Header)
		return nil
	}
	pctx, span := g.opts.Tracer.Start(x.ctx.traced, telemetry.SpanProxy, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(telemetry.AttrReplica.String(ep.ID)))
	telemetry.InjectFastHTTP(pctx, &x.req.Header)
	return span
}

// endProxy ends a SpanProxy whose try got status, or err before any.
func endProxy(span trace.Span, code int, err error) {
	switch {
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, "no answer from the replica")
	default:
		span.SetAttributes(attrStatusCode.Int(code))
		if code >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(code))
		}
	}
	span.End()
}

// traceOptions are the gRPC server options of tracing: an interceptor
// that gives each ModelInfer call its SpanRequest; none without a Tracer.
func (g *GRPC) traceOptions() []grpc.ServerOption {
	if g.opts.Tracer == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(g.traceUnary)}
}

// traceUnary runs a ModelInfer call under a SpanRequest, the child of the
// trace context in its metadata; other calls run untraced.
func (g *GRPC) traceUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	in, ok := req.(*oipgrpc.ModelInferRequest)
	if !ok {
		return handler(ctx, req)
	}
	ctx, span := g.opts.Tracer.Start(telemetry.ExtractGRPC(ctx), telemetry.SpanRequest, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(telemetry.AttrDeployment.String(in.GetModelName()))
		if v := in.GetModelVersion(); v != "" {
			span.SetAttributes(telemetry.AttrModelVersion.String(v))
		}
		if id := in.GetId(); id != "" {
			span.SetAttributes(telemetry.AttrRequestID.String(id))
		}
	}
	resp, err := handler(ctx, req)
	endGRPCSpan(span, err)
	return resp, err
}

// traceCall returns the context of a call to ep: with a Tracer, carrying
// the trace context of ctx's span in its metadata (a new SpanProxy's,
// returned, when that span is sampled); without one, carrying the
// traceparent the call came with, if any.
func (g *GRPC) traceCall(ctx context.Context, ep *balance.Endpoint) (context.Context, trace.Span) {
	if g.opts.Tracer == nil {
		tp := metadata.ValueFromIncomingContext(ctx, telemetry.HeaderTraceparent)
		if len(tp) == 0 {
			return ctx, nil
		}
		kv := []string{telemetry.HeaderTraceparent, tp[0]}
		if ts := metadata.ValueFromIncomingContext(ctx, telemetry.HeaderTracestate); len(ts) > 0 {
			kv = append(kv, telemetry.HeaderTracestate, ts[0])
		}
		return metadata.AppendToOutgoingContext(ctx, kv...), nil
	}
	if !trace.SpanFromContext(ctx).IsRecording() {
		return telemetry.InjectGRPC(ctx), nil
	}
	ctx, span := g.opts.Tracer.Start(ctx, telemetry.SpanProxy, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(telemetry.AttrReplica.String(ep.ID)))
	return telemetry.InjectGRPC(ctx), span
}

// endCall ends span, a call's SpanProxy if it has one, with err, and
// returns err.
func endCall(span trace.Span, err error) error {
	if span != nil {
		endGRPCSpan(span, err)
	}
	return err
}

// endGRPCSpan ends a span of a gRPC call that returned err.
func endGRPCSpan(span trace.Span, err error) {
	if span.IsRecording() {
		code := status.Code(err)
		span.SetAttributes(attribute.String("rpc.grpc.status_code", code.String()))
		if err != nil && code != grpccodes.NotFound && code != grpccodes.InvalidArgument {
			span.SetStatus(codes.Error, status.Convert(err).Message())
		}
	}
	span.End()
}
