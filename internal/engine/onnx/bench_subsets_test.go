//go:build cgo

package onnx

import (
	"context"
	"testing"

	"github.com/ebb-ml/ebb/internal/oip"
)

// BenchmarkOutputs measures costly.onnx, whose output cheap is a sum of
// each row and costly 32 layers of a 128×128 MatMul and Tanh, asked for
// every output, for cheap alone (a pruned session), and for cheap alone on
// the model's own session, as before pruning (what a set that does not fit
// in the budget still costs).
func BenchmarkOutputs(b *testing.B) {
	if err := Available(""); err != nil {
		b.Skipf("skipping: %v", err)
	}
	const rows, width = 16, 128
	data := make([]float32, rows*width)
	for i := range data {
		data[i] = float32(i%13) / 13
	}
	in := []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{rows, width}, Data: data}}
	for _, bb := range []struct {
		name    string
		outputs []string
		budget  int64
	}{
		{"outputs=all", nil, subsetBudget(0)},
		{"outputs=cheap", []string{"cheap"}, subsetBudget(0)},
		{"outputs=cheap/unpruned", []string{"cheap"}, 0},
	} {
		b.Run(bb.name, func(b *testing.B) {
			m, err := Load(goldenModel("costly"), Options{IntraOpThreads: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			m.subsets.budget = bb.budget
			if _, err := m.PredictOutputs(context.Background(), in, bb.outputs); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := m.PredictOutputs(context.Background(), in, bb.outputs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
