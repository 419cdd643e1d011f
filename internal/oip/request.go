package oip

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Names of the binary tensor data extension (Triton's), in HTTP headers
// and in the "parameters" of requests, inputs and outputs.
const (
	// HeaderInferenceHeaderLength gives the length of the JSON part of a
	// body that carries binary tensor data after it.
	HeaderInferenceHeaderLength = "Inference-Header-Content-Length"
	// ParamBinaryDataSize, on an input or output, is the size in bytes of
	// its data in the binary part of the body.
	ParamBinaryDataSize = "binary_data_size"
	// ParamBinaryData, on a requested output, asks for it as binary data
	// (true) or JSON (false).
	ParamBinaryData = "binary_data"
	// ParamBinaryDataOutput, on the request, asks for every output as
	// binary data unless the output's own binary_data says otherwise.
	ParamBinaryDataOutput = "binary_data_output"
)

// ExtensionBinaryData is the name of the binary tensor data extension in
// the server metadata's extensions.
const ExtensionBinaryData = "binary_tensor_data"

// ParseRequest decodes the JSON of an infer request into req. Beyond
// standard JSON it accepts, outside strings, the tokens NaN, Infinity,
// -Infinity, Inf and -Inf that Triton's parser accepts and Python's json
// module writes for special floats; they reach Decode as the strings
// "NaN", "Infinity" and so on. The error, for a body that is not an infer
// request, is encoding/json's.
//
// The inputs' Data may alias body: keep body unchanged while they are
// used.
func ParseRequest(body []byte, req *InferRequest) error {
	if req.ID == "" && req.Parameters == nil && req.Inputs == nil && req.Outputs == nil && parseFast(body, req) {
		return nil
	}
	// Decoded in a copy: req itself does not escape, so that a caller's
	// request stays on its stack on the fast path.
	dec := *req
	err := json.Unmarshal(body, &dec)
	*req = dec
	if err == nil {
		return nil
	}
	var syntax *json.SyntaxError
	if !errors.As(err, &syntax) {
		return err
	}
	quoted, ok := quoteSpecialFloats(body)
	if !ok {
		return err
	}
	var again InferRequest
	if json.Unmarshal(quoted, &again) != nil {
		return err // the first error's offsets are the client's
	}
	*req = again
	return nil
}

// specialTokens are the bare tokens quoteSpecialFloats quotes, longest
// first so that Infinity wins over Inf.
var specialTokens = []string{"-Infinity", "Infinity", "-Inf", "Inf", "NaN"}

// quoteSpecialFloats returns body with every special-float token outside
// strings put in quotes, and whether there was any.
func quoteSpecialFloats(body []byte) ([]byte, bool) {
	var out []byte
	last := 0
	inString := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
			continue
		case '-', 'I', 'N':
		default:
			continue
		}
		for _, tok := range specialTokens {
			end := i + len(tok)
			if !bytes.HasPrefix(body[i:], []byte(tok)) || (end < len(body) && !isDelimiter(body[end])) {
				continue
			}
			if out == nil {
				out = make([]byte, 0, len(body)+64)
			}
			out = append(out, body[last:i]...)
			out = append(out, '"')
			out = append(out, tok...)
			out = append(out, '"')
			last = end
			i = end - 1
			break
		}
	}
	if out == nil {
		return body, false
	}
	return append(out, body[last:]...), true
}

// isDelimiter reports whether c may follow a JSON value.
func isDelimiter(c byte) bool {
	switch c {
	case ',', ']', '}', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// BinaryInputs returns, for each input of req in order, its data in the
// binary part of a body (the bytes after the JSON), or nil for an input
// whose data is in JSON; the slice itself is nil when no input has binary
// data. Inputs with a binary_data_size parameter take
// their sizes from the binary part in order, and together they must use
// it exactly; an input must not have both binary_data_size and JSON data.
// The sizes are checked before anything is decoded; FromRaw then checks
// each against its input's shape.
func BinaryInputs(req *InferRequest, binary []byte) ([][]byte, error) {
	var out [][]byte
	offset := 0
	for i, in := range req.Inputs {
		size, ok, err := binaryDataSize(in.Parameters)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", in.Name, err)
		}
		if !ok {
			continue
		}
		if len(bytes.TrimSpace(in.Data)) > 0 {
			return nil, fmt.Errorf("input %q has both binary_data_size and JSON data: send its data one way", in.Name)
		}
		if size > int64(len(binary)-offset) {
			return nil, fmt.Errorf("input %q: binary_data_size is %d but only %d bytes of binary data remain after the JSON (Inference-Header-Content-Length): send the inputs' binary data in the order of the inputs", in.Name, size, len(binary)-offset)
		}
		if out == nil {
			out = make([][]byte, len(req.Inputs))
		}
		out[i] = binary[offset : offset+int(size) : offset+int(size)]
		offset += int(size)
	}
	if offset != len(binary) {
		return nil, fmt.Errorf("the body has %d bytes after its JSON (Inference-Header-Content-Length) but the inputs' binary_data_size add up to %d", len(binary), offset)
	}
	return out, nil
}

// binaryDataSize reads the binary_data_size parameter: its value, whether
// it is there, and an error when it is not a whole number ≥ 0.
func binaryDataSize(params map[string]any) (int64, bool, error) {
	v, ok := params[ParamBinaryDataSize]
	if !ok {
		return 0, false, nil
	}
	var n float64
	switch x := v.(type) {
	case float64:
		n = x
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return 0, true, fmt.Errorf("parameter binary_data_size is %v: it must be a whole number of bytes", v)
		}
		n = f
	default:
		return 0, true, fmt.Errorf("parameter binary_data_size is %v: it must be a whole number of bytes", v)
	}
	if n < 0 || n != math.Trunc(n) || n > math.MaxInt32 {
		return 0, true, fmt.Errorf("parameter binary_data_size is %v: it must be a whole number of bytes from 0 to %d", v, math.MaxInt32)
	}
	return int64(n), true, nil
}

// DecodeBinary is Decode for an input whose data arrived as binary tensor
// data b (see BinaryInputs): b must hold exactly what in's shape and
// datatype describe, which is checked before anything is allocated.
func DecodeBinary(in RequestInput, b []byte) (Tensor, error) {
	t, err := FromRaw(in.Datatype, in.Shape, b)
	t.Name = in.Name
	if err != nil {
		return t, fmt.Errorf("input %q: binary data: %w", in.Name, err)
	}
	return t, nil
}

// BinaryOutputs returns, for each of outputs (the names of the outputs a
// response carries, in its order), whether it is to be sent as binary
// tensor data: as its binary_data parameter in req.Outputs says, else as
// req's binary_data_output. It fails when one of those parameters is not a
// boolean.
func BinaryOutputs(req *InferRequest, outputs []string) ([]bool, error) {
	all, _, err := boolParam(req.Parameters, ParamBinaryDataOutput)
	if err != nil {
		return nil, fmt.Errorf("request %w", err)
	}
	var out []bool
	for i, name := range outputs {
		want := all
		for _, o := range req.Outputs {
			if o.Name != name {
				continue
			}
			v, ok, err := boolParam(o.Parameters, ParamBinaryData)
			if err != nil {
				return nil, fmt.Errorf("output %q: %w", name, err)
			}
			if ok {
				want = v
			}
			break
		}
		if want {
			if out == nil {
				out = make([]bool, len(outputs))
			}
			out[i] = true
		}
	}
	return out, nil
}

// boolParam reads a boolean parameter: its value, whether it is there, and
// an error when it is not a boolean.
func boolParam(params map[string]any, name string) (bool, bool, error) {
	v, ok := params[name]
	if !ok {
		return false, false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, true, fmt.Errorf("parameter %s is %v: it must be true or false", name, v)
	}
	return b, true, nil
}
