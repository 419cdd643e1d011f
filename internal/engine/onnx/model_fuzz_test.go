//go:build cgo

package onnx

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ebb-ml/ebb/internal/oip"
)

// FuzzLoad loads arbitrary bytes as an .onnx file: the model's metadata
// (its inputs and outputs, their element types and shapes) is read by ONNX
// Runtime, so this target needs the library. It is skipped without it, and
// fails under CI=true, as the package's other tests do. For any bytes:
// Load does not panic or crash the process; a model it accepts has at
// least one output, OIP datatypes only, and dimensions of -1 or more.
func FuzzLoad(f *testing.F) {
	for _, p := range []string{"../../../examples/mlp-onnx/model.onnx", "testdata/types.onnx", "testdata/float16.onnx",
		"testdata/golden/scalars.onnx", "testdata/golden/no_inputs.onnx", "testdata/golden/any_shape.onnx", "testdata/golden/datatypes.onnx"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	if err := Available(""); err != nil {
		if os.Getenv("CI") == "true" {
			f.Fatalf("CI=true and %v", err)
		}
		f.Skipf("skipping: %v", err)
	}
	f.Fuzz(func(t *testing.T, model []byte) {
		path := filepath.Join(t.TempDir(), "fuzz.onnx")
		if err := os.WriteFile(path, model, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := Load(path, Options{IntraOpThreads: 1})
		if err != nil {
			return
		}
		defer m.Close()
		meta := m.Metadata()
		if meta.Platform != Platform || meta.Name != "fuzz" || len(meta.Outputs) == 0 {
			t.Fatalf("metadata %+v: want platform %s, name fuzz and an output", meta, Platform)
		}
		for _, ts := range [][]oip.TensorMetadata{meta.Inputs, meta.Outputs} {
			for _, tm := range ts {
				if !oip.Known(tm.Datatype) {
					t.Fatalf("tensor %q has datatype %q", tm.Name, tm.Datatype)
				}
				for _, d := range tm.Shape {
					if d < -1 {
						t.Fatalf("tensor %q has shape %v", tm.Name, tm.Shape)
					}
				}
			}
		}
	})
}
