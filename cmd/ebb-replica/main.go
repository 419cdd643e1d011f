// Command ebb-replica serves one model over the Open Inference Protocol v2:
// the replica that ebb's process backend starts as a local process and its
// kube backend runs in a pod. It is `ebb replica` in a binary of its own,
// without Kubernetes' packages, the control plane and the CLI, so that an
// idle replica keeps a fraction of ebb's memory resident. It is started by
// ebb, not by hand; see internal/replicacmd for its flags.
//
// Build it as `make build` does, next to ebb:
//
//	CGO_ENABLED=0 go build -tags grpcnotrace -o bin/ ./cmd/ebb-replica
//
// Both settings keep it small. grpcnotrace leaves out gRPC's
// golang.org/x/net/trace, whose html/template keeps every exported method
// of every type linked; without cgo the binary is linked by Go's own linker
// and needs no libc. ebb up runs the ebb-replica beside its own executable
// (or --replica-binary), and `ebb replica` without one. A build without cgo
// has no onnx engine: an onnx replica execs `ebb replica` in its place (the
// ebb beside this executable, else the one on PATH), which is built with
// cgo.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/ebb-ml/ebb/internal/replicacmd"
	"github.com/ebb-ml/ebb/internal/sibling"
)

func main() {
	// The command handles SIGTERM and SIGINT itself: the first drains.
	if err := replicacmd.New("ebb-replica", fullEbb).ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// fullEbb is the replica command of the ebb installed with this binary:
// the ebb beside it, else the one on PATH.
func fullEbb() ([]string, error) {
	path, err := sibling.Find("ebb")
	if err != nil {
		return nil, fmt.Errorf("%w: install ebb next to ebb-replica (make build), or build ebb-replica with CGO_ENABLED=1", err)
	}
	return []string{path, "replica"}, nil
}
