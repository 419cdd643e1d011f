package onnx

import (
	"context"
	"fmt"
	"testing"

	"github.com/ebb-ml/ebb/internal/oip"
)

// BenchmarkPredict measures one Predict of the example MLP per batch size;
// ns/row shows what batching saves per row inside the engine.
func BenchmarkPredict(b *testing.B) {
	if err := Available(""); err != nil {
		b.Skipf("skipping: %v", err)
	}
	m, err := Load(mlpModel, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for _, rows := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			data := make([]float32, rows*64)
			for i := range data {
				data[i] = float32(i % 17)
			}
			in := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{int64(rows), 64}, Data: data}}
			for b.Loop() {
				if _, err := m.Predict(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
		})
	}
}
