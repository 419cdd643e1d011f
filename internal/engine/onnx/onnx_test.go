package onnx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
)

const (
	mlpModel  = "../../../examples/mlp-onnx/model.onnx"
	mlpGolden = "../../../examples/mlp-onnx/golden.json"
	typesOnnx = "testdata/types.onnx"
)

// requireLibrary returns the ONNX Runtime library the engine would load.
// Without it (or without cgo) the test is skipped, except in CI (CI=true)
// where it fails: CI installs the library with hack/install-onnxruntime.sh
// first.
func requireLibrary(t *testing.T) string {
	t.Helper()
	err := Available("")
	lib, _ := FindLibrary("")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	return lib
}

func loadModel(t *testing.T, path string) *Model {
	t.Helper()
	requireLibrary(t)
	m, err := Load(path, Options{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// golden is examples/mlp-onnx/golden.json: inputs and PyTorch's outputs.
type golden struct {
	Inputs  map[string]goldenTensor `json:"inputs"`
	Outputs map[string]goldenTensor `json:"outputs"`
}

type goldenTensor struct {
	Shape []int64   `json:"shape"`
	Data  []float64 `json:"data"`
}

func readGolden(t *testing.T) golden {
	t.Helper()
	data, err := os.ReadFile(mlpGolden)
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("%s: %v", mlpGolden, err)
	}
	return g
}

// rows returns rows [from, to) of a row-major [N, cols] tensor as float32.
func rows(gt goldenTensor, from, to int) []float32 {
	cols := int(gt.Shape[1])
	out := make([]float32, 0, (to-from)*cols)
	for _, v := range gt.Data[from*cols : to*cols] {
		out = append(out, float32(v))
	}
	return out
}

// closeTo reports whether got is within a relative 1e-5 of want (with an
// absolute floor of 1e-7 for values near zero).
func closeTo(want, got float32) bool {
	d := math.Abs(float64(want) - float64(got))
	return d <= 1e-5*math.Max(math.Abs(float64(want)), math.Abs(float64(got))) || d <= 1e-7
}

func checkGoldenRows(t *testing.T, g golden, out []oip.Tensor, from, to int) {
	t.Helper()
	if len(out) != 2 {
		t.Fatalf("got %d outputs, want 2 (logits, probabilities)", len(out))
	}
	for _, o := range out {
		want, ok := g.Outputs[o.Name]
		if !ok {
			t.Fatalf("unexpected output %q", o.Name)
		}
		if diff := cmp.Diff([]int64{int64(to - from), want.Shape[1]}, o.Shape); diff != "" {
			t.Errorf("output %q shape (-want +got):\n%s", o.Name, diff)
		}
		got, ok := o.Data.([]float32)
		if !ok || o.Datatype != oip.FP32 {
			t.Fatalf("output %q is %s %T, want FP32 []float32", o.Name, o.Datatype, o.Data)
		}
		w := rows(want, from, to)
		if len(got) != len(w) {
			t.Fatalf("output %q has %d values, want %d", o.Name, len(got), len(w))
		}
		for i := range w {
			if !closeTo(w[i], got[i]) {
				t.Errorf("output %q row %d col %d = %v, PyTorch gave %v", o.Name, from+i/int(want.Shape[1]), i%int(want.Shape[1]), got[i], w[i])
			}
		}
	}
}

// TestGolden checks that ONNX Runtime reproduces PyTorch's outputs for the
// recorded inputs, whatever the batch size.
func TestGolden(t *testing.T) {
	m := loadModel(t, mlpModel)
	g := readGolden(t)
	in := g.Inputs["input"]
	n := int(in.Shape[0])
	for _, batch := range []int{n, 1, 3} {
		t.Run(fmt.Sprintf("batch %d", batch), func(t *testing.T) {
			for from := 0; from < n; from += batch {
				to := min(from+batch, n)
				out, err := m.Predict(context.Background(), []oip.Tensor{{
					Name: "input", Datatype: oip.FP32, Shape: []int64{int64(to - from), in.Shape[1]}, Data: rows(in, from, to),
				}})
				if err != nil {
					t.Fatalf("Predict rows %d-%d: %v", from, to, err)
				}
				checkGoldenRows(t, g, out, from, to)
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	tests := []struct {
		path string
		want oip.ModelMetadata
	}{
		{mlpModel, oip.ModelMetadata{
			Name: "model", Platform: Platform,
			Inputs: []oip.TensorMetadata{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 64}}},
			Outputs: []oip.TensorMetadata{
				{Name: "logits", Datatype: oip.FP32, Shape: []int64{-1, 10}},
				{Name: "probabilities", Datatype: oip.FP32, Shape: []int64{-1, 10}},
			},
		}},
		{typesOnnx, oip.ModelMetadata{
			Name: "types", Platform: Platform,
			Inputs: []oip.TensorMetadata{
				{Name: "f32", Datatype: oip.FP32, Shape: []int64{-1, 2}},
				{Name: "f64", Datatype: oip.FP64, Shape: []int64{-1}},
				{Name: "i32", Datatype: oip.INT32, Shape: []int64{-1}},
				{Name: "i64", Datatype: oip.INT64, Shape: []int64{2, -1}},
				{Name: "b", Datatype: oip.BOOL, Shape: []int64{-1}},
				{Name: "s", Datatype: oip.BYTES, Shape: []int64{-1}},
			},
			Outputs: []oip.TensorMetadata{
				{Name: "f32_twice", Datatype: oip.FP32, Shape: []int64{-1, 2}},
				{Name: "f64_out", Datatype: oip.FP64, Shape: []int64{-1}},
				{Name: "i32_out", Datatype: oip.INT32, Shape: []int64{-1}},
				{Name: "i64_out", Datatype: oip.INT64, Shape: []int64{2, -1}},
				{Name: "b_not", Datatype: oip.BOOL, Shape: []int64{-1}},
				{Name: "s_upper", Datatype: oip.BYTES, Shape: []int64{-1}},
			},
		}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			m := loadModel(t, tt.path)
			if diff := cmp.Diff(tt.want, m.Metadata()); diff != "" {
				t.Errorf("Metadata (-want +got):\n%s", diff)
			}
		})
	}
}

// typesInputs is a valid request for testdata/types.onnx.
func typesInputs() []oip.Tensor {
	return []oip.Tensor{
		{Name: "f32", Datatype: oip.FP32, Shape: []int64{2, 2}, Data: []float32{1, 2.5, -3, 0}},
		{Name: "f64", Datatype: oip.FP64, Shape: []int64{2}, Data: []float64{math.Pi, -1e300}},
		{Name: "i32", Datatype: oip.INT32, Shape: []int64{3}, Data: []int32{math.MinInt32, 0, math.MaxInt32}},
		{Name: "i64", Datatype: oip.INT64, Shape: []int64{2, 1}, Data: []int64{math.MinInt64, math.MaxInt64}},
		{Name: "b", Datatype: oip.BOOL, Shape: []int64{2}, Data: []bool{true, false}},
		{Name: "s", Datatype: oip.BYTES, Shape: []int64{3}, Data: []string{"hello", "Grüße", ""}},
	}
}

// TestDatatypes runs every datatype ebb serves through a graph that
// computes something with each, so values must cross in both directions.
func TestDatatypes(t *testing.T) {
	m := loadModel(t, typesOnnx)
	got, err := m.Predict(context.Background(), typesInputs())
	if err != nil {
		t.Fatalf("Predict: %v", err)
	}
	want := []oip.Tensor{
		{Name: "f32_twice", Datatype: oip.FP32, Shape: []int64{2, 2}, Data: []float32{2, 5, -6, 0}},
		{Name: "f64_out", Datatype: oip.FP64, Shape: []int64{2}, Data: []float64{math.Pi, -1e300}},
		{Name: "i32_out", Datatype: oip.INT32, Shape: []int64{3}, Data: []int32{math.MinInt32, 0, math.MaxInt32}},
		{Name: "i64_out", Datatype: oip.INT64, Shape: []int64{2, 1}, Data: []int64{math.MinInt64, math.MaxInt64}},
		{Name: "b_not", Datatype: oip.BOOL, Shape: []int64{2}, Data: []bool{false, true}},
		{Name: "s_upper", Datatype: oip.BYTES, Shape: []int64{3}, Data: []string{"HELLO", "GRÜßE", ""}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Predict (-want +got):\n%s", diff)
	}
}

// TestNumericConversion feeds numeric inputs sent as another numeric
// datatype, which the replica server lets through.
func TestNumericConversion(t *testing.T) {
	m := loadModel(t, typesOnnx)
	in := typesInputs()
	in[0] = oip.Tensor{Name: "f32", Datatype: oip.INT64, Shape: []int64{1, 2}, Data: []int64{3, -4}}
	in[2] = oip.Tensor{Name: "i32", Datatype: oip.FP64, Shape: []int64{2}, Data: []float64{7, -8}}
	got, err := m.Predict(context.Background(), in)
	if err != nil {
		t.Fatalf("Predict: %v", err)
	}
	if diff := cmp.Diff([]float32{6, -8}, got[0].Data); diff != "" {
		t.Errorf("f32_twice (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int32{7, -8}, got[2].Data); diff != "" {
		t.Errorf("i32_out (-want +got):\n%s", diff)
	}
}

func TestPredictInputErrors(t *testing.T) {
	m := loadModel(t, typesOnnx)
	tests := []struct {
		name    string
		edit    func([]oip.Tensor) []oip.Tensor
		wantErr string
	}{
		{"missing input", func(in []oip.Tensor) []oip.Tensor { return in[1:] }, `missing input "f32"`},
		{"unknown input", func(in []oip.Tensor) []oip.Tensor {
			return append(in, oip.Tensor{Name: "extra", Datatype: oip.FP32, Shape: []int64{1}, Data: []float32{1}})
		}, `unknown input "extra"`},
		{"duplicate input", func(in []oip.Tensor) []oip.Tensor { return append(in, in[0]) }, `input "f32" appears more than once`},
		{"wrong rank", func(in []oip.Tensor) []oip.Tensor {
			in[0].Shape = []int64{4}
			return in
		}, `input "f32": shape [4] given, model expects [-1 2]`},
		{"wrong fixed dim", func(in []oip.Tensor) []oip.Tensor {
			in[3] = oip.Tensor{Name: "i64", Datatype: oip.INT64, Shape: []int64{1, 2}, Data: []int64{1, 2}}
			return in
		}, `input "i64": shape [1 2] given, model expects [2 -1]`},
		{"element count", func(in []oip.Tensor) []oip.Tensor {
			in[1].Shape = []int64{3}
			return in
		}, `input "f64": shape [3] holds 3 elements but data has 2`},
		{"string for bool", func(in []oip.Tensor) []oip.Tensor {
			in[4] = oip.Tensor{Name: "b", Datatype: oip.BYTES, Shape: []int64{1}, Data: []string{"true"}}
			return in
		}, `input "b": datatype BYTES given, model expects BOOL`},
		{"number for string", func(in []oip.Tensor) []oip.Tensor {
			in[5] = oip.Tensor{Name: "s", Datatype: oip.FP32, Shape: []int64{1}, Data: []float32{1}}
			return in
		}, `input "s": datatype FP32 given, model expects BYTES`},
		{"fraction for int", func(in []oip.Tensor) []oip.Tensor {
			in[2] = oip.Tensor{Name: "i32", Datatype: oip.FP32, Shape: []int64{2}, Data: []float32{1, 1.5}}
			return in
		}, `element 1 (1.5) is not a whole number`},
		{"int32 overflow", func(in []oip.Tensor) []oip.Tensor {
			in[2] = oip.Tensor{Name: "i32", Datatype: oip.INT64, Shape: []int64{1}, Data: []int64{math.MaxInt32 + 1}}
			return in
		}, `element 0 (2147483648) is not a whole number in range`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Predict(context.Background(), tt.edit(typesInputs()))
			var ie *engine.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("Predict error = %v (%T); want an *engine.InputError", err, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Predict error = %q; want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	requireLibrary(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.onnx")
	if err := os.WriteFile(garbage, []byte("this is not a protobuf"), 0o644); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(mlpModel)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.onnx")
	if err := os.WriteFile(truncated, whole[:len(whole)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		wantErr    []string
	}{
		{"missing", filepath.Join(dir, "nope.onnx"), []string{"nope.onnx", "no such file"}},
		{"directory", dir, []string{dir, "is a directory"}},
		{"garbage", garbage, []string{garbage, "not a model ONNX Runtime can load"}},
		{"truncated", truncated, []string{truncated, "not a model ONNX Runtime can load"}},
		{"sequence", "testdata/golden/sequence.onnx", []string{"testdata/golden/sequence.onnx", `input "seq" is a sequence, not a tensor`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Load(tt.path, Options{})
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded; want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load error = %q; want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestLoadOtherLibrary checks that a process keeps the library it loaded
// first.
func TestLoadOtherLibrary(t *testing.T) {
	lib := requireLibrary(t)
	loadModel(t, mlpModel)
	other := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	data, err := os.ReadFile(lib)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(mlpModel, Options{Library: other})
	if err == nil || !strings.Contains(err.Error(), "already loaded from "+lib) {
		t.Errorf("Load with another library: error = %v; want it to say the runtime is already loaded from %s", err, lib)
	}
}

func TestFindLibrary(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.WriteFile(lib, []byte("ELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.so")
	tests := []struct {
		name, explicit, env string
		want                string
		wantErr             []string
	}{
		{name: "flag", explicit: lib, env: missing, want: lib},
		{name: "env", env: lib, want: lib},
		{name: "flag missing", explicit: missing, wantErr: []string{missing, "--onnxruntime-lib", "does not exist", "hack/install-onnxruntime.sh"}},
		{name: "env missing", env: missing, wantErr: []string{missing, "$" + EnvLibrary, "hack/install-onnxruntime.sh"}},
		{name: "flag is a directory", explicit: dir, wantErr: []string{dir, "not a regular file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvLibrary, tt.env)
			got, err := FindLibrary(tt.explicit)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Errorf("FindLibrary(%q) = %q, %v; want %q", tt.explicit, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("FindLibrary(%q) = %q; want an error", tt.explicit, got)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("FindLibrary error = %q; want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestConcurrentPredict runs the golden rows from many goroutines at once,
// each with its own batch size, against one Model.
func TestConcurrentPredict(t *testing.T) {
	m := loadModel(t, mlpModel)
	g := readGolden(t)
	in := g.Inputs["input"]
	n := int(in.Shape[0])
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for iter := range 20 {
				from := (w + iter) % n
				to := from + 1 + (w+iter)%(n-from)
				out, err := m.Predict(context.Background(), []oip.Tensor{{
					Name: "input", Datatype: oip.FP32, Shape: []int64{int64(to - from), 64}, Data: rows(in, from, to),
				}})
				if err != nil {
					t.Errorf("Predict: %v", err)
					return
				}
				checkGoldenRows(t, g, out, from, to)
			}
		})
	}
	wg.Wait()
}

func TestPredictCancelledAndClosed(t *testing.T) {
	requireLibrary(t)
	m, err := Load(mlpModel, Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	in := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, 64}, Data: make([]float32, 64)}}
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := m.Predict(ctx, in); err != nil {
		t.Fatalf("Predict with a live context: %v", err)
	}
	cancel()
	if _, err := m.Predict(ctx, in); !errors.Is(err, context.Canceled) {
		t.Errorf("Predict with a cancelled context: error = %v; want context.Canceled", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := m.Predict(context.Background(), in); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Predict after Close: error = %v; want it to say the model is closed", err)
	}
}
