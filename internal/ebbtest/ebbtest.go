// Package ebbtest builds the ebb binary for tests that run it as a separate
// process: replicas started by a backend, `ebb up` end to end.
package ebbtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Build compiles ./cmd/ebb into dir and returns the binary's path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "ebb")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/ebb-ml/ebb/cmd/ebb").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build ebb: %v\n%s", err, out)
	}
	return bin, nil
}

// Main builds ebb into a temporary directory, stores its path in *bin, runs
// the package's tests and removes the directory. Call it from TestMain.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "ebbtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *bin, err = Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
