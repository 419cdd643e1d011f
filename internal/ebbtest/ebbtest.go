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
// method of every type (TestLeanBinaries). cmd/ebb-replica is built
// without cgo as well (ReplicaEnv; see cmd/ebb-replica).
var (
	LeanFlags  = []string{"-tags", "grpcnotrace"}
	ReplicaEnv = []string{"CGO_ENABLED=0"}
)

// BuildAll compiles ./cmd/ebb, ./cmd/ebb-cluster and ./cmd/ebb-replica
// into dir/ebb, dir/ebb-cluster and dir/ebb-replica, side by side as `make
// build` does, so that `ebb up` run from dir starts its replicas with the
// lean binary and `ebb operator` finds ebb-cluster. flags (such as
// -ldflags) go to every build; root is the directory the go command runs
// in ("": the current one, which must be inside the ebb module). The go
// command's output goes to out.
func BuildAll(ctx context.Context, root, dir string, out io.Writer, flags ...string) error {
	builds := []struct {
		name, pkg string
		env       []string
		flags     []string
	}{
		{name: "ebb", pkg: "github.com/ebb-ml/ebb/cmd/ebb", flags: LeanFlags},
		{name: "ebb-cluster", pkg: "github.com/ebb-ml/ebb/cmd/ebb-cluster", flags: LeanFlags},
		{name: "ebb-replica", pkg: "github.com/ebb-ml/ebb/cmd/ebb-replica", env: ReplicaEnv, flags: LeanFlags},
	}
	for _, b := range builds {
		args := append(append(append([]string{"build", "-o", filepath.Join(dir, b.name)}, b.flags...), flags...), b.pkg)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), b.env...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", b.name, err)
		}
	}
	return nil
}

// Build compiles ebb, ebb-cluster and ebb-replica into dir (see BuildAll)
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
