// Command ebb serves machine-learning models on demand: every deployment
// scales 0:N with traffic, and requests that arrive while it is cold are held
// until a replica is ready.
//
// This package only wires things together; each subcommand has its own file.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
)

func main() {
	// Ctrl-C cancels the command's context: a watch or a followed log ends
	// cleanly; `ebb up` drains.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
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
	addGlobalFlags(root)
	root.AddCommand(
		newUpCmd(),
		newReplicaCmd(),
		newFetchArtifactCmd(),
		newDeployCmd(),
		newGetCmd(),
		newDescribeCmd(),
		newLogsCmd(),
		newRolloutCmd(),
		newShadowCmd(),
		newRoutesCmd(),
		newPoolsCmd(),
		newJobsCmd(),
		newLimitsCmd(),
		newScaleCmd(),
		newSimulateCmd(),
		newCostCmd(),
		newDriftCmd(),
		newMonitorCmd(),
		newDeleteCmd(),
		newPredictCmd(),
		newAsyncCmd(),
		newClusterCmd("operator", "Run the Kubernetes operator: ModelDeployments to replica pods, scaled 0:N"),
		newClusterCmd("gateway", "Run the in-cluster data plane: OIP v2 for every ModelDeployment of a namespace"),
		newModelsCmd(),
		newPauseCmd(),
		newConfigCmd(),
		newVersionCmd(),
		newTokensCmd(),
	)
	return root
}
