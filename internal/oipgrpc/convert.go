package oipgrpc

import (
	"fmt"

	"github.com/ebb-ml/ebb/internal/oip"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// InputTensors returns req's inputs as tensors in request order, each with
// a flat Data slice of the Go type its datatype implies (see oip.Tensor),
// read from the input's typed contents or from req.RawInputContents.
//
// Every datatype of the protocol is read (see oip.Datatypes). INT8 and
// INT16 arrive in int_contents and UINT8 to UINT32 in uint_contents, and
// must fit their datatype; FP16 and BF16 have no typed field and must come
// as raw contents.
//
// It returns a gRPC status error with code InvalidArgument, naming the input,
// when a datatype is missing or unknown, a shape is invalid, the data is
// missing, sits in another datatype's field, holds a value out of the
// datatype's range or a different number of elements than the shape, or
// when raw and typed contents are mixed. Raw contents are checked against
// the shape before anything is allocated.
func InputTensors(req *ModelInferRequest) ([]oip.Tensor, error) {
	raw := req.GetRawInputContents()
	inputs := req.GetInputs()
	if len(raw) > 0 && len(raw) != len(inputs) {
		return nil, invalid("raw_input_contents has %d entries but the request has %d inputs: send one entry per input, in the order of inputs", len(raw), len(inputs))
	}
	out := make([]oip.Tensor, len(inputs))
	for i, in := range inputs {
		var err error
		shape := scalarShape(in.GetShape())
		if len(raw) > 0 {
			if in.GetContents() != nil {
				return nil, invalid("input %q sets contents although the request uses raw_input_contents: send every input's data one way", in.GetName())
			}
			out[i], err = decodeRaw("input", in.GetName(), in.GetDatatype(), shape, raw[i], fmt.Sprintf("raw_input_contents[%d]", i))
		} else {
			out[i], err = decodeContents("input", in.GetName(), in.GetDatatype(), shape, in.GetContents(), "raw_input_contents")
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
		shape := scalarShape(o.GetShape())
		if len(raw) > 0 {
			if o.GetContents() != nil {
				return nil, invalid("output %q sets contents although the response uses raw_output_contents", o.GetName())
			}
			out[i], err = decodeRaw("output", o.GetName(), o.GetDatatype(), shape, raw[i], fmt.Sprintf("raw_output_contents[%d]", i))
		} else {
			out[i], err = decodeContents("output", o.GetName(), o.GetDatatype(), shape, o.GetContents(), "raw_output_contents")
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SetInputs sets req.Inputs from ts, with the data in typed contents, or in
// req.RawInputContents when raw is true or when some tensor's datatype
// (FP16, BF16) has no typed field. It fails when a tensor's Data does not
// have the Go type of its datatype or the element count of its shape.
func SetInputs(req *ModelInferRequest, ts []oip.Tensor, raw bool) error {
	raw = raw || needsRaw(ts)
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
// Typed contents share the tensors' numeric slices of the field's own type
// rather than copy them, so ts must not change until resp is sent.
func SetOutputs(resp *ModelInferResponse, ts []oip.Tensor, raw bool) error {
	raw = raw || needsRaw(ts)
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

// MetadataResponse converts model metadata to its gRPC message. A tensor
// declared without a shape shows as [-1], a scalar as an empty shape.
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
		shape := t.Shape
		if shape == nil {
			shape = oip.AnyShape() // declared without a shape, see oip.TensorMetadata
		}
		out[i] = &ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: shape}
	}
	return out
}

// scalarShape returns shape, or the empty shape of a scalar for nil:
// protobuf cannot tell an empty repeated field from an absent one, and a
// tensor always has a shape.
func scalarShape(shape []int64) []int64 {
	if shape == nil {
		return []int64{}
	}
	return shape
}

// needsRaw reports whether some tensor's datatype has no typed contents
// field, so that the message must carry all of them raw.
func needsRaw(ts []oip.Tensor) bool {
	for _, t := range ts {
		if oip.Known(t.Datatype) && contentsField(t.Datatype) == "" {
			return true
		}
	}
	return false
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// checkHeader checks a tensor's datatype and shape and returns its element
// count.
func checkHeader(kind, name, dt string, shape []int64) (int, error) {
	if dt == "" {
		return 0, invalid("%s %q: datatype is missing: set one of %s", kind, name, datatypeList)
	}
	if !oip.Known(dt) {
		return 0, invalid("%s %q: %s", kind, name, oip.DatatypeError(dt))
	}
	n, err := oip.Elements(shape)
	if err != nil {
		return 0, invalid("%s %q: %v", kind, name, err)
	}
	return n, nil
}

// decodeRaw reads a tensor from its raw bytes b; where names b in error
// messages. The length of b is checked against the shape first.
func decodeRaw(kind, name, dt string, shape []int64, b []byte, where string) (oip.Tensor, error) {
	n, err := checkHeader(kind, name, dt, shape)
	if err != nil {
		return oip.Tensor{Name: name, Datatype: dt, Shape: shape}, err
	}
	if size := oip.ElementSize(dt); size > 0 && len(b) != n*size {
		return oip.Tensor{Name: name, Datatype: dt, Shape: shape}, invalid("%s %q: %s holds %d bytes but shape %s of %s needs %d (%d elements of %d bytes)", kind, name, where, len(b), oip.FormatShape(shape), dt, n*size, n, size)
	}
	t, err := oip.FromRaw(dt, shape, b)
	t.Name = name
	if err != nil {
		return t, invalid("%s %q: %s: %v", kind, name, where, err)
	}
	return t, nil
}

// encodeRaw lays t's data out in raw form.
func encodeRaw(kind string, t oip.Tensor) ([]byte, error) {
	if err := checkTensor(kind, t); err != nil {
		return nil, err
	}
	return oip.RawBytes(t)
}

// checkTensor is oip.Tensor.Check with the tensor's kind ("input",
// "output") in front of the message, as an InvalidArgument status.
func checkTensor(kind string, t oip.Tensor) error {
	if err := t.Check(); err != nil {
		return invalid("%s %v", kind, err)
	}
	return nil
}
