package trees

import (
	"context"
	"fmt"
	"testing"

	"github.com/ebb-ml/ebb/internal/oip"
)

// BenchmarkPredict measures Predict on the diabetes example (100 trees of
// depth 4, 10 features) and the iris softprob model (30 trees, 3 classes).
func BenchmarkPredict(b *testing.B) {
	for _, c := range []struct{ name, dir, golden string }{
		{"diabetes", diabetesDir, diabetesDir + "/golden.json"},
		{"multi_softprob", "testdata", "testdata/multi_softprob.golden.json"},
	} {
		g := readGolden(b, c.golden)
		m, err := Load(c.dir + "/" + g.Model)
		if err != nil {
			b.Fatal(err)
		}
		all := g.tensor().Data.([]float32)
		for _, rows := range []int{1, 64} {
			x := make([]float32, rows*g.NumFeature)
			for i := range x {
				x[i] = all[i%len(all)]
			}
			in := []oip.Tensor{{Name: InputName, Datatype: oip.FP32, Shape: []int64{int64(rows), int64(g.NumFeature)}, Data: x}}
			b.Run(fmt.Sprintf("%s/rows=%d", c.name, rows), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.Predict(context.Background(), in); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			})
		}
	}
}

// BenchmarkLoad measures parsing the diabetes example's model.json.
func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(diabetesDir + "/model.json"); err != nil {
			b.Fatal(err)
		}
	}
}
