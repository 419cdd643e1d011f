package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// addUndoCommand adds `ebb rollout undo` to cmd.
func addUndoCommand(cmd *cobra.Command, output *string) {
	var toRevision int
	undo := &cobra.Command{
		Use:   "undo DEPLOYMENT [--to-revision N]",
		Short: "Move a deployment back to the version it served before, at once",
		Long: `Move a deployment back, at once and without a canary, to the registry
version that served it before the current one, or to revision N of
` + "`ebb rollout history DEPLOYMENT`" + `. A deployment that follows an alias of that
model has the alias moved (every deployment that follows it moves too);
any other has spec.model set to the version. Undo again to go forward.

Refused while a rollout of the deployment is active (abort it first) or
its traffic is split, and when the version can no longer serve. The last
--keep-versions versions each deployment served (3 by default) are never
retired, so they can always be undone to.`,
		Example: `  ebb rollout undo diabetes
  ebb rollout undo diabetes --to-revision 2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if toRevision < 0 {
				return fmt.Errorf("--to-revision %d: revisions are numbered from 1 (`ebb rollout history %s`)", toRevision, args[0])
			}
			res, err := newAPIClient(cmd).UndoRollout(cmd.Context(), args[0], toRevision)
			if err != nil {
				return err
			}
			return writeOutput(cmd.OutOrStdout(), *output, res, func(w io.Writer) error {
				from := res.From
				if from == "" {
					from = "a path"
				}
				how := "spec.model set to " + res.Model
				if res.AliasMoved {
					how = fmt.Sprintf("alias %s moved to %s", res.Model, res.To)
				}
				_, err := fmt.Fprintf(w, "%s: %s → %s (revision %d): %s\n", res.Deployment, from, res.To, res.Revision, how)
				return err
			})
		},
	}
	undo.Flags().IntVar(&toRevision, "to-revision", 0, "the revision `N` of ebb rollout history to go back to; default the version served before the current one")
	cmd.AddCommand(undo)
}
