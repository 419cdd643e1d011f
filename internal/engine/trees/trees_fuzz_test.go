package trees

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/oip"
)

// FuzzParsePredict loads an XGBoost JSON model from arbitrary bytes and, when it
// loads, predicts with it. Parse never panics: a model it cannot serve is an
// error. A model it accepts has metadata of one FP32 input [-1, F] and one
// FP32 output, and predicting rows built from the fuzzer's bytes (NaN, ±Inf
// and extreme values included) never panics and returns one output of the
// declared width per row.
func FuzzParsePredict(f *testing.F) {
	f.Add([]byte(`{"learner":{"learner_model_param":{"base_score":"5E-1","num_feature":"1"},"objective":{"name":"reg:squarederror"},`+
		`"gradient_booster":{"name":"gbtree","model":{"tree_info":[0],"trees":[{"left_children":[1,-1,-1],"right_children":[2,-1,-1],`+
		`"split_conditions":[0.5,1,2],"split_indices":[0,0,0],"default_left":[1,0,0]}]}}}}`), []byte{0, 0, 0x80, 0x7f})
	// The real models: the demo's and the testdata models of every
	// objective, with a row of NaN and one of infinities.
	models, _ := filepath.Glob("testdata/*.json")
	models = append(models, "../../../examples/diabetes/model.json", "../../../examples/diabetes/model-v2.json")
	for _, p := range models {
		if strings.HasSuffix(p, ".golden.json") {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, []byte{0, 0, 0xc0, 0x7f, 0, 0, 0x80, 0xff})
	}
	f.Fuzz(func(t *testing.T, model, rows []byte) {
		m, err := Parse("fuzz", model)
		if err != nil {
			return
		}
		meta := m.Metadata()
		if len(meta.Inputs) != 1 || len(meta.Outputs) != 1 {
			t.Fatalf("metadata has %d inputs and %d outputs, want 1 and 1", len(meta.Inputs), len(meta.Outputs))
		}
		in, out := meta.Inputs[0], meta.Outputs[0]
		if in.Datatype != oip.FP32 || len(in.Shape) != 2 || in.Shape[0] != -1 || in.Shape[1] != int64(m.NumFeature()) || m.NumFeature() < 1 {
			t.Fatalf("input metadata %+v for %d features", in, m.NumFeature())
		}
		if out.Datatype != oip.FP32 || len(out.Shape) < 1 || len(out.Shape) > 2 || out.Shape[0] != -1 {
			t.Fatalf("output metadata %+v", out)
		}
		width := int64(1)
		if len(out.Shape) == 2 {
			width = out.Shape[1]
		}

		// Rows from the fuzzer's bytes, 4 little-endian bytes a value,
		// repeated to fill at least one row; at most 1 MiB of features.
		nf := m.NumFeature()
		if nf > 1<<18 {
			return
		}
		n := max(1, len(rows)/4/nf)
		x := make([]float32, n*nf)
		for i := range x {
			if len(rows) >= 4 {
				j := (4 * i) % (len(rows) - len(rows)%4)
				x[i] = math.Float32frombits(binary.LittleEndian.Uint32(rows[j:]))
			} else {
				x[i] = float32(math.NaN())
			}
		}
		got, err := m.Predict(context.Background(), []oip.Tensor{{Name: InputName, Datatype: oip.FP32, Shape: []int64{int64(n), int64(nf)}, Data: x}})
		if err != nil {
			t.Fatalf("Predict on %d valid rows: %v", n, err)
		}
		if len(got) != 1 {
			t.Fatalf("Predict returned %d outputs, want 1", len(got))
		}
		if err := got[0].Check(); err != nil {
			t.Fatalf("Predict returned an invalid tensor: %v", err)
		}
		if got[0].Shape[0] != int64(n) || len(got[0].Shape) != len(out.Shape) || got[0].Data.([]float32) == nil || int64(len(got[0].Data.([]float32))) != int64(n)*width {
			t.Fatalf("Predict on %d rows returned shape %v, metadata says %v", n, got[0].Shape, out.Shape)
		}
	})
}
