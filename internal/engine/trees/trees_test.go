package trees

import (
	"context"
	"encoding/json"
	"errors"
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

// golden is a file written by testdata/gen.py or examples/diabetes/train.py:
// input rows (null for missing) and xgboost's predictions, flat.
type golden struct {
	Model       string       `json:"model"`
	Objective   string       `json:"objective"`
	NumFeature  int          `json:"num_feature"`
	Inputs      [][]*float64 `json:"inputs"`
	Predictions []float64    `json:"predictions"`
}

func readGolden(t testing.TB, path string) golden {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(g.Inputs) == 0 || len(g.Predictions) == 0 {
		t.Fatalf("%s holds no rows or no predictions", path)
	}
	return g
}

// tensor flattens g's rows into an FP32 input tensor, NaN for null.
func (g golden) tensor() oip.Tensor {
	x := make([]float32, 0, len(g.Inputs)*g.NumFeature)
	for _, row := range g.Inputs {
		for _, v := range row {
			if v == nil {
				x = append(x, float32(math.NaN()))
			} else {
				x = append(x, float32(*v))
			}
		}
	}
	return oip.Tensor{Name: InputName, Datatype: oip.FP32, Shape: []int64{int64(len(g.Inputs)), int64(g.NumFeature)}, Data: x}
}

// near reports whether got is within relative error 1e-6 of want, or
// within 1e-6 absolute for values near 0.
func near(got float32, want float64) bool {
	d := math.Abs(float64(got) - want)
	return d <= 1e-6*math.Abs(want) || d <= 1e-6
}

// checkGolden runs the model of g (in dir) on g's inputs and compares with
// xgboost's predictions.
func checkGolden(t *testing.T, dir string, g golden) {
	t.Helper()
	m, err := Load(filepath.Join(dir, g.Model))
	if err != nil {
		t.Fatal(err)
	}
	if m.Objective() != g.Objective || m.NumFeature() != g.NumFeature {
		t.Fatalf("model reports objective %q with %d features, golden says %q with %d", m.Objective(), m.NumFeature(), g.Objective, g.NumFeature)
	}
	out, err := m.Predict(context.Background(), []oip.Tensor{g.tensor()})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("Predict returned %d tensors, want 1", len(out))
	}
	got := out[0].Data.([]float32)
	if len(got) != len(g.Predictions) {
		t.Fatalf("Predict returned %d values, want %d", len(got), len(g.Predictions))
	}
	rows := len(g.Inputs)
	wantShape := []int64{int64(rows)}
	if len(m.Metadata().Outputs[0].Shape) == 2 {
		wantShape = append(wantShape, int64(len(got)/rows))
	}
	if diff := cmp.Diff(wantShape, out[0].Shape); diff != "" {
		t.Errorf("output shape (-want +got):\n%s", diff)
	}
	exact := 0
	for i, want := range g.Predictions {
		if float64(got[i]) == want {
			exact++
		}
		if !near(got[i], want) {
			t.Errorf("prediction %d = %.9g, xgboost says %.9g (relative error %.3g)", i, got[i], want, math.Abs(float64(got[i])-want)/math.Abs(want))
		}
	}
	t.Logf("%d of %d predictions are bit-identical to xgboost's", exact, len(g.Predictions))
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d golden files in testdata; run testdata/gen.py", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".golden.json"), func(t *testing.T) {
			checkGolden(t, "testdata", readGolden(t, f))
		})
	}
}

func TestMetadata(t *testing.T) {
	tests := []struct {
		file string
		want oip.ModelMetadata
	}{
		{"binary_logistic.json", oip.ModelMetadata{
			Name: "binary_logistic", Platform: Platform,
			Inputs:  []oip.TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 8}}},
			Outputs: []oip.TensorMetadata{{Name: "predict", Datatype: "FP32", Shape: []int64{-1}}},
		}},
		{"multi_softprob.json", oip.ModelMetadata{
			Name: "multi_softprob", Platform: Platform,
			Inputs:  []oip.TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 4}}},
			Outputs: []oip.TensorMetadata{{Name: "predict", Datatype: "FP32", Shape: []int64{-1, 3}}},
		}},
		{"multi_softmax.json", oip.ModelMetadata{
			Name: "multi_softmax", Platform: Platform,
			Inputs:  []oip.TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 4}}},
			Outputs: []oip.TensorMetadata{{Name: "predict", Datatype: "FP32", Shape: []int64{-1}}},
		}},
		{"reg_squarederror.json", oip.ModelMetadata{
			Name: "reg_squarederror", Platform: Platform,
			Inputs:  []oip.TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 5}}},
			Outputs: []oip.TensorMetadata{{Name: "predict", Datatype: "FP32", Shape: []int64{-1}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m, err := Load(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			meta := m.Metadata()
			if diff := cmp.Diff(tt.want, meta); diff != "" {
				t.Errorf("Metadata (-want +got):\n%s", diff)
			}
			// The caller may not change the model through the result.
			meta.Inputs[0].Shape[1] = 99
			if got := m.Metadata().Inputs[0].Shape[1]; got == 99 {
				t.Error("changing the returned metadata changed the model's")
			}
		})
	}
}

func loadTest(t testing.TB, file string) *Model {
	t.Helper()
	m, err := Load(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDatatypes checks that every numeric datatype and the one-row shape give
// the FP32 answer.
func TestDatatypes(t *testing.T) {
	m := loadTest(t, "reg_squarederror.json")
	row := []float32{1, 2, 0, 3, 2}
	want, err := m.Predict(context.Background(), []oip.Tensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 5}, Data: row}})
	if err != nil {
		t.Fatal(err)
	}
	half := make([]oip.Float16, 5)
	brain := make([]oip.BFloat16, 5)
	for i, v := range row {
		half[i], brain[i] = oip.Float16From(v), oip.BFloat16From(v)
	}
	tests := []struct {
		name string
		in   oip.Tensor
	}{
		{"FP32 one row", oip.Tensor{Name: "input", Datatype: oip.FP32, Shape: []int64{5}, Data: row}},
		{"FP64", oip.Tensor{Name: "input", Datatype: oip.FP64, Shape: []int64{1, 5}, Data: []float64{1, 2, 0, 3, 2}}},
		{"FP16", oip.Tensor{Name: "input", Datatype: oip.FP16, Shape: []int64{1, 5}, Data: half}},
		{"BF16", oip.Tensor{Name: "input", Datatype: oip.BF16, Shape: []int64{1, 5}, Data: brain}},
		{"INT8", oip.Tensor{Name: "input", Datatype: oip.INT8, Shape: []int64{1, 5}, Data: []int8{1, 2, 0, 3, 2}}},
		{"INT16", oip.Tensor{Name: "input", Datatype: oip.INT16, Shape: []int64{1, 5}, Data: []int16{1, 2, 0, 3, 2}}},
		{"INT32", oip.Tensor{Name: "input", Datatype: oip.INT32, Shape: []int64{1, 5}, Data: []int32{1, 2, 0, 3, 2}}},
		{"INT64", oip.Tensor{Name: "input", Datatype: oip.INT64, Shape: []int64{5}, Data: []int64{1, 2, 0, 3, 2}}},
		{"UINT8", oip.Tensor{Name: "input", Datatype: oip.UINT8, Shape: []int64{1, 5}, Data: []uint8{1, 2, 0, 3, 2}}},
		{"UINT16", oip.Tensor{Name: "input", Datatype: oip.UINT16, Shape: []int64{1, 5}, Data: []uint16{1, 2, 0, 3, 2}}},
		{"UINT32", oip.Tensor{Name: "input", Datatype: oip.UINT32, Shape: []int64{1, 5}, Data: []uint32{1, 2, 0, 3, 2}}},
		{"UINT64", oip.Tensor{Name: "input", Datatype: oip.UINT64, Shape: []int64{1, 5}, Data: []uint64{1, 2, 0, 3, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.Predict(context.Background(), []oip.Tensor{tt.in})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Predict (-want +got):\n%s", diff)
			}
		})
	}
	_, err = m.Predict(context.Background(), []oip.Tensor{{Name: "input", Datatype: oip.BOOL, Shape: []int64{5}, Data: make([]bool, 5)}})
	if err == nil || !strings.Contains(err.Error(), `input "input": datatype BOOL given, expected FP32`) {
		t.Errorf("BOOL input: error = %v", err)
	}
}

func TestEmptyBatch(t *testing.T) {
	m := loadTest(t, "multi_softprob.json")
	got, err := m.Predict(context.Background(), []oip.Tensor{{Name: "input", Datatype: "FP32", Shape: []int64{0, 4}, Data: []float32{}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []oip.Tensor{{Name: "predict", Datatype: "FP32", Shape: []int64{0, 3}, Data: []float32{}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Predict (-want +got):\n%s", diff)
	}
}

func TestInputErrors(t *testing.T) {
	m := loadTest(t, "binary_logistic.json")
	row := make([]float32, 8)
	tests := []struct {
		name   string
		inputs []oip.Tensor
		want   []string // substrings of the message
	}{
		{"no input", nil, []string{`exactly one input, "input"`, "given 0 inputs"}},
		{"two inputs", []oip.Tensor{
			{Name: "input", Datatype: "FP32", Shape: []int64{8}, Data: row},
			{Name: "extra", Datatype: "FP32", Shape: []int64{8}, Data: row},
		}, []string{"given 2 inputs", `"extra"`}},
		{"wrong name", []oip.Tensor{{Name: "x", Datatype: "FP32", Shape: []int64{8}, Data: row}}, []string{`no input "x"`, `"input"`, "[-1, 8]"}},
		{"wrong datatype", []oip.Tensor{{Name: "input", Datatype: "BYTES", Shape: []int64{8}, Data: make([]string, 8)}}, []string{`input "input"`, "BYTES given", "expected FP32"}},
		{"BOOL", []oip.Tensor{{Name: "input", Datatype: "BOOL", Shape: []int64{8}, Data: make([]bool, 8)}}, []string{"BOOL given", "expected FP32"}},
		{"too few features", []oip.Tensor{{Name: "input", Datatype: "FP32", Shape: []int64{2, 7}, Data: make([]float32, 14)}}, []string{`input "input"`, "shape [2 7] given", "expected [-1, 8]"}},
		{"one row too short", []oip.Tensor{{Name: "input", Datatype: "FP32", Shape: []int64{7}, Data: make([]float32, 7)}}, []string{"shape [7] given", "[8] for one row"}},
		{"rank 3", []oip.Tensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 1, 8}, Data: row}}, []string{"shape [1 1 8] given"}},
		{"data shorter than shape", []oip.Tensor{{Name: "input", Datatype: "FP32", Shape: []int64{2, 8}, Data: row}}, []string{"needs 16 values but data has 8"}},
		{"datatype lies about data", []oip.Tensor{{Name: "input", Datatype: "FP32", Shape: []int64{8}, Data: make([]string, 8)}}, []string{"FP32 given", "not numeric"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Predict(context.Background(), tt.inputs)
			var ie *engine.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("Predict error = %v, want an *engine.InputError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(ie.Message, w) {
					t.Errorf("error %q does not mention %q", ie.Message, w)
				}
			}
		})
	}
}

func TestPredictStopsWhenContextDone(t *testing.T) {
	m := loadTest(t, "reg_squarederror.json")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rows := 4 * ctxCheckRows
	in := oip.Tensor{Name: "input", Datatype: "FP32", Shape: []int64{int64(rows), 5}, Data: make([]float32, rows*5)}
	if _, err := m.Predict(ctx, []oip.Tensor{in}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Predict with a cancelled context = %v, want context.Canceled", err)
	}
	// A batch small enough to finish before the first check still answers.
	in = oip.Tensor{Name: "input", Datatype: "FP32", Shape: []int64{1, 5}, Data: make([]float32, 5)}
	if _, err := m.Predict(ctx, []oip.Tensor{in}); err != nil {
		t.Fatalf("Predict of one row = %v, want no error", err)
	}
}

// TestConcurrentPredict runs one model from several goroutines; run with
// -race to check that Predict shares no mutable state.
func TestConcurrentPredict(t *testing.T) {
	g := readGolden(t, "testdata/multi_softprob.golden.json")
	m := loadTest(t, g.Model)
	want, err := m.Predict(context.Background(), []oip.Tensor{g.tensor()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				got, err := m.Predict(context.Background(), []oip.Tensor{g.tensor()})
				if err != nil {
					errs <- err.Error()
					return
				}
				if diff := cmp.Diff(want, got); diff != "" {
					errs <- diff
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestModelBytes: a model counts its flattened trees and tables, and a
// model of one small tree counts less than one of many.
func TestModelBytes(t *testing.T) {
	small, err := Parse("small", []byte(`{"learner":{"learner_model_param":{"base_score":"5E-1","num_feature":"1"},"objective":{"name":"reg:squarederror"},`+
		`"gradient_booster":{"name":"gbtree","model":{"tree_info":[0],"trees":[{"left_children":[1,-1,-1],"right_children":[2,-1,-1],`+
		`"split_conditions":[0.5,1,2],"split_indices":[0,0,0],"default_left":[1,0,0]}]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Model{small, loadTest(t, "binary_logistic.json"), loadTest(t, "multi_softprob.json")} {
		nodes := int64(len(m.forest.nodes)) * 16
		got := m.ModelBytes()
		if got < nodes || got > 2*nodes+4096 {
			t.Errorf("%s: ModelBytes = %d for %d nodes (%d bytes of them)", m.meta.Name, got, len(m.forest.nodes), nodes)
		}
		if m != small && got <= small.ModelBytes() {
			t.Errorf("%s: ModelBytes = %d, not more than a one-tree model's %d", m.meta.Name, got, small.ModelBytes())
		}
	}
}
