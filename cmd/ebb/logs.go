package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/apiclient"
)

func newLogsCmd() *cobra.Command {
	var o apiclient.LogOptions
	cmd := &cobra.Command{
		Use:   "logs NAME [--replica ID] [-f] [--tail N]",
		Short: "Print the output of a deployment's replicas (processes or pods)",
		Long: `Print what a deployment's replicas wrote: the log file of each replica
process under ebb up, the container log of each pod in a cluster.

Without --replica, every current replica's lines are printed, each prefixed
with "[ID] " (find IDs with ` + "`ebb get deployment NAME`" + `). With -f the output
is followed until the replicas end or Ctrl-C.`,
		Example: `  ebb logs diabetes
  ebb logs diabetes --replica diabetes-x1y2z3 --tail -1
  ebb logs diabetes -f`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Tail == 0 || o.Tail < -1 {
				return fmt.Errorf("--tail %d must be a number of lines from 1 up, or -1 for the whole log", o.Tail)
			}
			ctx := cmd.Context()
			rc, err := newAPIClient(cmd).Logs(ctx, args[0], o)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(cmd.OutOrStdout(), rc)
			if err != nil && (ctx.Err() != nil || errors.Is(err, io.ErrUnexpectedEOF)) {
				return nil // Ctrl-C, or the server went away while following
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Replica, "replica", "", "ID of the one replica to show (IDs: ebb get deployment NAME)")
	f.BoolVarP(&o.Follow, "follow", "f", false, "keep printing new output until the replicas end or Ctrl-C")
	f.Int64Var(&o.Tail, "tail", 100, "lines from the end of each replica's log; -1 for the whole log")
	addServerFlag(cmd)
	return cmd
}
