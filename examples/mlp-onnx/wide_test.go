package mlponnx

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/oip"
)

// goldenFile is golden-wide.json (or golden.json): recorded inputs and
// PyTorch's outputs for them.
type goldenFile struct {
	Model   string                  `json:"model"`
	Inputs  map[string]goldenTensor `json:"inputs"`
	Outputs map[string]goldenTensor `json:"outputs"`
}

type goldenTensor struct {
	Shape []int64   `json:"shape"`
	Data  []float64 `json:"data"`
}

// rows returns rows [from, to) of a row-major [N, cols] tensor as float32.
func (g goldenTensor) rows(from, to int) []float32 {
	cols := int(g.Shape[1])
	out := make([]float32, 0, (to-from)*cols)
	for _, v := range g.Data[from*cols : to*cols] {
		out = append(out, float32(v))
	}
	return out
}

// TestWideGolden checks that ONNX Runtime reproduces PyTorch's outputs of
// the wide model (model-wide.onnx, from export.py --wide) for the recorded
// inputs, whatever the batch size. Sums over 2048 products are ordered
// differently by the two, so values are compared to a relative 1e-5 of the
// largest magnitude in their row rather than of each value.
func TestWideGolden(t *testing.T) {
	if err := onnx.Available(""); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	data, err := os.ReadFile("golden-wide.json")
	if err != nil {
		t.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("golden-wide.json: %v", err)
	}
	if g.Model != "model-wide.onnx" {
		t.Fatalf("golden-wide.json is for %q, want model-wide.onnx", g.Model)
	}
	m, err := onnx.Load("model-wide.onnx", onnx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	wantMeta := []oip.TensorMetadata{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 64}}}
	if diff := cmp.Diff(wantMeta, m.Metadata().Inputs); diff != "" {
		t.Errorf("inputs (-want +got):\n%s", diff)
	}
	in := g.Inputs["input"]
	n := int(in.Shape[0])
	for _, batch := range []int{n, 1, 3} {
		t.Run(fmt.Sprintf("batch %d", batch), func(t *testing.T) {
			for from := 0; from < n; from += batch {
				to := min(from+batch, n)
				out, err := m.Predict(context.Background(), []oip.Tensor{{
					Name: "input", Datatype: oip.FP32, Shape: []int64{int64(to - from), in.Shape[1]}, Data: in.rows(from, to),
				}})
				if err != nil {
					t.Fatalf("Predict rows %d-%d: %v", from, to, err)
				}
				checkRows(t, g, out, from, to)
			}
		})
	}
}

func checkRows(t *testing.T, g goldenFile, out []oip.Tensor, from, to int) {
	t.Helper()
	if len(out) != len(g.Outputs) {
		t.Fatalf("got %d outputs, want %d", len(out), len(g.Outputs))
	}
	for _, o := range out {
		want, ok := g.Outputs[o.Name]
		if !ok {
			t.Fatalf("unexpected output %q", o.Name)
		}
		cols := int(want.Shape[1])
		if diff := cmp.Diff([]int64{int64(to - from), int64(cols)}, o.Shape); diff != "" {
			t.Fatalf("output %q shape (-want +got):\n%s", o.Name, diff)
		}
		got, ok := o.Data.([]float32)
		if !ok || o.Datatype != oip.FP32 {
			t.Fatalf("output %q is %s %T, want FP32 []float32", o.Name, o.Datatype, o.Data)
		}
		w := want.rows(from, to)
		for r := 0; r < to-from; r++ {
			scale := 0.0
			for _, v := range w[r*cols : (r+1)*cols] {
				scale = math.Max(scale, math.Abs(float64(v)))
			}
			for c := range cols {
				i := r*cols + c
				if d := math.Abs(float64(got[i]) - float64(w[i])); d > 1e-5*scale+1e-7 {
					t.Errorf("output %q row %d col %d = %v, PyTorch gave %v", o.Name, from+r, c, got[i], w[i])
				}
			}
		}
	}
}

func TestWideModelSize(t *testing.T) {
	info, err := os.Stat("model-wide.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() > 20<<20 {
		t.Errorf("model-wide.onnx is %d bytes; keep it under 20 MiB (it is checked into git)", info.Size())
	}
}
