package oipgrpc

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// tensors covers every datatype but FP16 and BF16 (which have no typed
// field), an empty tensor, a scalar and NaN.
var tensors = []oip.Tensor{
	{Name: "b", Datatype: oip.BOOL, Shape: []int64{3}, Data: []bool{true, false, true}},
	{Name: "i8", Datatype: oip.INT8, Shape: []int64{3}, Data: []int8{math.MinInt8, 0, math.MaxInt8}},
	{Name: "i16", Datatype: oip.INT16, Shape: []int64{2}, Data: []int16{math.MinInt16, math.MaxInt16}},
	{Name: "u8", Datatype: oip.UINT8, Shape: []int64{2, 2}, Data: []uint8{0, 1, 254, 255}},
	{Name: "u16", Datatype: oip.UINT16, Shape: []int64{1}, Data: []uint16{math.MaxUint16}},
	{Name: "u32", Datatype: oip.UINT32, Shape: []int64{2}, Data: []uint32{0, math.MaxUint32}},
	{Name: "u64", Datatype: oip.UINT64, Shape: []int64{}, Data: []uint64{math.MaxUint64}},
	{Name: "i32", Datatype: oip.INT32, Shape: []int64{2, 2}, Data: []int32{1, -2, math.MaxInt32, math.MinInt32}},
	{Name: "i64", Datatype: oip.INT64, Shape: []int64{2}, Data: []int64{math.MaxInt64, -7}},
	{Name: "f32", Datatype: oip.FP32, Shape: []int64{1, 3}, Data: []float32{1.5, float32(math.NaN()), -0.25}},
	{Name: "f64", Datatype: oip.FP64, Shape: []int64{2, 1}, Data: []float64{math.Pi, -1e300}},
	{Name: "s", Datatype: oip.BYTES, Shape: []int64{3}, Data: []string{"héllo", "", "\x00\xff"}},
	{Name: "empty", Datatype: oip.FP32, Shape: []int64{0, 4}, Data: []float32{}},
}

// TestRoundTrip sends tensors through a marshalled request and response,
// typed and raw, and reads them back.
func TestRoundTrip(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(map[bool]string{false: "typed", true: "raw"}[raw], func(t *testing.T) {
			req := &ModelInferRequest{ModelName: "m"}
			if err := SetInputs(req, tensors, raw); err != nil {
				t.Fatalf("SetInputs: %v", err)
			}
			if got := len(req.RawInputContents) > 0; got != raw {
				t.Fatalf("raw_input_contents set = %v; want %v", got, raw)
			}
			req = remarshal(t, req)
			got, err := InputTensors(req)
			if err != nil {
				t.Fatalf("InputTensors: %v", err)
			}
			if diff := cmp.Diff(tensors, got, cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("inputs after a round trip (-want +got):\n%s", diff)
			}

			resp := &ModelInferResponse{ModelName: "m"}
			if err := SetOutputs(resp, tensors, raw); err != nil {
				t.Fatalf("SetOutputs: %v", err)
			}
			resp = remarshal(t, resp)
			got, err = OutputTensors(resp)
			if err != nil {
				t.Fatalf("OutputTensors: %v", err)
			}
			if diff := cmp.Diff(tensors, got, cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("outputs after a round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRawLayout pins the raw wire layout: little endian, 1 byte per BOOL,
// length-prefixed BYTES.
func TestRawLayout(t *testing.T) {
	tests := []struct {
		t    oip.Tensor
		want []byte
	}{
		{oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: []int64{2}, Data: []float32{1, -2}}, []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}},
		{oip.Tensor{Name: "x", Datatype: oip.INT32, Shape: []int64{1}, Data: []int32{258}}, []byte{2, 1, 0, 0}},
		{oip.Tensor{Name: "x", Datatype: oip.INT64, Shape: []int64{1}, Data: []int64{-1}}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{oip.Tensor{Name: "x", Datatype: oip.BOOL, Shape: []int64{2}, Data: []bool{false, true}}, []byte{0, 1}},
		{oip.Tensor{Name: "x", Datatype: oip.BYTES, Shape: []int64{2}, Data: []string{"ab", "c"}}, []byte{2, 0, 0, 0, 'a', 'b', 1, 0, 0, 0, 'c'}},
	}
	for _, tt := range tests {
		t.Run(tt.t.Datatype, func(t *testing.T) {
			req := &ModelInferRequest{}
			if err := SetInputs(req, []oip.Tensor{tt.t}, true); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, req.RawInputContents[0]); diff != "" {
				t.Errorf("raw bytes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInputTensorsErrors(t *testing.T) {
	f32 := func(n int) []byte { return make([]byte, 4*n) }
	in := func(name, dt string, shape []int64, c *InferTensorContents) *ModelInferRequest_InferInputTensor {
		return &ModelInferRequest_InferInputTensor{Name: name, Datatype: dt, Shape: shape, Contents: c}
	}
	tests := []struct {
		name    string
		req     *ModelInferRequest
		wantErr string
	}{
		{
			name:    "typed count too small",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{2, 3}, &InferTensorContents{Fp32Contents: []float32{1, 2}})}},
			wantErr: `input "x": shape [2,3] holds 6 elements but contents.fp32_contents has 2`,
		},
		{
			name:    "typed count too large",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "INT64", []int64{1}, &InferTensorContents{Int64Contents: []int64{1, 2}})}},
			wantErr: `holds 1 elements but contents.int64_contents has 2`,
		},
		{
			name:    "wrong field",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{1}, &InferTensorContents{Fp64Contents: []float64{1}})}},
			wantErr: `datatype FP32 takes its data in contents.fp32_contents, but contents.fp64_contents is set`,
		},
		{
			name:    "no data",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{1, 2}, nil)}},
			wantErr: `input "x" has no data`,
		},
		{
			name:    "unsupported datatype",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "FP8", []int64{1}, nil)}},
			wantErr: `unsupported datatype "FP8"`,
		},
		{
			name:    "fp16 typed",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "FP16", []int64{1}, &InferTensorContents{Fp32Contents: []float32{1}})}},
			wantErr: `input "x": datatype FP16 has no typed field in InferTensorContents: send its data in raw_input_contents (2 bytes per element`,
		},
		{
			name:    "int8 out of range",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "INT8", []int64{2}, &InferTensorContents{IntContents: []int32{1, 128}})}},
			wantErr: `input "x": contents.int_contents element 1 is 128, out of range for INT8`,
		},
		{
			name:    "uint16 out of range",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "UINT16", []int64{1}, &InferTensorContents{UintContents: []uint32{70000}})}},
			wantErr: `element 0 is 70000, out of range for UINT16`,
		},
		{
			name:    "uint8 in int_contents",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "UINT8", []int64{1}, &InferTensorContents{IntContents: []int32{1}})}},
			wantErr: `datatype UINT8 takes its data in contents.uint_contents, but contents.int_contents is set`,
		},
		{
			name:    "raw bool not 0 or 1",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("b", "BOOL", []int64{1}, nil)}, RawInputContents: [][]byte{{7}}},
			wantErr: `input "b": raw_input_contents[0]: byte 0 is 7, and a BOOL element must be 0 (false) or 1 (true)`,
		},
		{
			name:    "raw fp16 short",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("h", "FP16", []int64{2}, nil)}, RawInputContents: [][]byte{{0, 0, 0}}},
			wantErr: `input "h": raw_input_contents[0] holds 3 bytes but shape [2] of FP16 needs 4 (2 elements of 2 bytes)`,
		},
		{
			name:    "missing datatype",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "", []int64{1}, nil)}},
			wantErr: `datatype is missing`,
		},
		{
			name:    "negative dimension",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{-1}, nil)}},
			wantErr: `negative dimension`,
		},
		{
			name:    "raw too short",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{1, 3}, nil)}, RawInputContents: [][]byte{f32(2)}},
			wantErr: `input "x": raw_input_contents[0] holds 8 bytes but shape [1,3] of FP32 needs 12`,
		},
		{
			name:    "raw not a multiple",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "INT64", []int64{1}, nil)}, RawInputContents: [][]byte{make([]byte, 9)}},
			wantErr: `holds 9 bytes but shape [1] of INT64 needs 8`,
		},
		{
			name: "raw count differs from inputs",
			req: &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{1}, nil), in("y", "FP32", []int64{1}, nil)},
				RawInputContents: [][]byte{f32(1)}},
			wantErr: `raw_input_contents has 1 entries but the request has 2 inputs`,
		},
		{
			name: "raw and typed mixed",
			req: &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{1}, &InferTensorContents{Fp32Contents: []float32{1}})},
				RawInputContents: [][]byte{f32(1)}},
			wantErr: `sets contents although the request uses raw_input_contents`,
		},
		{
			name:    "raw bytes truncated prefix",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("s", "BYTES", []int64{2}, nil)}, RawInputContents: [][]byte{{1, 0, 0, 0, 'a', 1, 0}}},
			wantErr: `raw_input_contents[0]: the data ends in the middle of the 4-byte length of BYTES element 1`,
		},
		{
			name:    "raw bytes element overruns",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("s", "BYTES", []int64{1}, nil)}, RawInputContents: [][]byte{{9, 0, 0, 0, 'a'}}},
			wantErr: `element 0 claims 9 bytes but only 1 remain`,
		},
		{
			name:    "raw bytes too few elements",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("s", "BYTES", []int64{2}, nil)}, RawInputContents: [][]byte{{1, 0, 0, 0, 'a'}}},
			wantErr: `holds 1 BYTES elements but the shape describes 2`,
		},
		{
			name:    "raw bytes too many elements",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("s", "BYTES", []int64{1}, nil)}, RawInputContents: [][]byte{{1, 0, 0, 0, 'a', 0, 0, 0, 0}}},
			wantErr: `holds more than the 1 BYTES elements`,
		},
		{
			name:    "huge shape with little data",
			req:     &ModelInferRequest{Inputs: []*ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{1 << 20, 1 << 20}, nil)}, RawInputContents: [][]byte{f32(1)}},
			wantErr: `too large`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := InputTensors(tt.req)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("InputTensors error = %v (code %v); want InvalidArgument", err, status.Code(err))
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.wantErr) {
				t.Errorf("message = %q; want it to contain %q", msg, tt.wantErr)
			}
		})
	}
}

func TestOutputTensorsErrors(t *testing.T) {
	resp := &ModelInferResponse{
		Outputs:           []*ModelInferResponse_InferOutputTensor{{Name: "y", Datatype: "FP64", Shape: []int64{2}}},
		RawOutputContents: [][]byte{make([]byte, 8)},
	}
	_, err := OutputTensors(resp)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `output "y": raw_output_contents[0] holds 8 bytes`) {
		t.Errorf("OutputTensors error = %v; want InvalidArgument about output y's size", err)
	}
}

func TestSetOutputsRejectsMalformedTensors(t *testing.T) {
	tests := []struct {
		name    string
		t       oip.Tensor
		wantErr string
	}{
		{"wrong go type", oip.Tensor{Name: "y", Datatype: oip.FP32, Shape: []int64{1}, Data: []float64{1}}, `output "y": data of type []float64 does not match datatype FP32`},
		{"wrong count", oip.Tensor{Name: "y", Datatype: oip.INT32, Shape: []int64{3}, Data: []int32{1}}, `shape [3] holds 3 elements but data has 1`},
		{"unknown datatype", oip.Tensor{Name: "y", Datatype: "FP8", Shape: []int64{1}, Data: []uint8{1}}, `unsupported datatype "FP8"`},
		{"go type of another datatype", oip.Tensor{Name: "y", Datatype: oip.INT8, Shape: []int64{1}, Data: []uint8{1}}, `data of type []uint8 does not match datatype INT8 ([]int8)`},
	}
	for _, tt := range tests {
		for _, raw := range []bool{false, true} {
			err := SetOutputs(&ModelInferResponse{}, []oip.Tensor{tt.t}, raw)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s (raw %v): SetOutputs error = %v; want it to contain %q", tt.name, raw, err, tt.wantErr)
			}
		}
	}
}

// TestTritonClientLayout decodes a request laid out by hand as Triton's
// clients build it (raw FP32 and length-prefixed BYTES).
func TestTritonClientLayout(t *testing.T) {
	x := binary.LittleEndian.AppendUint32(nil, math.Float32bits(0.5))
	x = binary.LittleEndian.AppendUint32(x, math.Float32bits(-3))
	s := binary.LittleEndian.AppendUint32(nil, 3)
	s = append(s, "abc"...)
	req := &ModelInferRequest{
		ModelName: "m",
		Inputs: []*ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{1, 2}},
			{Name: "s", Datatype: "BYTES", Shape: []int64{1}},
		},
		RawInputContents: [][]byte{x, s},
	}
	got, err := InputTensors(req)
	if err != nil {
		t.Fatal(err)
	}
	want := []oip.Tensor{
		{Name: "x", Datatype: "FP32", Shape: []int64{1, 2}, Data: []float32{0.5, -3}},
		{Name: "s", Datatype: "BYTES", Shape: []int64{1}, Data: []string{"abc"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("InputTensors (-want +got):\n%s", diff)
	}
}

func TestMetadataResponse(t *testing.T) {
	m := oip.ModelMetadata{
		Name: "m", Versions: []string{"1"}, Platform: "xgboost",
		Inputs:  []oip.TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 10}}},
		Outputs: []oip.TensorMetadata{{Name: "y", Datatype: "FP32", Shape: []int64{-1}}},
	}
	got := remarshal(t, MetadataResponse(m))
	want := &ModelMetadataResponse{
		Name: "m", Versions: []string{"1"}, Platform: "xgboost",
		Inputs:  []*ModelMetadataResponse_TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 10}}},
		Outputs: []*ModelMetadataResponse_TensorMetadata{{Name: "y", Datatype: "FP32", Shape: []int64{-1}}},
	}
	if !proto.Equal(want, got) {
		t.Errorf("MetadataResponse = %v; want %v", got, want)
	}
}

// remarshal sends m through the wire format.
func remarshal[M proto.Message](t *testing.T, m M) M {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := m.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHalfPrecisionGoesRaw: FP16 and BF16 have no typed field, so a message
// carrying one is sent raw whatever was asked, and reads back the same.
func TestHalfPrecisionGoesRaw(t *testing.T) {
	ts := []oip.Tensor{
		{Name: "h", Datatype: oip.FP16, Shape: []int64{2}, Data: []oip.Float16{oip.Float16From(1.5), 0x7c00}},
		{Name: "bf", Datatype: oip.BF16, Shape: []int64{1}, Data: []oip.BFloat16{oip.BFloat16From(-2)}},
		{Name: "i", Datatype: oip.INT32, Shape: []int64{1}, Data: []int32{3}},
	}
	req := &ModelInferRequest{}
	if err := SetInputs(req, ts, false); err != nil {
		t.Fatal(err)
	}
	if len(req.RawInputContents) != 3 {
		t.Fatalf("raw_input_contents has %d entries; want all 3 inputs raw", len(req.RawInputContents))
	}
	got, err := InputTensors(remarshal(t, req))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ts, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	resp := &ModelInferResponse{}
	if err := SetOutputs(resp, ts, false); err != nil {
		t.Fatal(err)
	}
	if got, err := OutputTensors(remarshal(t, resp)); err != nil || !cmp.Equal(ts, got) {
		t.Errorf("OutputTensors = %v, %v", got, err)
	}
}

func TestMetadataShapes(t *testing.T) {
	got := MetadataResponse(oip.ModelMetadata{Inputs: []oip.TensorMetadata{
		{Name: "any", Datatype: oip.FP32},
		{Name: "scalar", Datatype: oip.BYTES, Shape: []int64{}},
		{Name: "batch", Datatype: oip.UINT8, Shape: []int64{-1, 3}},
	}})
	want := [][]int64{{-1}, {}, {-1, 3}}
	for i, in := range got.Inputs {
		if !cmp.Equal(want[i], in.Shape, cmpopts.EquateEmpty()) {
			t.Errorf("input %s: shape %v, want %v", in.Name, in.Shape, want[i])
		}
	}
}
