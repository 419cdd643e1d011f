package onnx

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

// The models of testdata/golden are written by hack/gen-onnx-golden.py;
// each is a case of issue 11 that once broke this engine.
func goldenModel(name string) string { return filepath.Join("testdata", "golden", name+".onnx") }

func TestGoldenMetadata(t *testing.T) {
	md := func(name, dt string, shape ...int64) oip.TensorMetadata {
		if shape == nil {
			shape = []int64{}
		}
		return oip.TensorMetadata{Name: name, Datatype: dt, Shape: shape}
	}
	pair := func(name, dt string) oip.TensorMetadata { return md(name, dt, -1, 2) }
	tests := []struct {
		model           string
		inputs, outputs []oip.TensorMetadata
	}{
		{"scalars", []oip.TensorMetadata{md("x", oip.FP32, -1, 3)},
			[]oip.TensorMetadata{md("sum", oip.FP32), md("mean", oip.FP32), md("twice", oip.FP32, -1, 3)}},
		{"no_inputs", []oip.TensorMetadata{}, []oip.TensorMetadata{md("answer", oip.INT64), md("seq", oip.FP32, 3)}},
		{"any_shape", []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32}},
			[]oip.TensorMetadata{{Name: "y", Datatype: oip.FP32}, md("n", oip.INT64)}},
		{"scalar_string", []oip.TensorMetadata{md("s", oip.BYTES)}, []oip.TensorMetadata{md("echo", oip.BYTES)}},
		{"datatypes",
			[]oip.TensorMetadata{pair("u8", oip.UINT8), pair("i8", oip.INT8), pair("i16", oip.INT16), pair("u16", oip.UINT16),
				pair("u32", oip.UINT32), pair("u64", oip.UINT64), pair("f16", oip.FP16), pair("bf16", oip.BF16)},
			[]oip.TensorMetadata{pair("u8_out", oip.UINT8), pair("i8_out", oip.INT8), pair("i16_out", oip.INT16), pair("u16_out", oip.UINT16),
				pair("u32_out", oip.UINT32), pair("u64_out", oip.UINT64), pair("f16_out", oip.FP16), pair("bf16_out", oip.BF16),
				pair("u8_f32", oip.FP32), pair("f16_f32", oip.FP32), pair("bf16_f32", oip.FP32)}},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			m := loadModel(t, goldenModel(tt.model))
			got := m.Metadata()
			// nil (declared without a shape) and [] (a scalar) differ.
			if diff := cmp.Diff(tt.inputs, got.Inputs); diff != "" {
				t.Errorf("inputs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.outputs, got.Outputs); diff != "" {
				t.Errorf("outputs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestScalarOutputs: rank-0 outputs (x.sum(), x.mean()) once failed every
// request with a nil-pointer panic.
func TestScalarOutputs(t *testing.T) {
	m := loadModel(t, goldenModel("scalars"))
	x := oip.Tensor{Name: "x", Datatype: oip.FP32, Shape: []int64{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}}
	got, err := m.Predict(context.Background(), []oip.Tensor{x})
	if err != nil {
		t.Fatal(err)
	}
	want := []oip.Tensor{
		{Name: "sum", Datatype: oip.FP32, Shape: []int64{}, Data: []float32{21}},
		{Name: "mean", Datatype: oip.FP32, Shape: []int64{}, Data: []float32{3.5}},
		{Name: "twice", Datatype: oip.FP32, Shape: []int64{2, 3}, Data: []float32{2, 4, 6, 8, 10, 12}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestNoInputs: a model without inputs once panicked (index out of range).
func TestNoInputs(t *testing.T) {
	m := loadModel(t, goldenModel("no_inputs"))
	for range 2 {
		got, err := m.Predict(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []oip.Tensor{
			{Name: "answer", Datatype: oip.INT64, Shape: []int64{}, Data: []int64{42}},
			{Name: "seq", Datatype: oip.FP32, Shape: []int64{3}, Data: []float32{1, 2, 3}},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	}
	_, err := m.Predict(context.Background(), []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{1}, Data: []float32{1}}})
	var ie *engine.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), `unknown input "x": the model takes none`) {
		t.Errorf("an input for a model without any: error = %v", err)
	}
}

// TestAnyShape: an input declared without a shape takes every shape.
func TestAnyShape(t *testing.T) {
	m := loadModel(t, goldenModel("any_shape"))
	for _, shape := range [][]int64{{}, {3}, {2, 1, 2}, {0, 5}} {
		n, _ := oip.Elements(shape)
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(i) - 1.5
		}
		got, err := m.Predict(context.Background(), []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: shape, Data: data}})
		if err != nil {
			t.Fatalf("shape %v: %v", shape, err)
		}
		want := []oip.Tensor{
			{Name: "y", Datatype: oip.FP32, Shape: shape, Data: data},
			{Name: "n", Datatype: oip.INT64, Shape: []int64{}, Data: []int64{int64(n)}},
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("shape %v (-want +got):\n%s", shape, diff)
		}
	}
}

// TestScalarString: a scalar string input, once refused with shape [] and
// shape [1] alike.
func TestScalarString(t *testing.T) {
	m := loadModel(t, goldenModel("scalar_string"))
	got, err := m.Predict(context.Background(), []oip.Tensor{{Name: "s", Datatype: oip.BYTES, Shape: []int64{}, Data: []string{"Grüße"}}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]oip.Tensor{{Name: "echo", Datatype: oip.BYTES, Shape: []int64{}, Data: []string{"Grüße"}}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	_, err = m.Predict(context.Background(), []oip.Tensor{{Name: "s", Datatype: oip.BYTES, Shape: []int64{1}, Data: []string{"a"}}})
	if err == nil || !strings.Contains(err.Error(), `input "s": shape [1] given, model expects []`) {
		t.Errorf("shape [1] for a scalar: error = %v", err)
	}
	_, err = m.Predict(context.Background(), []oip.Tensor{{Name: "s", Datatype: oip.BYTES, Shape: []int64{}, Data: []string{"a\x00b"}}})
	if err == nil || !strings.Contains(err.Error(), "NUL byte") {
		t.Errorf("a NUL byte: error = %v", err)
	}
}

// datatypesInputs is a request for datatypes.onnx with each type's
// extreme values.
func datatypesInputs() []oip.Tensor {
	f16 := []oip.Float16{oip.Float16From(0.5), oip.Float16From(-65504), oip.Float16From(float32(math.Inf(1))), oip.Float16From(1e-7)}
	bf16 := []oip.BFloat16{oip.BFloat16From(3), oip.BFloat16From(-1e38), oip.BFloat16From(float32(math.NaN())), 0}
	shape := []int64{2, 2}
	return []oip.Tensor{
		{Name: "u8", Datatype: oip.UINT8, Shape: shape, Data: []uint8{0, 1, 128, 255}},
		{Name: "i8", Datatype: oip.INT8, Shape: shape, Data: []int8{-128, -1, 0, 127}},
		{Name: "i16", Datatype: oip.INT16, Shape: shape, Data: []int16{-32768, -1, 0, 32767}},
		{Name: "u16", Datatype: oip.UINT16, Shape: shape, Data: []uint16{0, 1, 2, 65535}},
		{Name: "u32", Datatype: oip.UINT32, Shape: shape, Data: []uint32{0, 1, 2, math.MaxUint32}},
		{Name: "u64", Datatype: oip.UINT64, Shape: shape, Data: []uint64{0, 1, 1 << 63, math.MaxUint64}},
		{Name: "f16", Datatype: oip.FP16, Shape: shape, Data: f16},
		{Name: "bf16", Datatype: oip.BF16, Shape: shape, Data: bf16},
	}
}

// TestNewDatatypes runs every datatype the engine once refused at load
// through the graph and back, and across a Cast to FP32.
func TestNewDatatypes(t *testing.T) {
	m := loadModel(t, goldenModel("datatypes"))
	in := datatypesInputs()
	got, err := m.Predict(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	var want []oip.Tensor
	for _, t := range in {
		t.Name += "_out"
		want = append(want, t)
	}
	for _, i := range []int{0, 6, 7} {
		f, _ := in[i].Float32s()
		want = append(want, oip.Tensor{Name: in[i].Name + "_f32", Datatype: oip.FP32, Shape: in[i].Shape, Data: f})
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestNaNInf: special values pass through and come out of computations.
func TestNaNInf(t *testing.T) {
	m := loadModel(t, goldenModel("nan_inf"))
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	got, err := m.Predict(context.Background(), []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{5}, Data: []float32{nan, inf, -inf, 0, -1}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []oip.Tensor{
		{Name: "same", Datatype: oip.FP32, Shape: []int64{5}, Data: []float32{nan, inf, -inf, 0, -1}},
		{Name: "log", Datatype: oip.FP32, Shape: []int64{5}, Data: []float32{nan, inf, nan, -inf, nan}},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestRequestedOutputs: only the outputs asked for are fetched from ONNX
// Runtime and returned, in the graph's order.
func TestRequestedOutputs(t *testing.T) {
	m := loadModel(t, goldenModel("outputs"))
	x := []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{2}, Data: []float32{1, 2}}}
	ok := oip.Tensor{Name: "ok", Datatype: oip.FP32, Shape: []int64{2}, Data: []float32{1, 2}}
	twice := oip.Tensor{Name: "twice", Datatype: oip.FP32, Shape: []int64{2}, Data: []float32{2, 4}}
	for _, tt := range []struct {
		names []string
		want  []oip.Tensor
	}{
		{[]string{"ok"}, []oip.Tensor{ok}},
		{[]string{"twice"}, []oip.Tensor{twice}},
		{[]string{"twice", "ok"}, []oip.Tensor{ok, twice}},
		{nil, []oip.Tensor{ok, twice}},
	} {
		got, err := m.PredictOutputs(context.Background(), x, tt.names)
		if err != nil {
			t.Fatalf("PredictOutputs(%v): %v", tt.names, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("PredictOutputs(%v) (-want +got):\n%s", tt.names, diff)
		}
	}
	if _, err := m.PredictOutputs(context.Background(), x, []string{"nope"}); err == nil || !strings.Contains(err.Error(), `unknown output "nope"`) {
		t.Errorf("unknown output: error = %v", err)
	}
}

// TestRunFailure: a failure inside ONNX Runtime is reported with its own
// message and the inputs it ran on, never as a Go panic.
func TestRunFailure(t *testing.T) {
	m := loadModel(t, goldenModel("fails"))
	_, err := m.Predict(context.Background(), []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{2}, Data: []float32{1, 2}}})
	if err == nil {
		t.Fatal("Predict succeeded")
	}
	var ie *engine.InputError
	if errors.As(err, &ie) {
		t.Errorf("a failure in the graph is an *engine.InputError: %v", err)
	}
	for _, want := range []string{"testdata/golden/fails.onnx", `ONNX Runtime failed on inputs "x" (FP32 [2])`, "Reshape", "got -5"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	for _, panicText := range []string{"panic", "runtime error", "nil pointer"} {
		if strings.Contains(err.Error(), panicText) {
			t.Errorf("error %q reads like a Go panic", err)
		}
	}
}

// TestNumericConversionToNewTypes feeds other numeric datatypes to the new
// ones, as the replica server lets clients.
func TestNumericConversionToNewTypes(t *testing.T) {
	m := loadModel(t, goldenModel("datatypes"))
	in := datatypesInputs()
	in[0] = oip.Tensor{Name: "u8", Datatype: oip.FP64, Shape: []int64{2, 2}, Data: []float64{0, 1, 128, 255}}
	in[6] = oip.Tensor{Name: "f16", Datatype: oip.FP32, Shape: []int64{2, 2}, Data: []float32{0.5, -65504, float32(math.Inf(1)), 1e-7}}
	got, err := m.PredictOutputs(context.Background(), in, []string{"u8_out", "f16_out"})
	if err != nil {
		t.Fatal(err)
	}
	want := datatypesInputs()
	if diff := cmp.Diff(want[0].Data, got[0].Data); diff != "" {
		t.Errorf("u8_out (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[6].Data, got[1].Data); diff != "" {
		t.Errorf("f16_out (-want +got):\n%s", diff)
	}
	in[0].Data = []float64{0, 1, 128, 256}
	_, err = m.Predict(context.Background(), in)
	var ie *engine.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), `input "u8": FP64 data for a UINT8 input: element 3 (256) is not a whole number in range for UINT8`) {
		t.Errorf("256 for UINT8: error = %v", err)
	}
}

func TestLoadRefusesUnservedKinds(t *testing.T) {
	requireLibrary(t)
	_, err := Load(goldenModel("sequence"), Options{})
	if err == nil || !strings.Contains(err.Error(), `input "seq" is a sequence, not a tensor`) {
		t.Errorf("Load of a sequence input: error = %v", err)
	}
}
