package server

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/ebb-ml/ebb/internal/oip"
)

// RequestError is a problem with what the client sent. Status is the HTTP
// status the REST server answers with (400, or 413 for a body too large); a
// gRPC server maps it to codes.InvalidArgument (ResourceExhausted for 413).
// Msg names what was wrong and how to fix it.
type RequestError struct {
	Status int
	Msg    string
}

func (e *RequestError) Error() string { return e.Msg }

func badRequest(format string, args ...any) *RequestError {
	return &RequestError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// CheckInputs checks decoded tensors against the model's metadata: every
// input named once, no unknown name, a datatype the input accepts (the same,
// or any numeric type for a numeric input), the declared rank and fixed
// dimensions (-1 is any size; an input declared without a shape takes any
// shape, and one declared [] a scalar), and Data of the Go type the datatype implies
// (see oip.Tensor) holding exactly as many elements as Shape describes. It
// returns the tensors in the metadata's order, ready for Infer, or a
// *RequestError (status 400) that names the input and the expected vs given
// datatype or shape. The tensors themselves are not copied.
func (s *Server) CheckInputs(inputs []oip.Tensor) ([]oip.Tensor, error) {
	order, rerr := s.orderInputs(len(inputs), func(j int) (string, string, []int64) {
		return inputs[j].Name, inputs[j].Datatype, inputs[j].Shape
	}, nil)
	if rerr != nil {
		return nil, rerr
	}
	out := make([]oip.Tensor, len(order))
	for i, j := range order {
		t := inputs[j]
		if err := t.Check(); err != nil {
			return nil, badRequest("input %v", err)
		}
		out[i] = t
	}
	return out, nil
}

// decodeInputs checks the request's inputs against the model metadata and
// decodes them, returned in the metadata's order. binary holds each input's
// binary tensor data (nil for JSON data; binary itself is nil when no input
// has any).
func (s *Server) decodeInputs(in []oip.RequestInput, binary [][]byte) ([]oip.Tensor, *RequestError) {
	var scratch [4]int // no allocation for the order of a few inputs
	order, rerr := s.orderInputs(len(in), func(j int) (string, string, []int64) {
		return in[j].Name, in[j].Datatype, in[j].Shape
	}, scratch[:0])
	if rerr != nil {
		return nil, rerr
	}
	tensors := make([]oip.Tensor, len(order))
	for i, j := range order {
		var t oip.Tensor
		var err error
		if binary != nil && binary[j] != nil {
			t, err = oip.DecodeBinary(in[j], binary[j])
		} else {
			t, err = oip.Decode(in[j])
		}
		if err != nil {
			return nil, badRequest("%v", err)
		}
		tensors[i] = t
	}
	return tensors, nil
}

// orderInputs checks the names, datatypes and shapes of n inputs, described
// by header, against the metadata and returns, for each metadata input in
// order, the index of the request input that feeds it, appended to
// scratch[:0].
func (s *Server) orderInputs(n int, header func(j int) (name, datatype string, shape []int64), scratch []int) ([]int, *RequestError) {
	if s.anyInputs {
		return s.requestOrder(n, header)
	}
	want := s.meta.Inputs
	order := scratch[:0]
	for range want {
		order = append(order, -1)
	}
	var elements int64
	for j := range n {
		name, datatype, shape := header(j)
		if rerr := s.checkElements(&elements, name, shape); rerr != nil {
			return nil, rerr
		}
		i, ok := s.inputIndex[name]
		if !ok {
			return nil, badRequest("unknown input %q: model %q takes %s", name, s.name, describeTensors(want))
		}
		if order[i] >= 0 {
			return nil, badRequest("input %q appears more than once", name)
		}
		order[i] = j
		m := want[i]
		if datatype == "" {
			return nil, badRequest("input %q: datatype is missing: model expects %s", name, m.Datatype)
		}
		if !convertible(m.Datatype, datatype) {
			return nil, badRequest("input %q: datatype %s given, model expects %s", name, datatype, m.Datatype)
		}
		if shape == nil && len(m.Shape) > 0 {
			return nil, badRequest("input %q: shape is missing: model expects %s", name, oip.FormatShape(m.Shape))
		}
		if m.Shape == nil {
			continue // declared without a shape: any shape
		}
		if !shapeMatches(m.Shape, shape) {
			return nil, badRequest("input %q: shape %s given, model expects %s (-1 is any size)", name, oip.FormatShape(shape), oip.FormatShape(m.Shape))
		}
	}
	for i, j := range order {
		if j < 0 {
			return nil, badRequest("missing input %q: model %q takes %s", want[i].Name, s.name, describeTensors(want))
		}
	}
	return order, nil
}

// requestOrder is orderInputs for a model that takes whatever inputs a
// request carries: each named once, within the element limit, in the
// request's order.
func (s *Server) requestOrder(n int, header func(j int) (name, datatype string, shape []int64)) ([]int, *RequestError) {
	order := make([]int, n)
	seen := make(map[string]bool, n)
	var elements int64
	for j := range n {
		name, datatype, shape := header(j)
		if rerr := s.checkElements(&elements, name, shape); rerr != nil {
			return nil, rerr
		}
		if seen[name] {
			return nil, badRequest("input %q appears more than once", name)
		}
		seen[name] = true
		if datatype == "" {
			return nil, badRequest("input %q: datatype is missing: set one of %s", name, strings.Join(oip.Datatypes, ", "))
		}
		order[j] = j
	}
	return order, nil
}

// checkOutputs rejects requested outputs the model does not have (a model
// that takes any inputs and declares no outputs may have any).
func (s *Server) checkOutputs(names []string) *RequestError {
	if s.anyInputs && len(s.meta.Outputs) == 0 {
		return nil
	}
	for _, name := range names {
		if _, ok := s.outputIndex[name]; !ok {
			return badRequest("unknown output %q: model %q has outputs %s", name, s.name, describeTensors(s.meta.Outputs))
		}
	}
	return nil
}

// filterOutputs keeps the outputs named in names, in the model's order.
func filterOutputs(out []oip.Tensor, names []string) []oip.Tensor {
	kept := out[:0:0]
	for _, t := range out {
		for _, name := range names {
			if name == t.Name {
				kept = append(kept, t)
				break
			}
		}
	}
	return kept
}

// convertible reports whether an input sent as datatype given can feed a
// model input declared as want: the same datatype, or any numeric one for a
// numeric input (engines convert numbers, see oip.Tensor.Float32s).
func convertible(want, given string) bool {
	return want == given || (oip.IsNumeric(want) && oip.IsNumeric(given))
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

// describeTensors lists tensors as `a (FP32 [-1,10]), b (INT64 [-1])`.
func describeTensors(ts []oip.TensorMetadata) string {
	if len(ts) == 0 {
		return "none"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		shape := "any shape"
		if t.Shape != nil {
			shape = oip.FormatShape(t.Shape)
		}
		parts[i] = fmt.Sprintf("%q (%s %s)", t.Name, t.Datatype, shape)
	}
	return strings.Join(parts, ", ")
}
