package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
	"go.opentelemetry.io/otel/trace"
)

// infer answers POST /v2/models/{name}[/versions/{version}]/infer served
// by net/http (ServeHTTP), in JSON or with binary tensor data (see
// parseBody and answer). Serve's fasthttp server has its own (fast.go).
func (s *Server) infer(w http.ResponseWriter, r *http.Request, version string) {
	buf := getBuffer()
	release := func() {
		if buf != nil {
			putBuffer(buf)
			buf = nil
		}
	}
	defer release()
	req, binary, rerr := s.readRequest(w, r, buf)
	if rerr != nil {
		s.log.Debug("bad infer request", "status", rerr.Status, "error", rerr.Msg)
		writeError(w, rerr.Status, rerr.Msg)
		return
	}
	inputs, names, rerr := s.prepare(&req, binary)
	// The decoded tensors own their data: the body can go while the model
	// runs.
	release()
	bp := getBody()
	defer putBody(bp)
	ctx := r.Context()
	if s.opts.Tracer != nil {
		ctx = extractHTTP(ctx, r.Header) // trace.go
	}
	status, body, jsonLen := s.answer(ctx, &req, inputs, names, rerr, version, (*bp)[:0])
	*bp = body
	h := w.Header()
	if jsonLen < len(body) {
		h["Content-Type"] = octetStreamHeader
		h[oip.HeaderInferenceHeaderLength] = []string{strconv.Itoa(jsonLen)}
	} else {
		h["Content-Type"] = jsonHeader
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}

// Header values of infer responses, shared: net/http only reads them.
var (
	jsonHeader        = []string{"application/json"}
	octetStreamHeader = []string{"application/octet-stream"}
)

// prepare checks a decoded request's outputs and parameters and decodes its
// inputs, in the metadata's order, with the names of the outputs asked for.
func (s *Server) prepare(req *oip.InferRequest, binary [][]byte) ([]oip.Tensor, []string, *RequestError) {
	var names []string
	if len(req.Outputs) > 0 {
		names = make([]string, len(req.Outputs))
		for i, o := range req.Outputs {
			names[i] = o.Name
		}
	}
	if rerr := s.checkOutputs(names); rerr != nil {
		return nil, nil, rerr
	}
	// Parameters are checked before the model runs.
	if _, err := oip.BinaryOutputs(req, names); err != nil {
		return nil, nil, badRequest("%v", err)
	}
	inputs, rerr := s.decodeInputs(req.Inputs, binary)
	return inputs, names, rerr
}

// answer runs the model on inputs (unless prepare failed with rerr) and
// appends the response body to dst: resp as JSON, with the outputs req
// asks for as binary tensor data after it, or an OIP error body. It
// returns the status, the body and the length of its JSON part (less than
// the body's with binary data: the Inference-Header-Content-Length).
func (s *Server) answer(ctx context.Context, req *oip.InferRequest, inputs []oip.Tensor, names []string, rerr *RequestError, version string, dst []byte) (int, []byte, int) {
	if rerr != nil {
		s.log.Debug("bad infer request", "id", req.ID, "status", rerr.Status, "error", rerr.Msg)
		return errorBody(dst, rerr.Status, rerr.Msg)
	}
	outputs, err := s.Infer(ctx, inputs, names)
	if err != nil {
		var re *RequestError
		switch {
		case errors.As(err, &re):
			s.log.Debug("infer input rejected", "id", req.ID, "error", err)
			return errorBody(dst, re.Status, re.Msg)
		case ctx.Err() != nil:
			// The client is gone (or the drain timed out); nobody reads
			// this answer.
			s.log.Debug("infer abandoned by the client", "id", req.ID, "error", err)
		default:
			s.log.ErrorContext(ctx, "infer failed", "id", req.ID, "error", err)
		}
		return errorBody(dst, http.StatusInternalServerError, "model "+s.name+": "+err.Error())
	}
	resp := oip.InferResponse{
		ModelName:    s.name,
		ModelVersion: s.version(version),
		ID:           req.ID,
		Outputs:      outputs,
	}
	var binary []bool
	if req.Parameters != nil || len(req.Outputs) > 0 {
		names := make([]string, len(resp.Outputs))
		for i, t := range resp.Outputs {
			names[i] = t.Name
		}
		binary, _ = oip.BinaryOutputs(req, names) // checked before the model ran
	}
	body, jsonLen, err := oip.AppendResponse(dst, &resp, binary)
	if err != nil {
		s.log.Error("encoding infer response", "id", req.ID, "error", err)
		return errorBody(dst, http.StatusInternalServerError, fmt.Sprintf("model %s: encoding the response: %v", s.name, err))
	}
	return http.StatusOK, body, jsonLen
}

// errorBody appends the OIP error body for msg to dst.
func errorBody(dst []byte, status int, msg string) (int, []byte, int) {
	b, _ := json.Marshal(oip.ErrorResponse{Error: msg})
	dst = append(dst, b...)
	return status, dst, len(dst)
}

// Infer runs the model on inputs, which must be in the metadata's order and
// valid for it (as CheckInputs returns them), and returns the outputs named
// in outputs, in the model's order, or all of them when outputs is empty.
// When batching is on, the call waits in the batcher's queue for a batch;
// ctx ending takes it out of the queue at once.
//
// Errors: a *RequestError when the caller sent something wrong (an unknown
// output, inputs with different batch sizes, or inputs the model rejected
// with an *engine.InputError); ctx's error (context.Canceled or
// DeadlineExceeded, possibly wrapped) when ctx ended first; any other error
// is a failure of the model or the server (a 500, gRPC Internal).
//
// The returned tensors may share memory with other requests' outputs and
// must be treated as read-only.
func (s *Server) Infer(ctx context.Context, inputs []oip.Tensor, outputs []string) ([]oip.Tensor, error) {
	if rerr := s.checkOutputs(outputs); rerr != nil {
		return nil, rerr
	}
	out, err := s.run(ctx, inputs, outputs)
	if err != nil {
		var ie *engine.InputError
		if errors.As(err, &ie) {
			return nil, badRequest("%s", ie.Message)
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return nil, fmt.Errorf("%w: %v", cerr, err)
		}
		return nil, err
	}
	return out, nil
}

// run calls the model directly or through the batcher.
func (s *Server) run(ctx context.Context, inputs []oip.Tensor, outputs []string) ([]oip.Tensor, error) {
	if s.batcher != nil && !emptyBatch(inputs) {
		return s.batcher.Predict(ctx, inputs, outputs)
	}
	var span trace.Span
	if s.opts.Tracer != nil {
		ctx, span = s.traceEngineCall(ctx) // trace.go
	}
	out, err := s.predict(ctx, inputs, outputs)
	if span != nil {
		endSpan(span, err)
	}
	if err != nil {
		return nil, err
	}
	if len(outputs) > 0 {
		out = filterOutputs(out, outputs)
	}
	return out, nil
}

// readRequest reads the body into buf, bounded by MaxRequestBytes and
// BodyTimeout, and decodes it (parseBody).
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer) (oip.InferRequest, [][]byte, *RequestError) {
	if r.ContentLength > s.opts.MaxRequestBytes {
		// Decided from the header, before a byte of the body is read.
		return oip.InferRequest{}, nil, s.tooLarge(r.ContentLength)
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1)
	}
	connlimit.StartBody(w, s.opts.Limits.BodyTimeout)
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes)); err != nil {
		// The deadline stays: net/http reads what is left of a failed
		// body before it answers, and must not wait on a stalled client.
		return oip.InferRequest{}, nil, s.bodyError(err)
	}
	connlimit.EndBody(w)
	return s.parseBody(buf.Bytes(), r.Header.Get(oip.HeaderInferenceHeaderLength))
}

// parseBody decodes an infer request body. With an
// Inference-Header-Content-Length header (headerLen, "" without) the JSON
// is that many bytes and the rest is binary tensor data, returned cut per
// input (see oip.BinaryInputs; nil when no input has binary data). The
// request's input data may alias body.
func (s *Server) parseBody(body []byte, headerLen string) (oip.InferRequest, [][]byte, *RequestError) {
	var req oip.InferRequest
	jsonLen, rerr := headerLength(headerLen, len(body))
	if rerr != nil {
		return req, nil, rerr
	}
	if jsonLen == 0 {
		return req, nil, badRequest(`request body is empty: send an OIP v2 infer request such as {"inputs":[{"name":"...","shape":[1,N],"datatype":"FP32","data":[...]}]}`)
	}
	if err := oip.ParseRequest(body[:jsonLen], &req); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) && strings.Contains(syntax.Error(), "after top-level value") && headerLen == "" {
			return req, nil, badRequest("%s; if the bytes after the JSON object are binary tensor data, give the length of the JSON part in the %s header", describeJSONError(err), oip.HeaderInferenceHeaderLength)
		}
		return req, nil, badRequest("%s", describeJSONError(err))
	}
	binary, err := oip.BinaryInputs(&req, body[jsonLen:])
	if err != nil {
		if jsonLen == len(body) && headerLen == "" {
			return req, nil, badRequest("%v; a request with binary tensor data must give the length of its JSON part in the %s header", err, oip.HeaderInferenceHeaderLength)
		}
		return req, nil, badRequest("%v", err)
	}
	return req, binary, nil
}

// headerLength returns the length of the JSON part of a body of n bytes:
// the Inference-Header-Content-Length header's value v, or n without it.
func headerLength(v string, n int) (int, *RequestError) {
	if v == "" {
		return n, nil
	}
	l, err := strconv.Atoi(v)
	if err != nil || l < 0 || l > n {
		return 0, badRequest("header %s is %q: it must be the length in bytes of the JSON at the start of the body, from 1 to the body's %d bytes", oip.HeaderInferenceHeaderLength, v, n)
	}
	return l, nil
}

func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("request body is not valid JSON: %v (at byte %d)", syntax, syntax.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return fmt.Sprintf("request body must be a JSON object with an \"inputs\" array, not a JSON %s", typ.Value)
		}
		return fmt.Sprintf("request field %q must be %s, not a JSON %s (at byte %d)", field, jsonKind(typ.Type.String()), typ.Value, typ.Offset)
	default:
		return "request body is not a valid infer request: " + err.Error()
	}
}

// jsonKind names a Go type of oip.InferRequest as the JSON it expects.
func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]int"):
		return "an array of integers"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "oip."):
		return "an object"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "int"):
		return "an integer"
	}
	return "a " + goType
}

// emptyBatch reports whether some input has no rows; such a request has
// nothing to batch and goes to the model directly.
func emptyBatch(inputs []oip.Tensor) bool {
	for _, t := range inputs {
		if len(t.Shape) > 0 && t.Shape[0] == 0 {
			return true
		}
	}
	return false
}

// predict calls the model, asking for only the outputs named when it can
// compute some alone (engine.OutputSelector), and turning a panic into an
// error so one bad request cannot take down the replica.
func (s *Server) predict(ctx context.Context, inputs []oip.Tensor, outputs []string) (out []oip.Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("model panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error in the model engine: %v", p)
		}
	}()
	if sel, ok := s.model.(engine.OutputSelector); ok && len(outputs) > 0 {
		return sel.PredictOutputs(ctx, inputs, outputs)
	}
	return s.model.Predict(ctx, inputs)
}
