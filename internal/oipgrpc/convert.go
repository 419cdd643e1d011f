package oipgrpc

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/ebb-ml/ebb/internal/oip"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// InputTensors returns req's inputs as tensors in request order, each with
// a flat Data slice of the Go type its datatype implies (see oip.Tensor),
// read from the input's typed contents or from req.RawInputContents.
//
// It returns a gRPC status error with code InvalidArgument, naming the input,
// when a datatype is missing or not one of BOOL, INT32, INT64, FP32, FP64 and
// BYTES, a shape is invalid, the data is missing, sits in another datatype's
// field, or holds a different number of elements than the shape, or when
// raw and typed contents are mixed.
func InputTensors(req *ModelInferRequest) ([]oip.Tensor, error) {
	raw := req.GetRawInputContents()
	inputs := req.GetInputs()
	if len(raw) > 0 && len(raw) != len(inputs) {
		return nil, invalid("raw_input_contents has %d entries but the request has %d inputs: send one entry per input, in the order of inputs", len(raw), len(inputs))
	}
	out := make([]oip.Tensor, len(inputs))
	for i, in := range inputs {
		var err error
		if len(raw) > 0 {
			if in.GetContents() != nil {
				return nil, invalid("input %q sets contents although the request uses raw_input_contents: send every input's data one way", in.GetName())
			}
			out[i], err = decodeRaw("input", in.GetName(), in.GetDatatype(), in.GetShape(), raw[i], fmt.Sprintf("raw_input_contents[%d]", i))
		} else {
			out[i], err = decodeContents("input", in.GetName(), in.GetDatatype(), in.GetShape(), in.GetContents(), "raw_input_contents")
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// OutputTensors returns resp's outputs as tensors, as InputTensors does for a
// request; a client uses it to read a response. Errors are InvalidArgument
// status errors naming the output.
func OutputTensors(resp *ModelInferResponse) ([]oip.Tensor, error) {
	raw := resp.GetRawOutputContents()
	outputs := resp.GetOutputs()
	if len(raw) > 0 && len(raw) != len(outputs) {
		return nil, invalid("raw_output_contents has %d entries but the response has %d outputs", len(raw), len(outputs))
	}
	out := make([]oip.Tensor, len(outputs))
	for i, o := range outputs {
		var err error
		if len(raw) > 0 {
			if o.GetContents() != nil {
				return nil, invalid("output %q sets contents although the response uses raw_output_contents", o.GetName())
			}
			out[i], err = decodeRaw("output", o.GetName(), o.GetDatatype(), o.GetShape(), raw[i], fmt.Sprintf("raw_output_contents[%d]", i))
		} else {
			out[i], err = decodeContents("output", o.GetName(), o.GetDatatype(), o.GetShape(), o.GetContents(), "raw_output_contents")
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SetInputs sets req.Inputs from ts, with the data in typed contents, or in
// req.RawInputContents when raw is true. It fails when a tensor's Data does
// not have the Go type of its datatype or the element count of its shape.
func SetInputs(req *ModelInferRequest, ts []oip.Tensor, raw bool) error {
	req.Inputs = make([]*ModelInferRequest_InferInputTensor, len(ts))
	req.RawInputContents = nil
	if raw {
		req.RawInputContents = make([][]byte, len(ts))
	}
	for i, t := range ts {
		in := &ModelInferRequest_InferInputTensor{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape}
		var err error
		if raw {
			req.RawInputContents[i], err = encodeRaw("input", t)
		} else {
			in.Contents, err = encodeContents("input", t)
		}
		if err != nil {
			return err
		}
		req.Inputs[i] = in
	}
	return nil
}

// SetOutputs sets resp.Outputs from ts as SetInputs does for a request.
// Typed contents share the tensors' numeric slices rather than copy them, so
// ts must not change until resp is sent.
func SetOutputs(resp *ModelInferResponse, ts []oip.Tensor, raw bool) error {
	resp.Outputs = make([]*ModelInferResponse_InferOutputTensor, len(ts))
	resp.RawOutputContents = nil
	if raw {
		resp.RawOutputContents = make([][]byte, len(ts))
	}
	for i, t := range ts {
		o := &ModelInferResponse_InferOutputTensor{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape}
		var err error
		if raw {
			resp.RawOutputContents[i], err = encodeRaw("output", t)
		} else {
			o.Contents, err = encodeContents("output", t)
		}
		if err != nil {
			return err
		}
		resp.Outputs[i] = o
	}
	return nil
}

// MetadataResponse converts model metadata to its gRPC message.
func MetadataResponse(m oip.ModelMetadata) *ModelMetadataResponse {
	return &ModelMetadataResponse{
		Name:     m.Name,
		Versions: m.Versions,
		Platform: m.Platform,
		Inputs:   tensorMetadata(m.Inputs),
		Outputs:  tensorMetadata(m.Outputs),
	}
}

func tensorMetadata(ts []oip.TensorMetadata) []*ModelMetadataResponse_TensorMetadata {
	out := make([]*ModelMetadataResponse_TensorMetadata, len(ts))
	for i, t := range ts {
		out[i] = &ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape}
	}
	return out
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// elementSize is the raw size of one element of a fixed-size datatype.
func elementSize(dt string) int {
	switch dt {
	case oip.BOOL:
		return 1
	case oip.INT32, oip.FP32:
		return 4
	case oip.INT64, oip.FP64:
		return 8
	}
	return 0
}

// contentsField is the InferTensorContents field that carries dt.
func contentsField(dt string) string {
	switch dt {
	case oip.BOOL:
		return "bool_contents"
	case oip.INT32:
		return "int_contents"
	case oip.INT64:
		return "int64_contents"
	case oip.FP32:
		return "fp32_contents"
	case oip.FP64:
		return "fp64_contents"
	case oip.BYTES:
		return "bytes_contents"
	}
	return ""
}

// checkHeader checks a tensor's datatype and shape and returns its element
// count.
func checkHeader(kind, name, dt string, shape []int64) (int, error) {
	if dt == "" {
		return 0, invalid("%s %q: datatype is missing: set one of BOOL, INT32, INT64, FP32, FP64, BYTES", kind, name)
	}
	if contentsField(dt) == "" {
		return 0, invalid("%s %q: unsupported datatype %q: use one of BOOL, INT32, INT64, FP32, FP64, BYTES", kind, name, dt)
	}
	n, err := oip.Elements(shape)
	if err != nil {
		return 0, invalid("%s %q: %v", kind, name, err)
	}
	return n, nil
}

// setFields lists the non-empty fields of c.
func setFields(c *InferTensorContents) []string {
	var set []string
	for _, f := range []struct {
		name string
		n    int
	}{
		{"bool_contents", len(c.GetBoolContents())},
		{"int_contents", len(c.GetIntContents())},
		{"int64_contents", len(c.GetInt64Contents())},
		{"uint_contents", len(c.GetUintContents())},
		{"uint64_contents", len(c.GetUint64Contents())},
		{"fp32_contents", len(c.GetFp32Contents())},
		{"fp64_contents", len(c.GetFp64Contents())},
		{"bytes_contents", len(c.GetBytesContents())},
	} {
		if f.n > 0 {
			set = append(set, f.name)
		}
	}
	return set
}

// decodeContents reads a tensor from its typed contents; rawField names the
// raw alternative for error messages.
func decodeContents(kind, name, dt string, shape []int64, c *InferTensorContents, rawField string) (oip.Tensor, error) {
	t := oip.Tensor{Name: name, Datatype: dt, Shape: shape}
	n, err := checkHeader(kind, name, dt, shape)
	if err != nil {
		return t, err
	}
	field := contentsField(dt)
	for _, f := range setFields(c) {
		if f != field {
			return t, invalid("%s %q: datatype %s takes its data in contents.%s, but contents.%s is set", kind, name, dt, field, f)
		}
	}
	var got int
	switch dt {
	case oip.BOOL:
		got, t.Data = len(c.GetBoolContents()), nonNil(c.GetBoolContents())
	case oip.INT32:
		got, t.Data = len(c.GetIntContents()), nonNil(c.GetIntContents())
	case oip.INT64:
		got, t.Data = len(c.GetInt64Contents()), nonNil(c.GetInt64Contents())
	case oip.FP32:
		got, t.Data = len(c.GetFp32Contents()), nonNil(c.GetFp32Contents())
	case oip.FP64:
		got, t.Data = len(c.GetFp64Contents()), nonNil(c.GetFp64Contents())
	case oip.BYTES:
		b := c.GetBytesContents()
		got = len(b)
		s := make([]string, len(b))
		for i, e := range b {
			s[i] = string(e)
		}
		t.Data = s
	}
	if got != n {
		if got == 0 && c == nil {
			return t, invalid("%s %q has no data: shape %s holds %d elements; send them in contents.%s or %s", kind, name, oip.FormatShape(shape), n, field, rawField)
		}
		return t, invalid("%s %q: shape %s holds %d elements but contents.%s has %d", kind, name, oip.FormatShape(shape), n, field, got)
	}
	return t, nil
}

// nonNil returns s, or an empty slice for nil, so Data always has its type.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// decodeRaw reads a tensor from its raw bytes b; where names b in error
// messages.
func decodeRaw(kind, name, dt string, shape []int64, b []byte, where string) (oip.Tensor, error) {
	t := oip.Tensor{Name: name, Datatype: dt, Shape: shape}
	n, err := checkHeader(kind, name, dt, shape)
	if err != nil {
		return t, err
	}
	if dt == oip.BYTES {
		t.Data, err = decodeRawBytes(kind, name, n, b, where)
		return t, err
	}
	size := elementSize(dt)
	if len(b) != n*size {
		return t, invalid("%s %q: %s holds %d bytes but shape %s of %s needs %d (%d elements of %d bytes)", kind, name, where, len(b), oip.FormatShape(shape), dt, n*size, n, size)
	}
	le := binary.LittleEndian
	switch dt {
	case oip.BOOL:
		d := make([]bool, n)
		for i := range d {
			d[i] = b[i] != 0
		}
		t.Data = d
	case oip.INT32:
		d := make([]int32, n)
		for i := range d {
			d[i] = int32(le.Uint32(b[4*i:]))
		}
		t.Data = d
	case oip.INT64:
		d := make([]int64, n)
		for i := range d {
			d[i] = int64(le.Uint64(b[8*i:]))
		}
		t.Data = d
	case oip.FP32:
		d := make([]float32, n)
		for i := range d {
			d[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		}
		t.Data = d
	case oip.FP64:
		d := make([]float64, n)
		for i := range d {
			d[i] = math.Float64frombits(le.Uint64(b[8*i:]))
		}
		t.Data = d
	}
	return t, nil
}

// decodeRawBytes reads n length-prefixed BYTES elements that fill b exactly.
func decodeRawBytes(kind, name string, n int, b []byte, where string) ([]string, error) {
	out := make([]string, 0, min(n, len(b)/4))
	rest := b
	for len(rest) > 0 {
		if len(rest) < 4 {
			return nil, invalid("%s %q: %s ends in the middle of an element's 4-byte length prefix (element %d)", kind, name, where, len(out))
		}
		l := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(l) > uint64(len(rest)) {
			return nil, invalid("%s %q: %s element %d claims %d bytes but only %d remain", kind, name, where, len(out), l, len(rest))
		}
		if len(out) == n {
			return nil, invalid("%s %q: %s holds more than the %d BYTES elements its shape describes", kind, name, where, n)
		}
		out = append(out, string(rest[:l]))
		rest = rest[l:]
	}
	if len(out) != n {
		return nil, invalid("%s %q: %s holds %d BYTES elements but the shape describes %d", kind, name, where, len(out), n)
	}
	return out, nil
}

// encodeContents puts t's data in its typed contents field, sharing
// numeric slices.
func encodeContents(kind string, t oip.Tensor) (*InferTensorContents, error) {
	if err := checkTensor(kind, t); err != nil {
		return nil, err
	}
	c := &InferTensorContents{}
	switch d := t.Data.(type) {
	case []bool:
		c.BoolContents = d
	case []int32:
		c.IntContents = d
	case []int64:
		c.Int64Contents = d
	case []float32:
		c.Fp32Contents = d
	case []float64:
		c.Fp64Contents = d
	case []string:
		c.BytesContents = make([][]byte, len(d))
		for i, s := range d {
			c.BytesContents[i] = []byte(s)
		}
	}
	return c, nil
}

// encodeRaw lays t's data out in raw form.
func encodeRaw(kind string, t oip.Tensor) ([]byte, error) {
	if err := checkTensor(kind, t); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	switch d := t.Data.(type) {
	case []bool:
		b := make([]byte, len(d))
		for i, v := range d {
			if v {
				b[i] = 1
			}
		}
		return b, nil
	case []int32:
		b := make([]byte, 0, 4*len(d))
		for _, v := range d {
			b = le.AppendUint32(b, uint32(v))
		}
		return b, nil
	case []int64:
		b := make([]byte, 0, 8*len(d))
		for _, v := range d {
			b = le.AppendUint64(b, uint64(v))
		}
		return b, nil
	case []float32:
		b := make([]byte, 0, 4*len(d))
		for _, v := range d {
			b = le.AppendUint32(b, math.Float32bits(v))
		}
		return b, nil
	case []float64:
		b := make([]byte, 0, 8*len(d))
		for _, v := range d {
			b = le.AppendUint64(b, math.Float64bits(v))
		}
		return b, nil
	case []string:
		size := 0
		for _, s := range d {
			size += 4 + len(s)
		}
		b := make([]byte, 0, size)
		for _, s := range d {
			b = le.AppendUint32(b, uint32(len(s)))
			b = append(b, s...)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%s %q: data of type %T is not a tensor type", kind, t.Name, t.Data)
}

// checkTensor is oip.Tensor.Check with the tensor's kind ("input",
// "output") in front of the message, as an InvalidArgument status.
func checkTensor(kind string, t oip.Tensor) error {
	if err := t.Check(); err != nil {
		return invalid("%s %v", kind, err)
	}
	return nil
}
