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
// has no onnx engine: an onnx replica execs ebb-onnx in its place (the
// replica binary built with cgo, cmd/ebb-onnx, beside this executable or on
// PATH), else `ebb replica` of an ebb built with cgo (go run ./cmd/ebb).
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
	if err := replicacmd.New("ebb-replica", onnxReplica).ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// onnxReplica is the replica command that serves engine onnx: ebb-onnx
// (replicacmd.ONNXCommand), else `ebb replica` of the ebb installed with
// this binary (beside it, else on PATH), which serves onnx when it was
// built with cgo.
func onnxReplica() ([]string, error) {
	argv, err := replicacmd.ONNXCommand()
	if err == nil {
		return argv, nil
	}
	path, ebbErr := sibling.Find("ebb")
	if ebbErr != nil {
		return nil, fmt.Errorf("%w; nor is there an ebb: build both with make build", err)
	}
	return []string{path, "replica"}, nil
}
