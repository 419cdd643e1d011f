package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
)

func newRolloutCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Roll deployments out to new model versions step by step, and see how they moved",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	addServerFlag(cmd)
	addOutputFlag(cmd, &output)
	addRolloutCommands(cmd, &output)
	addUndoCommand(cmd, &output)
	cmd.AddCommand(&cobra.Command{
		Use:   "history NAME",
		Short: "Which model version served a deployment when, and why (the alias move or spec behind it)",
		Example: `  ebb rollout history diabetes
  ebb rollout history diabetes -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			revs, err := rolloutHistory(cmd, newAPIClient(cmd), args[0])
			if err != nil {
				return err
			}
			now := time.Now()
			return writeOutput(cmd.OutOrStdout(), output, struct {
				Items []revision `json:"items"`
			}{revs}, func(w io.Writer) error {
				if len(revs) == 0 {
					_, err := fmt.Fprintf(w, "No history for %s: it has not served a registry version (`ebb models`) yet.\n", args[0])
					return err
				}
				rows := make([][]string, len(revs))
				for i, r := range revs {
					rows[i] = []string{strconv.Itoa(r.Revision), r.Version, r.Since.UTC().Format(time.RFC3339), age(now, r.Since), orNone(r.Reason)}
				}
				return writeRows(w, []string{"REVISION", "VERSION", "SINCE", "AGE", "WHY"}, rows)
			})
		},
	})
	return cmd
}

// revision is one entry of a deployment's rollout history.
type revision struct {
	Revision int       `json:"revision"`
	Version  string    `json:"version"`
	Since    time.Time `json:"since"`
	Reason   string    `json:"reason,omitempty"`
}

// aliasSlack is how long after an alias move its deployments may start
// serving the version it moved to and still count as moved by it: a roll
// starts replicas and waits for them to be ready.
const aliasSlack = time.Hour

// rolloutHistory reads the deployment's serving records and explains each
// by the move of the alias the deployment follows, or by its spec.
func rolloutHistory(cmd *cobra.Command, c *apiclient.Client, name string) ([]revision, error) {
	ctx := cmd.Context()
	recs, err := c.ServingHistory(ctx, name)
	if err != nil {
		return nil, err
	}
	// The deployment may be gone; its history stays and has no reasons.
	var ref serving.ModelRef
	var moves []registry.AliasMove
	if d, err := c.GetDeployment(ctx, name); err == nil {
		ref, _ = serving.ParseModelRef(d.Spec.Model)
		if ref.Alias != "" {
			if moves, err = c.AliasHistory(ctx, ref.Model, ref.Alias); err != nil {
				moves = nil // a deleted alias has no history to explain with
			}
		}
	}
	revs := make([]revision, len(recs))
	for i, r := range recs {
		v := serving.ModelRef{Model: r.Model, Version: r.Version}
		revs[i] = revision{Revision: i + 1, Version: v.String(), Since: r.At}
		switch {
		case r.Model == ref.Model && ref.Alias != "":
			if m, ok := moveTo(moves, r); ok {
				revs[i].Reason = moveText(m)
			}
		case r.Model == ref.Model && ref.Version == r.Version:
			revs[i].Reason = "the spec names " + v.String()
		}
		if revs[i].Reason == "" && i == 0 {
			revs[i].Reason = "first version served"
		}
	}
	return revs, nil
}

// moveTo finds the latest move of the alias to r's version before r began
// (within aliasSlack).
func moveTo(moves []registry.AliasMove, r registry.ServingRecord) (registry.AliasMove, bool) {
	for i := len(moves) - 1; i >= 0; i-- {
		m := moves[i]
		if m.To == r.Version && !m.At.After(r.At) && r.At.Sub(m.At) <= aliasSlack {
			return m, true
		}
	}
	return registry.AliasMove{}, false
}

func moveText(m registry.AliasMove) string {
	s := fmt.Sprintf("alias %s moved %d → %d", m.Alias, m.From, m.To)
	if m.From == 0 {
		s = fmt.Sprintf("alias %s created at %d", m.Alias, m.To)
	}
	if m.By != "" {
		s += " by " + m.By
	}
	return s
}
