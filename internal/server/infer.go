package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

// infer answers POST /v2/models/{name}[/versions/{version}]/infer.
func (s *Server) infer(w http.ResponseWriter, r *http.Request, version string) {
	req, rerr := s.readRequest(w, r)
	if rerr != nil {
		s.log.Debug("bad infer request", "status", rerr.Status, "error", rerr.Msg)
		writeError(w, rerr.Status, rerr.Msg)
		return
	}
	var names []string
	if len(req.Outputs) > 0 {
		names = make([]string, len(req.Outputs))
		for i, o := range req.Outputs {
			names[i] = o.Name
		}
	}
	rerr = s.checkOutputs(names)
	var inputs []oip.Tensor
	if rerr == nil {
		inputs, rerr = s.decodeInputs(req.Inputs)
	}
	if rerr != nil {
		s.log.Debug("bad infer request", "id", req.ID, "status", rerr.Status, "error", rerr.Msg)
		writeError(w, rerr.Status, rerr.Msg)
		return
	}

	outputs, err := s.Infer(r.Context(), inputs, names)
	if err != nil {
		var re *RequestError
		switch {
		case errors.As(err, &re):
			s.log.Debug("infer input rejected", "id", req.ID, "error", err)
			writeError(w, re.Status, re.Msg)
		case r.Context().Err() != nil:
			// The client is gone; nobody reads this answer.
			s.log.Debug("infer abandoned by the client", "id", req.ID, "error", err)
			writeError(w, http.StatusInternalServerError, "model "+s.name+": "+err.Error())
		default:
			s.log.Error("infer failed", "id", req.ID, "error", err)
			writeError(w, http.StatusInternalServerError, "model "+s.name+": "+err.Error())
		}
		return
	}
	resp := oip.InferResponse{
		ModelName:    s.name,
		ModelVersion: version,
		ID:           req.ID,
		Outputs:      outputs,
	}
	if resp.Outputs == nil {
		resp.Outputs = []oip.Tensor{}
	}
	if err := writeJSON(w, http.StatusOK, resp); err != nil {
		s.log.Error("encoding infer response", "id", req.ID, "error", err)
	}
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
	out, err := s.predict(ctx, inputs)
	if err != nil {
		return nil, err
	}
	if len(outputs) > 0 {
		out = filterOutputs(out, outputs)
	}
	return out, nil
}

// readRequest reads and decodes the body, bounded by MaxRequestBytes.
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request) (oip.InferRequest, *RequestError) {
	var req oip.InferRequest
	buf := getBuffer()
	defer putBuffer(buf)
	if r.ContentLength > 0 && r.ContentLength <= s.opts.MaxRequestBytes {
		buf.Grow(int(r.ContentLength) + 1)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes)); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return req, &RequestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than the limit of %d bytes: send fewer rows per request", tooLarge.Limit)}
		}
		return req, badRequest("reading the request body: %v", err)
	}
	if buf.Len() == 0 {
		return req, badRequest(`request body is empty: send an OIP v2 infer request such as {"inputs":[{"name":"...","shape":[1,N],"datatype":"FP32","data":[...]}]}`)
	}
	if err := json.Unmarshal(buf.Bytes(), &req); err != nil {
		return req, badRequest("%s", describeJSONError(err))
	}
	return req, nil
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

// predict calls the model, turning a panic into an error so one bad request
// cannot take down the replica.
func (s *Server) predict(ctx context.Context, inputs []oip.Tensor) (out []oip.Tensor, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("model panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error in the model engine: %v", p)
		}
	}()
	return s.model.Predict(ctx, inputs)
}
