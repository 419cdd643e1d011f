package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
)

func newCostCmd() *cobra.Command {
	var since, output string
	cmd := &cobra.Command{
		Use:   "cost [DEPLOYMENT] [--since 7d]",
		Short: "Show the replica-seconds deployments used, against always-on at their peak",
		Long: `Show what deployments' replicas used over a period: replica-seconds
(replicas existing, starting or ready or draining, a second at a time; a
split's tracks and a shadow count with their deployment), the peak, what
running the peak the whole period would have used (always-on), and the
reduction (used / always-on). For deployments whose replicas ask for GPUs
(nvidia.com/gpu, MIG slices counted one each) it adds GPU-seconds used and
always-on at the GPU peak. The server keeps the record in memory for
five weeks: after a restart, or a change of leader in a cluster, a report
says it is partial and covers the time since. The same figures are
ebb_control_replica_seconds_total and ebb_control_gpu_seconds_total in
/metrics.`,
		Example: `  ebb cost                      # every deployment, the last 7 days
  ebb cost diabetes --since 24h
  ebb cost --since 2026-12-01T00:00:00Z -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c := newAPIClient(cmd)
			var list api.CostList
			if len(args) == 1 {
				cost, err := c.Cost(cmd.Context(), args[0], since)
				if err != nil {
					return err
				}
				list = api.CostList{Items: []serving.Cost{cost}, Total: cost}
			} else {
				var err error
				if list, err = c.Costs(cmd.Context(), since); err != nil {
					return err
				}
			}
			var v any = list
			if len(args) == 1 {
				v = list.Total
			}
			return writeOutput(cmd.OutOrStdout(), output, v, func(w io.Writer) error {
				return writeCostTable(w, list, len(args) == 0)
			})
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "the period: a duration back from now (7d, 36h) or an RFC 3339 time (default 7d)")
	addOutputFlag(cmd, &output)
	return cmd
}

func writeCostTable(w io.Writer, list api.CostList, total bool) error {
	// GPU columns only where some deployment's replicas asked for GPUs.
	gpus := list.Total.GPUSeconds > 0 || list.Total.AlwaysOnGPUSeconds > 0
	for _, c := range list.Items {
		gpus = gpus || c.GPUSeconds > 0 || c.AlwaysOnGPUSeconds > 0
	}
	row := func(c serving.Cost) []string {
		r := []string{c.Deployment, fmt.Sprintf("%.0f", c.ReplicaSeconds), fmt.Sprint(c.PeakReplicas), fmt.Sprintf("%.0f", c.AlwaysOnSeconds), fmt.Sprintf("%.3f", c.Reduction)}
		if gpus {
			r = append(r, fmt.Sprintf("%.0f", c.GPUSeconds), fmt.Sprintf("%.0f", c.AlwaysOnGPUSeconds))
		}
		return r
	}
	rows := make([][]string, 0, len(list.Items)+1)
	for _, c := range list.Items {
		rows = append(rows, row(c))
	}
	if total {
		rows = append(rows, row(list.Total))
	}
	header := []string{"DEPLOYMENT", "REPLICA-SECONDS", "PEAK", "ALWAYS-ON", "REDUCTION"}
	if gpus {
		header = append(header, "GPU-SECONDS", "GPU-ALWAYS-ON")
	}
	if err := writeRows(w, header, rows); err != nil {
		return err
	}
	t := list.Total
	period := fmt.Sprintf("from %s to %s", t.Since.UTC().Format(time.RFC3339), t.Until.UTC().Format(time.RFC3339))
	if t.Partial {
		period += fmt.Sprintf("; partial: the server's record starts at %s", t.Recorded.UTC().Format(time.RFC3339))
	}
	_, err := fmt.Fprintln(w, period)
	return err
}
