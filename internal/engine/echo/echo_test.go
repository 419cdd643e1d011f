package echo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestWork: a signature's workMs burns about that much CPU per prediction,
// and a workMs out of range is refused.
func TestWork(t *testing.T) {
	dir := t.TempDir()
	sig := filepath.Join(dir, "sig.json")
	os.WriteFile(sig, []byte(`{"inputs":[{"name":"input","datatype":"FP32","shape":[-1,-1]}],"workMs":20}`), 0o644)
	m, err := Load(sig)
	if err != nil {
		t.Fatal(err)
	}
	in := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, 1}, Data: []float32{1}}}
	before := processCPU(t)
	if _, err := m.Predict(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if used := processCPU(t) - before; used < 20*time.Millisecond {
		t.Errorf("a prediction with workMs 20 used %v of CPU, want at least 20ms", used)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Predict(ctx, in); err == nil {
		t.Error("Predict with a cancelled context burnt on; want its error")
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"inputs":[{"name":"input","datatype":"FP32","shape":[-1,-1]}],"workMs":-1}`), 0o644)
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "workMs") {
		t.Errorf("Load(workMs -1) = %v, want an error naming workMs", err)
	}
}

func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Skip("no getrusage:", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
