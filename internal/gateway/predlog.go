package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/predlog"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Prediction logging (Options.Predictions). Once an inference request
// routed to a deployment has its answer (OIP v2 REST infer, an OpenAI API
// request once its stream ends, gRPC ModelInfer), the gateway asks the
// log whether the request is sampled, by the deployment the client named
// and the request id (X-Request-Id, or the gRPC request's id), and, if it
// is, hands it a predlog.Record: the deployment, the model version that
// answered (the replica's registry version, else the route's, else the
// traffic target's tag), the tenant, the trace id, the request id, the
// request and response bodies, the status and the latency from arrival.
// Requests refused before they were routed (unknown model, bad token,
// tenant limits, unreadable body) are not predictions and are not
// logged.
//
// The log must not block (predlog.Logger.Log copies the payloads into a
// bounded queue and returns): the record is handed over on the request's
// goroutine, before the handler returns. Without a log a request costs a
// nil check; with one, an unsampled request costs a header lookup and the
// log's Sampled (a map lookup), and no allocation.
//
// Payloads are the bytes the client and the replica exchanged, for REST;
// a gRPC call's messages are written as the equivalent OIP v2 REST JSON
// (oip.Tensor's encoding), so that one reader parses both. A streamed
// OpenAI answer is captured as it passes, up to maxStreamCapture bytes.

// PredictionLog receives the gateway's sampled predictions;
// *predlog.Logger is one.
type PredictionLog interface {
	// Sampled reports whether the request requestID of deployment is
	// logged. It is called for every routed inference request: it must
	// be cheap and must not allocate.
	Sampled(deployment, requestID string) bool
	// Log queues rec and returns at once, whatever its sink does; it
	// copies rec's payloads.
	Log(rec predlog.Record)
}

// maxStreamCapture bounds the bytes of a streamed OpenAI answer kept for
// its record: predlog's default Options.MaxRecordBytes and one more, so a
// longer answer reaches the log too large, and is dropped and counted
// there, rather than logged cut short.
const maxStreamCapture = 1<<20 + 1

// logREST logs the OIP v2 REST request x of deployment named, answered in
// ctx, if it is sampled; version is the version that served it.
func (g *Gateway) logREST(ctx *fasthttp.RequestCtx, x *exchange, named, version string, start, end time.Time) {
	id := x.hdr.requestID
	if !g.opts.Predictions.Sampled(named, b2s(id)) {
		return
	}
	g.opts.Predictions.Log(predlog.Record{
		Time:         start,
		Deployment:   named,
		ModelVersion: version,
		Tenant:       x.tenant,
		TraceID:      restTraceID(ctx, x),
		RequestID:    string(id),
		Inputs:       x.body,
		Outputs:      ctx.Response.Body(),
		Status:       ctx.Response.StatusCode(),
		Latency:      end.Sub(start),
	})
}

// restTraceID returns the trace id of ctx's request: its span's, when x is
// traced, else the traceparent header's; "" for none.
func restTraceID(ctx *fasthttp.RequestCtx, x *exchange) string {
	sc := trace.SpanContext{}
	if x.span != nil {
		sc = x.span.SpanContext()
	}
	if !sc.IsValid() {
		sc = trace.SpanContextFromContext(telemetry.ExtractFastHTTP(context.Background(), &ctx.Request.Header))
	}
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// sampleOpenAI decides whether the OpenAI request r is logged; a sampled
// one captures its answer as it streams (upstreamBody) and is logged when
// it ends (logOpenAI).
func (g *Gateway) sampleOpenAI(ctx *fasthttp.RequestCtx, r *openAIRequest) {
	id := ctx.Request.Header.PeekBytes(headerRequestID)
	if g.opts.Predictions.Sampled(r.name, b2s(id)) {
		r.logged = &openAILog{requestID: string(id)}
	}
}

// openAILog is what a sampled OpenAI request keeps for its record.
type openAILog struct {
	requestID string
	streamed  bool   // the answer streamed: out holds it
	out       []byte // the streamed answer, up to maxStreamCapture bytes
}

// capture keeps p, a piece of the streamed answer, within
// maxStreamCapture.
func (l *openAILog) capture(p []byte) {
	l.streamed = true
	if room := maxStreamCapture - len(l.out); room > 0 {
		l.out = append(l.out, p[:min(len(p), room)]...)
	}
}

// logOpenAI logs the sampled OpenAI request r, which ended with code.
func (r *openAIRequest) logOpenAI(code int, now time.Time) {
	x, l := r.x, r.logged
	rc := x.ctx.rc
	out := l.out
	if !l.streamed {
		out = rc.Response.Body() // an error, or an answer read whole
	}
	r.g.opts.Predictions.Log(predlog.Record{
		Time:         r.start,
		Deployment:   r.name,
		ModelVersion: versionLabel(r.rt, x.last(), r.tag),
		Tenant:       x.tenant,
		TraceID:      restTraceID(rc, x),
		RequestID:    l.requestID,
		Inputs:       x.body,
		Outputs:      out,
		Status:       code,
		Latency:      now.Sub(r.start),
	})
}

// grpcRecord is what forward tells the prediction log of a call it
// routed: the deployment named, the version that served it (as metrics
// label it), its arrival and the time to its answer.
type grpcRecord struct {
	named, version string
	start          time.Time
	took           time.Duration
}

// logGRPC logs the ModelInfer call req, answered with resp or err as s
// tells, if the gateway has a prediction log, the call was routed and it
// is sampled.
func (g *GRPC) logGRPC(ctx context.Context, req *oipgrpc.ModelInferRequest, resp *oipgrpc.ModelInferResponse, err error, s *served) {
	if g.opts.Predictions == nil || s.rec.named == "" {
		return
	}
	id := req.GetId()
	if id == "" {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			id = first(md.Get("x-request-id"))
		}
	}
	if !g.opts.Predictions.Sampled(s.rec.named, id) {
		return
	}
	var outputs []byte
	if err != nil {
		outputs, _ = json.Marshal(errorBody{Error: status.Convert(err).Message()})
	} else {
		outputs = grpcResponseJSON(resp)
	}
	g.opts.Predictions.Log(predlog.Record{
		Time:         s.rec.start,
		Deployment:   s.rec.named,
		ModelVersion: s.rec.version,
		Tenant:       s.try.tenant,
		TraceID:      grpcTraceID(ctx),
		RequestID:    strings.Clone(id),
		Inputs:       grpcRequestJSON(req),
		Outputs:      outputs,
		Status:       httpStatus(status.Code(err)),
		Latency:      s.rec.took,
	})
}

// grpcTraceID returns the trace id of a gRPC call: its span's, when
// traced, else its traceparent metadata's; "" for none.
func grpcTraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		sc = trace.SpanContextFromContext(telemetry.ExtractGRPC(ctx))
	}
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// grpcRequestJSON returns req as the body of the equivalent OIP v2 REST
// infer request; its protobuf encoding when its tensors do not decode.
func grpcRequestJSON(req *oipgrpc.ModelInferRequest) []byte {
	ins, err := oipgrpc.InputTensors(req)
	if err == nil {
		body := struct {
			ID     string       `json:"id,omitempty"`
			Inputs []oip.Tensor `json:"inputs"`
		}{req.GetId(), ins}
		if b, err := json.Marshal(body); err == nil {
			return b
		}
	}
	b, _ := proto.Marshal(req)
	return b
}

// grpcResponseJSON returns resp as the body of the equivalent OIP v2 REST
// infer response; its protobuf encoding when its tensors do not decode.
func grpcResponseJSON(resp *oipgrpc.ModelInferResponse) []byte {
	outs, err := oipgrpc.OutputTensors(resp)
	if err == nil {
		r := oip.InferResponse{ModelName: resp.GetModelName(), ModelVersion: resp.GetModelVersion(), ID: resp.GetId(), Outputs: outs}
		if b, _, err := oip.AppendResponse(nil, &r, nil); err == nil {
			return b
		}
	}
	b, _ := proto.Marshal(resp)
	return b
}
