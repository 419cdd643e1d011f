package onnx

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDeclaredShapes(t *testing.T) {
	tests := []struct {
		model string
		want  shapes
	}{
		{"testdata/golden/any_shape.onnx", shapes{map[string]bool{"x": false}, map[string]bool{"y": false, "n": true}}},
		{"testdata/golden/scalars.onnx", shapes{map[string]bool{"x": true}, map[string]bool{"sum": true, "mean": true, "twice": true}}},
		{"testdata/golden/no_inputs.onnx", shapes{map[string]bool{}, map[string]bool{"answer": true, "seq": true}}},
		{"testdata/golden/sequence.onnx", shapes{map[string]bool{"seq": true}, map[string]bool{"length": true}}},
		{"../../../examples/mlp-onnx/model.onnx", shapes{map[string]bool{"input": true}, map[string]bool{"logits": true, "probabilities": true}}},
	}
	for _, tt := range tests {
		got, err := declaredShapes(tt.model)
		if err != nil {
			t.Fatalf("%s: %v", tt.model, err)
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(shapes{})); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.model, diff)
		}
	}
	if _, err := declaredShapes("testdata/nope.onnx"); err == nil {
		t.Error("a missing file: no error")
	}
}

// FuzzDeclaredShapes reads arbitrary bytes as an ONNX model file: it never
// panics and allocates in proportion to the file, whatever lengths the
// bytes claim.
func FuzzDeclaredShapes(f *testing.F) {
	for _, p := range []string{"testdata/golden/any_shape.onnx", "testdata/golden/datatypes.onnx", "testdata/types.onnx"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "m.onnx")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		var before, after runtimeMem
		before.read()
		_, _ = declaredShapes(path)
		after.read()
		if got := after.total - before.total; got > 8*uint64(len(b))+256<<10 {
			t.Fatalf("a %d-byte file made declaredShapes allocate %d bytes", len(b), got)
		}
	})
}

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.total = ms.TotalAlloc
}
