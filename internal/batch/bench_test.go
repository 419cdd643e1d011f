package batch

import (
	"context"
	"testing"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// trivialModel answers one FP32 output row per input row and does no work,
// so the benchmarks measure the batcher.
type trivialModel struct{}

func (trivialModel) Predict(_ context.Context, in []oip.Tensor, _ []string) ([]oip.Tensor, error) {
	rows := in[0].Shape[0]
	return []oip.Tensor{{Name: "y", Datatype: oip.FP32, Shape: []int64{rows}, Data: make([]float32, rows)}}, nil
}

// BenchmarkBatcherOneRequest measures the overhead of one 10-feature row
// going through the batcher alone (MaxBatchSize 1): queueing, dispatch and
// the hand-off back to the caller.
func BenchmarkBatcherOneRequest(b *testing.B) {
	bt, err := New(trivialModel{}, serving.Batching{MaxBatchSize: 1}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	in := rowsInput(1, 1, 10)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bt.Predict(ctx, in, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatcherParallel measures the batcher under concurrent callers
// with MaxBatchSize 16 and no queue delay: batches form while the model
// runs. ns/op is per request, including concatenating and splitting.
func BenchmarkBatcherParallel(b *testing.B) {
	bt, err := New(trivialModel{}, serving.Batching{MaxBatchSize: 16}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		in := rowsInput(1, 1, 10)
		for pb.Next() {
			if _, err := bt.Predict(ctx, in, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkConcatSplit measures joining 16 one-row requests of 10 features
// and splitting a 16-row output back.
func BenchmarkConcatSplit(b *testing.B) {
	parts := make([]oip.Tensor, 16)
	rows := make([]int, 16)
	for i := range parts {
		parts[i] = rowsInput(float32(i), 1, 10)[0]
		rows[i] = 1
	}
	out := oip.Tensor{Name: "y", Datatype: oip.FP32, Shape: []int64{16}, Data: make([]float32, 16)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Concat(parts); err != nil {
			b.Fatal(err)
		}
		if _, err := Split(out, rows); err != nil {
			b.Fatal(err)
		}
	}
}
