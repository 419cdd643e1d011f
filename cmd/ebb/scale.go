package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func newScaleCmd() *cobra.Command {
	var minR, maxR, replicas int32
	var auto bool
	cmd := &cobra.Command{
		Use:   "scale NAME (--replicas N | --auto | --min N | --max N)",
		Short: "Pin a deployment's replicas, or set its autoscaling range",
		Long: `Scale a deployment.

--replicas N pins it at exactly N replicas whatever the demand: the
autoscaler steps aside until the pin is removed (spec.replicas, which
kubectl scale sets in a cluster too). --replicas 0 scales it to zero for
good: requests get 503 deployment/scaled_to_zero and do not start it.

--auto removes the pin and hands the deployment back to the autoscaler,
which keeps the replica count between --min and --max (spec.scaling);
--min 0 lets it scale to zero when idle, and the next request wakes it.`,
		Example: `  ebb scale diabetes --replicas 2         # pin at 2
  ebb scale diabetes --replicas 0         # off: refuse requests, start nothing
  ebb scale diabetes --auto               # autoscale again
  ebb scale diabetes --auto --min 0 --max 8
  ebb scale diabetes --min 1 --max 8      # the range the autoscaler uses`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			spec := map[string]any{}
			scaling := map[string]int32{}
			if fl.Changed("min") {
				scaling["minReplicas"] = minR
			}
			if fl.Changed("max") {
				scaling["maxReplicas"] = maxR
			}
			pin := fl.Changed("replicas")
			switch {
			case pin && auto:
				return errors.New("--replicas pins the count and --auto removes the pin: give one of them")
			case pin && len(scaling) > 0:
				return errors.New("--replicas pins the count: use it alone, or use --auto with --min and --max to autoscale within a range")
			case pin && replicas < 0:
				return fmt.Errorf("--replicas must be 0 or more, got %d: use --auto to autoscale", replicas)
			case pin:
				spec["replicas"] = replicas
			case auto:
				spec["replicas"] = nil // a merge patch's null removes the pin
			}
			if len(scaling) > 0 {
				spec["scaling"] = scaling
			}
			if len(spec) == 0 {
				return errors.New("nothing to change: give --replicas, --auto, --min or --max")
			}
			patch, err := json.Marshal(map[string]any{"spec": spec})
			if err != nil {
				return err
			}
			d, err := newAPIClient(cmd).PatchDeployment(cmd.Context(), args[0], patch)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			sc := d.Spec.Scaling
			switch n, pinned := d.Spec.Pinned(); {
			case pinned && n == 0:
				fmt.Fprintf(out, "deployment/%s scaled to zero: requests are refused and start nothing until `ebb scale %s --auto` or `--replicas N`\n", d.Name, d.Name)
			case pinned && pin:
				what := "replicas"
				if n == 1 {
					what = "replica"
				}
				fmt.Fprintf(out, "deployment/%s pinned at %d %s: the autoscaler is off until `ebb scale %s --auto`\n", d.Name, n, what, d.Name)
			case pinned:
				fmt.Fprintf(out, "deployment/%s scaled (min %d, max %d), still pinned at %d: the range applies after `ebb scale %s --auto`\n", d.Name, sc.MinReplicas, sc.MaxReplicas, n, d.Name)
			case auto:
				fmt.Fprintf(out, "deployment/%s autoscaled (min %d, max %d)\n", d.Name, sc.MinReplicas, sc.MaxReplicas)
			default:
				fmt.Fprintf(out, "deployment/%s scaled (min %d, max %d)\n", d.Name, sc.MinReplicas, sc.MaxReplicas)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Int32Var(&replicas, "replicas", 0, "pin exactly N replicas whatever the demand (0: scaled to zero, requests refused)")
	fl.BoolVar(&auto, "auto", false, "remove the pin: the autoscaler keeps the count between --min and --max")
	fl.Int32Var(&minR, "min", 0, "fewest replicas the autoscaler keeps (0 allows scale to zero when idle)")
	fl.Int32Var(&maxR, "max", 0, "most replicas the autoscaler runs")
	addServerFlag(cmd)
	return cmd
}
