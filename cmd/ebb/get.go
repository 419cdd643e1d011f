package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
)

func newGetCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get RESOURCE [NAME]",
		Short: "Show deployments as a table, JSON or YAML",
		Example: `  ebb get deployments
  ebb get deployment diabetes            # with its replicas and cold-start phases
  ebb get deployments diabetes -o yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("unknown resource %q: use `ebb get deployments`", args[0])
		},
	}
	addServerFlag(cmd)
	addOutputFlag(cmd, &output)
	cmd.AddCommand(newGetDeploymentsCmd(&output))
	return cmd
}

func newGetDeploymentsCmd(output *string) *cobra.Command {
	return &cobra.Command{
		Use:     "deployments [NAME]",
		Aliases: []string{"deployment", "deploy"},
		Short:   "List deployments, or show one with its replicas",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			c := newAPIClient(cmd)
			w := cmd.OutOrStdout()
			now := time.Now()
			if len(args) == 1 {
				d, err := c.GetDeployment(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return writeOutput(w, *output, d, func(w io.Writer) error {
					return writeDeploymentDetail(w, d, now)
				})
			}
			ds, err := c.ListDeployments(cmd.Context())
			if err != nil {
				return err
			}
			return writeOutput(w, *output, api.List{Items: ds}, func(w io.Writer) error {
				if len(ds) == 0 {
					_, err := fmt.Fprintln(w, "No deployments. Create one with `ebb deploy -f FILE`.")
					return err
				}
				return writeDeploymentTable(w, ds, now)
			})
		},
	}
}

// writeDeploymentTable writes one row per deployment.
func writeDeploymentTable(w io.Writer, ds []serving.Deployment, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMODEL\tENGINE\tREADY\tMIN\tMAX\tAGE")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%s\n", d.Name, d.Spec.Model, d.Spec.Engine,
			d.Status.ReadyReplicas, d.Status.DesiredReplicas,
			d.Spec.Scaling.MinReplicas, d.Spec.Scaling.MaxReplicas, age(now, d.CreatedAt))
	}
	return tw.Flush()
}

// writeDeploymentDetail writes d's row, then its replicas with where their
// cold starts spent time, then the control loop's latest reason.
func writeDeploymentDetail(w io.Writer, d serving.Deployment, now time.Time) error {
	if err := writeDeploymentTable(w, []serving.Deployment{d}, now); err != nil {
		return err
	}
	if rs := d.Status.ReplicaStatuses; len(rs) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
		fmt.Fprintln(tw, "REPLICA\tSTATE\tENDPOINT\tAGE\tRESTARTS\tCOLD START")
		for _, r := range rs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.ID, r.State, orNone(r.Endpoint),
				age(now, r.StartedAt), r.Restarts, coldStart(r.ColdStart))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, r := range rs {
			if r.Message != "" {
				fmt.Fprintf(w, "%s: %s\n", r.ID, r.Message)
			}
		}
	}
	if d.Status.Reason != "" {
		fmt.Fprintf(w, "\nReason: %s\n", d.Status.Reason)
	}
	return nil
}

// coldStart summarises phases as "process_started 12ms, model_loaded 80ms
// (total 92ms)".
func coldStart(phases []serving.Phase) string {
	if len(phases) == 0 {
		return "-"
	}
	parts := make([]string, len(phases))
	var total time.Duration
	for i, p := range phases {
		parts[i] = p.Name + " " + roundDuration(p.Duration.Duration).String()
		total += p.Duration.Duration
	}
	return fmt.Sprintf("%s (total %s)", strings.Join(parts, ", "), roundDuration(total))
}

// roundDuration keeps durations short: microseconds below 1ms,
// milliseconds below 10s, tenths of a second above.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	if d < 10*time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
