package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/monitor"
)

func newDriftCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "drift DEPLOYMENT",
		Short: "Show how far a deployment's inputs and outputs moved from its versions' training data",
		Long: `Show, for each version a deployment serves that has a reference profile,
how far the predictions it logged over the last hour moved from the
profile, feature by feature: PSI for every feature, the KS statistic for
numeric ones and Pearson's chi-squared test (its p-value) for categorical
ones, and a status: ok, warn, drift, or unknown under 100 values.

The monitor counts what the prediction log samples: set
spec.predictionLog.sample on the deployment, and give each version a
profile computed from a sample of its training data (ebb models push
--profile-data FILE, or ebb models profile NAME:V --data FILE).`,
		Example: `  ebb drift diabetes
  ebb drift diabetes -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			rep, err := newAPIClient(cmd).Drift(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return writeOutput(cmd.OutOrStdout(), output, rep, func(w io.Writer) error { return writeDriftTable(w, rep) })
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// writeDriftTable writes one row per feature of each version, after a
// line per version that says its window and status.
func writeDriftTable(w io.Writer, rep api.DriftReport) error {
	if len(rep.Versions) == 0 {
		_, err := fmt.Fprintf(w, "No drift to show for %s: no version it serves has a reference profile (ebb models push FILE --name NAME --profile-data SAMPLE.csv), or it logs no predictions (spec.predictionLog.sample).\n", rep.Deployment)
		return err
	}
	var rows [][]string
	for _, v := range rep.Versions {
		if _, err := fmt.Fprintf(w, "%s: %d rows from %s to %s, against a profile of %d rows: %s\n", v.Version, v.Rows,
			v.From.UTC().Format(time.RFC3339), v.To.UTC().Format(time.RFC3339), v.ProfileRows, v.Status); err != nil {
			return err
		}
		for _, f := range v.Features {
			rows = append(rows, driftRow(v.Version, f))
		}
	}
	fmt.Fprintln(w)
	return writeRows(w, []string{"VERSION", "FEATURE", "KIND", "COUNT", "PSI", "KS", "CHI2/P", "STATUS"}, rows)
}

func driftRow(version string, f monitor.FeatureScore) []string {
	kind := string(f.Kind)
	if f.Output {
		kind += "/output"
	}
	psi, ks, chi := "-", "-", "-"
	if f.Count > 0 {
		psi = strconv.FormatFloat(f.PSI, 'f', 3, 64)
		if f.Kind == monitor.Numeric {
			ks = strconv.FormatFloat(f.KS, 'f', 3, 64)
		} else {
			chi = fmt.Sprintf("%.1f/%.2g", f.Chi2, f.Chi2P)
		}
	}
	return []string{version, f.Feature, kind, strconv.FormatUint(f.Count, 10), psi, ks, chi, f.Status.String()}
}
