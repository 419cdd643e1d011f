package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/engine/onnx"
)

func TestONNXRuntimeEnv(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, tt := range []struct {
		name    string
		lib     string
		want    []string
		wantErr string
	}{
		{name: "not given", lib: "", want: nil},
		{name: "absolute", lib: lib, want: []string{onnx.EnvLibrary + "=" + lib}},
		{name: "relative", lib: "libonnxruntime.so.1", want: []string{onnx.EnvLibrary + "=" + lib}},
		{name: "missing", lib: "nope.so", wantErr: "from --onnxruntime-lib) does not exist"},
		{name: "a directory", lib: dir, wantErr: "is not a regular file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := onnxRuntimeEnv(tt.lib)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("onnxRuntimeEnv(%q) = %v, %v; want an error with %q", tt.lib, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("onnxRuntimeEnv(%q) = %q, %v; want %q", tt.lib, got, err, tt.want)
			}
		})
	}
}

// TestUpONNXRuntimeLib: ebb up --onnxruntime-lib reaches the replicas it
// starts as $EBB_ONNXRUNTIME_LIB, over the one ebb up itself has.
func TestUpONNXRuntimeLib(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ebb up and a replica")
	}
	dir := t.TempDir()
	lib := filepath.Join(dir, "libonnxruntime.so.1")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A replica binary that reports its environment, then never gets
	// ready.
	seen := filepath.Join(dir, "seen")
	script := filepath.Join(dir, "replica")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$"+onnx.EnvLibrary+"\" > "+seen+".tmp && mv "+seen+".tmp "+seen+"\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(onnx.EnvLibrary, "/elsewhere/libonnxruntime.so.1")
	p := startUp(t, false, "--onnxruntime-lib", lib, "--replica-binary", script, "--hold-timeout", "1s", "--exit-with-parent=false")
	// A request starts a replica; it is held until --hold-timeout, as no
	// replica gets ready, or refused until the demo deployment exists.
	waitFor(t, "the replica's environment", func() bool {
		if _, err := os.Stat(seen); err == nil {
			return true
		}
		resp, err := http.Post(p.addr+"/v2/models/diabetes/infer", "application/json", bytes.NewReader(diabetes.Request))
		if err == nil {
			resp.Body.Close()
		}
		return false
	})
	b, _ := os.ReadFile(seen)
	if got := strings.TrimSpace(string(b)); got != lib {
		t.Errorf("replica's $%s = %q, want %q", onnx.EnvLibrary, got, lib)
	}
	_, others := p.processes()
	if len(others) != 1 {
		t.Fatalf("processes %v; want ebb up alone", others)
	}
	if err := syscall.Kill(others[0], syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitGone(t, "after SIGTERM")

	// A library that does not exist stops ebb up before it starts.
	if _, out, err := execEbb(t, nil, "up", "--onnxruntime-lib", filepath.Join(dir, "nope.so"), "--data-dir", dir, "--addr", "127.0.0.1:0", "--grpc-addr", ""); err == nil ||
		!strings.Contains(out, "does not exist") {
		t.Errorf("ebb up with a missing --onnxruntime-lib = %v:\n%s", err, out)
	}
}
