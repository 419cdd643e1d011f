package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Built without cgo, as make build builds it, ebb-replica has no onnx
// engine: an onnx replica becomes the ebb beside it (`ebb replica`, same
// arguments, same environment, secret included), so that backends need
// not know which binary serves which engine.
func TestOnnxReplicaExecsEbbBeside(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh for the stand-in ebb")
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", filepath.Join(dir, "ebb-replica"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ebb-replica without cgo: %v\n%s", err, out)
	}
	// The stand-in ebb writes what it was run with.
	record := filepath.Join(dir, "ran")
	script := "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" \"secret=$EBB_REPLICA_SECRET\" > " + record + "\n"
	if err := os.WriteFile(filepath.Join(dir, "ebb"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--deployment", "m", "--id", "m-1", "--engine", "onnx", "--model", "/models/m.onnx", "--addr", "127.0.0.1:0"}
	cmd := exec.Command(filepath.Join(dir, "ebb-replica"), args...)
	cmd.Env = append(os.Environ(), "EBB_REPLICA_SECRET=s3cret")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ebb-replica --engine onnx: %v\n%s", err, out)
	} else if !strings.Contains(string(out), "engine onnx needs cgo") {
		t.Errorf("ebb-replica did not say why it runs ebb; its output:\n%s", out)
	}
	got, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("the ebb beside ebb-replica did not run: %v", err)
	}
	want := append(append([]string{filepath.Join(dir, "ebb"), "replica"}, args...), "secret=s3cret")
	if diff := cmp.Diff(want, strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")); diff != "" {
		t.Errorf("ebb ran with (-want +got):\n%s", diff)
	}
}
