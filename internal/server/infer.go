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

// requestError is a problem with what the client sent, answered with status.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) *requestError {
	return &requestError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// infer answers POST /v2/models/{name}[/versions/{version}]/infer.
func (s *Server) infer(w http.ResponseWriter, r *http.Request, version string) {
	req, rerr := s.readRequest(w, r)
	if rerr != nil {
		s.log.Debug("bad infer request", "status", rerr.status, "error", rerr.msg)
		writeError(w, rerr.status, rerr.msg)
		return
	}
	rerr = s.checkOutputs(req.Outputs)
	var inputs []oip.Tensor
	if rerr == nil {
		inputs, rerr = s.decodeInputs(req.Inputs)
	}
	if rerr != nil {
		s.log.Debug("bad infer request", "id", req.ID, "status", rerr.status, "error", rerr.msg)
		writeError(w, rerr.status, rerr.msg)
		return
	}

	outputs, err := s.predict(r.Context(), inputs)
	if err != nil {
		var ie *engine.InputError
		if errors.As(err, &ie) {
			s.log.Debug("infer input rejected by the model", "id", req.ID, "error", err)
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if r.Context().Err() != nil {
			// The client is gone; nobody reads this answer.
			s.log.Debug("infer abandoned by the client", "id", req.ID, "error", err)
		} else {
			s.log.Error("infer failed", "id", req.ID, "error", err)
		}
		writeError(w, http.StatusInternalServerError, "model "+s.name+": "+err.Error())
		return
	}
	if len(req.Outputs) > 0 {
		outputs = filterOutputs(outputs, req.Outputs)
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

// readRequest reads and decodes the body, bounded by MaxRequestBytes.
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request) (oip.InferRequest, *requestError) {
	var req oip.InferRequest
	buf := getBuffer()
	defer putBuffer(buf)
	if r.ContentLength > 0 && r.ContentLength <= s.opts.MaxRequestBytes {
		buf.Grow(int(r.ContentLength) + 1)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes)); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return req, &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than the limit of %d bytes: send fewer rows per request", tooLarge.Limit)}
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

// decodeInputs checks the request's inputs against the model metadata and
// decodes them, returned in the metadata's order.
func (s *Server) decodeInputs(in []oip.RequestInput) ([]oip.Tensor, *requestError) {
	want := s.meta.Inputs
	order := make([]int, len(want))
	for i := range order {
		order[i] = -1
	}
	for j, ri := range in {
		i, ok := s.inputIndex[ri.Name]
		if !ok {
			return nil, badRequest("unknown input %q: model %q takes %s", ri.Name, s.name, describeTensors(want))
		}
		if order[i] >= 0 {
			return nil, badRequest("input %q appears more than once", ri.Name)
		}
		order[i] = j
		m := want[i]
		if ri.Datatype == "" {
			return nil, badRequest("input %q: datatype is missing: model expects %s", ri.Name, m.Datatype)
		}
		if !convertible(m.Datatype, ri.Datatype) {
			return nil, badRequest("input %q: datatype %s given, model expects %s", ri.Name, ri.Datatype, m.Datatype)
		}
		if ri.Shape == nil && len(m.Shape) > 0 {
			return nil, badRequest("input %q: shape is missing: model expects %s", ri.Name, formatShape(m.Shape))
		}
		if !shapeMatches(m.Shape, ri.Shape) {
			return nil, badRequest("input %q: shape %s given, model expects %s (-1 is any size)", ri.Name, formatShape(ri.Shape), formatShape(m.Shape))
		}
	}
	for i, j := range order {
		if j < 0 {
			return nil, badRequest("missing input %q: model %q takes %s", want[i].Name, s.name, describeTensors(want))
		}
	}
	tensors := make([]oip.Tensor, len(want))
	for i, j := range order {
		t, err := oip.Decode(in[j])
		if err != nil {
			return nil, badRequest("%v", err)
		}
		tensors[i] = t
	}
	return tensors, nil
}

// checkOutputs rejects requested outputs the model does not have.
func (s *Server) checkOutputs(req []oip.RequestOutput) *requestError {
	for _, o := range req {
		if _, ok := s.outputIndex[o.Name]; !ok {
			return badRequest("unknown output %q: model %q has outputs %s", o.Name, s.name, describeTensors(s.meta.Outputs))
		}
	}
	return nil
}

// filterOutputs keeps the outputs that were asked for, in the model's order.
func filterOutputs(out []oip.Tensor, req []oip.RequestOutput) []oip.Tensor {
	kept := out[:0:0]
	for _, t := range out {
		for _, o := range req {
			if o.Name == t.Name {
				kept = append(kept, t)
				break
			}
		}
	}
	return kept
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

func isNumeric(dt string) bool {
	switch dt {
	case oip.INT32, oip.INT64, oip.FP32, oip.FP64:
		return true
	}
	return false
}

// convertible reports whether an input sent as datatype given can feed a
// model input declared as want: the same datatype, or any numeric one for a
// numeric input (engines convert numbers, see oip.Tensor.Float32s).
func convertible(want, given string) bool {
	return want == given || (isNumeric(want) && isNumeric(given))
}

// shapeMatches reports whether given has want's rank and agrees on every
// fixed (non -1) dimension.
func shapeMatches(want, given []int64) bool {
	if len(want) != len(given) {
		return false
	}
	for i, d := range want {
		if d >= 0 && given[i] != d {
			return false
		}
	}
	return true
}

func formatShape(shape []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range shape {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, d)
	}
	b.WriteByte(']')
	return b.String()
}

// describeTensors lists tensors as `a (FP32 [-1,10]), b (INT64 [-1])`.
func describeTensors(ts []oip.TensorMetadata) string {
	if len(ts) == 0 {
		return "none"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = fmt.Sprintf("%q (%s %s)", t.Name, t.Datatype, formatShape(t.Shape))
	}
	return strings.Join(parts, ", ")
}
