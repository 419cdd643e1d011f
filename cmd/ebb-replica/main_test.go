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
// engine: an onnx replica becomes ebb-onnx, the replica binary with cgo,
// beside it (same arguments, same environment, secret included), else the
// ebb beside it (`ebb replica`, for an ebb built with cgo), so that backends
// need not know which binary serves which engine.
func TestOnnxReplicaExecsBinaryBeside(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh for the stand-in binaries")
	}
	bin := filepath.Join(t.TempDir(), "ebb-replica")
	build := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ebb-replica without cgo: %v\n%s", err, out)
	}
	args := []string{"--deployment", "m", "--id", "m-1", "--engine", "onnx", "--model", "/models/m.onnx", "--addr", "127.0.0.1:0"}
	for _, tt := range []struct {
		name   string
		beside []string // stand-ins beside ebb-replica
		ran    string   // the one that runs
		prefix []string // its arguments before ebb-replica's
	}{
		{name: "ebb-onnx", beside: []string{"ebb-onnx", "ebb"}, ran: "ebb-onnx"},
		{name: "ebb only", beside: []string{"ebb"}, ran: "ebb", prefix: []string{"replica"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			replica := filepath.Join(dir, "ebb-replica")
			if err := os.Link(bin, replica); err != nil {
				t.Fatal(err)
			}
			// Each stand-in writes what it was run with.
			record := filepath.Join(dir, "ran")
			script := "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" \"secret=$EBB_REPLICA_SECRET\" > " + record + "\n"
			for _, name := range tt.beside {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(replica, args...)
			cmd.Env = append(os.Environ(), "EBB_REPLICA_SECRET=s3cret")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ebb-replica --engine onnx: %v\n%s", err, out)
			} else if !strings.Contains(string(out), "engine onnx needs cgo") {
				t.Errorf("ebb-replica did not say why it runs %s; its output:\n%s", tt.ran, out)
			}
			got, err := os.ReadFile(record)
			if err != nil {
				t.Fatalf("the %s beside ebb-replica did not run: %v", tt.ran, err)
			}
			want := append(append(append([]string{filepath.Join(dir, tt.ran)}, tt.prefix...), args...), "secret=s3cret")
			if diff := cmp.Diff(want, strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")); diff != "" {
				t.Errorf("%s ran with (-want +got):\n%s", tt.ran, diff)
			}
		})
	}
}
