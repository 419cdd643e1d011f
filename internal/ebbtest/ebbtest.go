// Package ebbtest builds the ebb binaries for tests that run them as
// separate processes (replicas started by a backend, `ebb up` end to end,
// the operator and the gateway), and checks what they link.
package ebbtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The build settings `make build` and the Dockerfile use. Every binary is
// built with LeanFlags: gRPC without golang.org/x/net/trace, whose
// html/template, were it linked, would make the linker keep every exported
// method of every type (TestLeanBinaries). ebb and the lean ebb-replica are
// built without cgo (StaticEnv): Go's own linker links them, with no libc
// mapped, and an idle `ebb up` or replica keeps less resident. Engine onnx
// needs cgo (ONNX Runtime is a C library): ebb-onnx, the replica binary
// built with it (CgoEnv; see cmd/ebb-onnx), serves it for both, and
// ebb-cluster keeps cgo for the operator's check of pushed onnx models.
var (
	LeanFlags = []string{"-tags", "grpcnotrace"}
	StaticEnv = []string{"CGO_ENABLED=0"}
	CgoEnv    = []string{"CGO_ENABLED=1"}
)

// Binaries are the binaries make build builds, with their environments.
var Binaries = []struct {
	Name, Pkg string
	Env       []string
}{
	{Name: "ebb", Pkg: "github.com/ebb-ml/ebb/cmd/ebb", Env: StaticEnv},
	{Name: "ebb-cluster", Pkg: "github.com/ebb-ml/ebb/cmd/ebb-cluster", Env: CgoEnv},
	{Name: "ebb-replica", Pkg: "github.com/ebb-ml/ebb/cmd/ebb-replica", Env: StaticEnv},
	{Name: "ebb-onnx", Pkg: "github.com/ebb-ml/ebb/cmd/ebb-onnx", Env: CgoEnv},
}

// BuildAll compiles Binaries into dir, side by side as `make build` does,
// so that `ebb up` run from dir starts its replicas with the lean binary
// (and onnx ones with ebb-onnx) and `ebb operator` finds ebb-cluster. flags
// (such as -ldflags) go to every build; root is the directory the go
// command runs in ("": the current one, which must be inside the ebb
// module). The go command's output goes to out.
func BuildAll(ctx context.Context, root, dir string, out io.Writer, flags ...string) error {
	for _, b := range Binaries {
		args := append(append(append([]string{"build", "-o", filepath.Join(dir, b.Name)}, LeanFlags...), flags...), b.Pkg)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), b.Env...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", b.Name, err)
		}
	}
	return nil
}

// Build compiles the Binaries into dir (see BuildAll)
// and returns ebb's path.
func Build(dir string) (string, error) {
	var out bytes.Buffer
	if err := BuildAll(context.Background(), "", dir, &out); err != nil {
		return "", fmt.Errorf("%v\n%s", err, out.Bytes())
	}
	return filepath.Join(dir, "ebb"), nil
}

// Replica returns the path of the ebb-replica Build put beside ebb.
func Replica(ebb string) string { return filepath.Join(filepath.Dir(ebb), "ebb-replica") }

// Cluster returns the path of the ebb-cluster Build put beside ebb.
func Cluster(ebb string) string { return filepath.Join(filepath.Dir(ebb), "ebb-cluster") }

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
