package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/autoscale"
)

// historyReplay is what `ebb simulate --from-history -o json` prints.
type historyReplay struct {
	Deployment string           `json:"deployment"`
	Decisions  []replayedRecord `json:"decisions"`
	Replayed   int              `json:"replayed"`
	Differ     int              `json:"differ"`
}

type replayedRecord struct {
	autoscale.Record
	// Same says whether replaying the inputs took the same decision;
	// Replay is that decision when it did not.
	Same   bool    `json:"same"`
	Replay *string `json:"replay,omitempty"`
}

// simulateHistory replays a deployment's recorded autoscaler decisions
// (GET /v1/deployments/{name}/decisions) through autoscale.Replay and
// shows each with its inputs and whether it replays the same.
func simulateHistory(cmd *cobra.Command, name, output string) error {
	recs, err := newAPIClient(cmd).Decisions(cmd.Context(), name)
	if err != nil {
		return err
	}
	out := historyReplay{Deployment: name, Decisions: make([]replayedRecord, 0, len(recs))}
	for _, r := range recs {
		rr := replayedRecord{Record: r, Same: r.Replays()}
		if rr.Same {
			out.Replayed++
		} else {
			d := autoscale.Replay(r)
			s := fmt.Sprintf("%d: %s", d.Desired, d.Reason)
			rr.Replay = &s
			out.Differ++
		}
		out.Decisions = append(out.Decisions, rr)
	}
	return writeOutput(cmd.OutOrStdout(), output, out, func(w io.Writer) error {
		if len(recs) == 0 {
			_, err := fmt.Fprintf(w, "No decisions recorded for %s yet: the control loop records them as it scales (the latest %d changes, repeats folded).\n", name, autoscale.DefaultHistory)
			return err
		}
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tDESIRED\tREASON\tSTABLE\tPANIC-WINDOW\tIN-FLIGHT\tREADY\tMIN-MAX\tREPEATS\tREPLAY")
		for _, r := range out.Decisions {
			replay := "same"
			if !r.Same {
				replay = "differs: " + *r.Replay
			}
			panic := ""
			if r.Panic {
				panic = " (panic)"
			}
			fmt.Fprintf(tw, "%s\t%d%s\t%s\t%.2f\t%.2f\t%d\t%d\t%d-%d\t%d\t%s\n", r.Time.Local().Format(time.DateTime), r.Desired, panic, r.Reason,
				r.Metrics.StableConcurrency, r.Metrics.PanicConcurrency, r.Metrics.InFlight, r.Metrics.Ready,
				r.Scaling.MinReplicas, r.Scaling.MaxReplicas, r.Repeats, replay)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "\n%d decisions: %d replay to the same decision from their recorded inputs, %d differ.\n", len(recs), out.Replayed, out.Differ)
		return err
	})
}

// describeDecisions is how many of the latest decisions ebb describe shows.
const describeDecisions = 5

// writeDecisions writes the latest autoscaler decisions for ebb describe;
// err, when set, is why they could not be read (said, not failed; nothing
// at all from a server that keeps no decisions).
func writeDecisions(w io.Writer, name string, recs []autoscale.Record, err error, now time.Time) error {
	if ae, ok := err.(*apiclient.Error); ok && ae.Code == "request/not_found" {
		return nil // a server from before decisions were recorded
	}
	fmt.Fprintf(w, "Decisions (the autoscaler's latest; ebb simulate --from-history %s replays them):\n", name)
	switch {
	case err != nil:
		_, err := fmt.Fprintf(w, "  <unavailable: %v>\n", err)
		return err
	case len(recs) == 0:
		_, err := fmt.Fprintln(w, "  <none>")
		return err
	}
	if len(recs) > describeDecisions {
		recs = recs[len(recs)-describeDecisions:]
	}
	rows := make([][]string, len(recs))
	for i, r := range recs {
		when := age(now, r.Time)
		if r.Repeats > 0 {
			when += fmt.Sprintf(" (x%d)", r.Repeats+1)
		}
		rows[i] = []string{when, fmt.Sprint(r.Desired), fmt.Sprintf("%.2f", r.Metrics.StableConcurrency), fmt.Sprintf("%.2f", r.Metrics.PanicConcurrency),
			fmt.Sprint(r.Metrics.InFlight), fmt.Sprint(r.Metrics.Ready), r.Reason}
	}
	return writeIndented(w, []string{"AGE", "DESIRED", "STABLE", "PANIC-WINDOW", "IN-FLIGHT", "READY", "REASON"}, rows)
}
