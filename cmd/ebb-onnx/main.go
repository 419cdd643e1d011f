// Command ebb-onnx is the replica binary of engine onnx: `ebb replica` built
// with cgo, since ONNX Runtime is a C library. ebb and the lean ebb-replica
// are built without cgo (make build), which keeps each of them a static
// binary with no libc mapped: an onnx replica of ebb-replica execs the
// ebb-onnx beside it in its place, and ebb up's registry runs
// `ebb-onnx --describe` to check a pushed onnx model, so that a model that
// crashes ONNX Runtime crashes that process, not ebb.
//
// Build it as make build does, next to ebb:
//
//	CGO_ENABLED=1 go build -tags grpcnotrace -o bin/ ./cmd/ebb-onnx
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/ebb-ml/ebb/internal/replicacmd"
)

func main() {
	// The command handles SIGTERM and SIGINT itself: the first drains.
	if err := replicacmd.New(replicacmd.ONNXBinary, nil).ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
