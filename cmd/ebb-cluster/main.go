// Command ebb-cluster runs ebb's cluster home: `ebb-cluster operator`
// reconciles the ModelDeployments of a namespace into replica pods, and
// `ebb-cluster gateway` is the data plane in front of them. They are the
// Helm chart's two Deployments (the ebb image has this binary on PATH).
//
// It is a binary of its own so that ebb, the CLI and `ebb up`, links none
// of Kubernetes' client libraries, which keep tens of MiB resident in every
// process that links them. `ebb operator` and `ebb gateway` exec this
// binary (the ebb-cluster beside ebb, else on PATH) with their arguments.
//
// Build it as `make build` does, next to ebb:
//
//	go build -o bin/ ./cmd/ebb-cluster
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// Each command stops on SIGINT (Ctrl-C) and SIGTERM itself, draining.
	if err := newRootCmd().ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{Use: "ebb-cluster", Short: "Run ebb's cluster home: the Kubernetes operator and the gateway"}
	// Errors are main's to print, without the usage.
	root.SilenceUsage, root.SilenceErrors = true, true
	root.AddCommand(newOperatorCmd(), newGatewayCmd())
	return root
}
