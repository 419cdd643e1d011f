package echo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/google/go-cmp/cmp"
)

func TestEcho(t *testing.T) {
	m, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	in := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, 2}, Data: []float32{1, 2}}}
	out, err := m.Predict(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("Predict (-want +got):\n%s", diff)
	}
}

func TestLoadSignature(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "sig.json")
	os.WriteFile(good, []byte(`{"inputs":[{"name":"x","datatype":"INT64","shape":[-1,3]}]}`), 0o644)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{}`), 0o644)

	m, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	want := []oip.TensorMetadata{{Name: "x", Datatype: "INT64", Shape: []int64{-1, 3}}}
	if diff := cmp.Diff(want, m.Metadata().Outputs); diff != "" {
		t.Errorf("outputs (-want +got):\n%s", diff)
	}
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("Load(bad) = %v; want an error naming %s", err, bad)
	}
}
