package scenarios

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/oip"
)

func TestParseCacheSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"32768K", 32 << 20, true},
		{"2M", 2 << 20, true},
		{"1G", 1 << 30, true},
		{"512", 512, true},
		{"", 0, false},
		{"-1K", 0, false},
		{"lots", 0, false},
	} {
		got, ok := parseCacheSize(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("parseCacheSize(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestBeyondCacheLayers(t *testing.T) {
	for _, c := range []struct {
		cache int64
		want  []int
	}{
		{1 << 20, []int{64, 2048, 2048, 10}},  // small caches: never narrower than the wide example
		{32 << 20, []int{64, 4096, 4096, 10}}, // 64 MiB of hidden weights
		{96 << 20, []int{64, 7168, 7168, 10}},
		{1 << 30, []int{64, 8192, 8192, 10}}, // capped
	} {
		got := beyondCacheLayers(c.cache)
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("beyondCacheLayers(%d) (-want +got):\n%s", c.cache, diff)
		}
		if c.cache < 128<<20 && weightBytes(got) < 2*c.cache {
			t.Errorf("beyondCacheLayers(%d): %d bytes of weights, want at least twice the cache", c.cache, weightBytes(got))
		}
	}
	if got := weightBytes([]int{2, 3, 1}); got != 4*(2*3+3+3*1+1) {
		t.Errorf("weightBytes([2 3 1]) = %d", got)
	}
	if got := formatLayers([]int{64, 10}); got != "64 → 10" {
		t.Errorf("formatLayers = %q", got)
	}
}

// TestMLPONNX runs a small generated MLP in ONNX Runtime and compares its
// logits with the same network computed here from the same weights.
func TestMLPONNX(t *testing.T) {
	if err := onnx.Available(""); err != nil {
		t.Skipf("skipping: %v", err)
	}
	layers := []int{5, 16, 12, 3}
	path := filepath.Join(t.TempDir(), "mlp.onnx")
	if err := writeMLPONNX(path, layers, 7); err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Load(path, onnx.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatalf("ONNX Runtime refused the generated model: %v", err)
	}
	defer m.Close()
	const rows = 3
	x := make([]float32, rows*layers[0])
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	out, err := m.Predict(context.Background(), []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{rows, int64(layers[0])}, Data: x}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Name != "logits" {
		t.Fatalf("outputs %+v; want one named logits", out)
	}
	if diff := cmp.Diff([]int64{rows, int64(layers[len(layers)-1])}, out[0].Shape); diff != "" {
		t.Errorf("logits shape (-want +got):\n%s", diff)
	}
	got := out[0].Data.([]float32)
	want := mlpForward(layers, mlpWeights(layers, 7), x, rows)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("logit %d: ONNX Runtime %v, reference %v (all: %v vs %v)", i, got[i], want[i], got, want)
		}
	}
}

// mlpForward is the reference: x·W per layer, ReLU between, zero biases.
func mlpForward(layers []int, ws [][]float32, x []float32, rows int) []float32 {
	h := x
	for l, w := range ws {
		in, out := layers[l], layers[l+1]
		next := make([]float32, rows*out)
		for r := range rows {
			for j := range out {
				var s float32
				for k := range in {
					s += h[r*in+k] * w[k*out+j]
				}
				if l+1 < len(ws) && s < 0 {
					s = 0
				}
				next[r*out+j] = s
			}
		}
		h = next
	}
	return h
}
