package main

import (
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// newPauseCmd is `ebb pause`, hidden: it blocks until SIGTERM or SIGINT and
// exits 0. The operator's warm-pool placeholder pods and pre-pull pods run
// it, in the replica image, so that they hold their room (or keep the image
// on the node) without doing anything.
func newPauseCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "pause",
		Short:  "Block until SIGTERM or SIGINT (placeholder pods run this)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			<-ctx.Done()
			return nil
		},
	}
}
