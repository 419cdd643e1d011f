// Command ebb serves machine-learning models on demand: every deployment
// scales 0:N with traffic, and requests that arrive while it is cold are held
// until a replica is ready.
//
// This package only wires things together; each subcommand has its own file.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "ebb",
		Short:         "Serve machine-learning models on demand, scaling each deployment 0:N",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newUpCmd(),
		newReplicaCmd(),
		newDeployCmd(),
		newGetCmd(),
		newScaleCmd(),
		newDeleteCmd(),
		newPredictCmd(),
		newOperatorCmd(),
		newGatewayCmd(),
		newModelsCmd(),
		newPauseCmd(),
	)
	return root
}
