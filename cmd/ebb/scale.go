package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func newScaleCmd() *cobra.Command {
	var minR, maxR, replicas int32
	cmd := &cobra.Command{
		Use:   "scale NAME [--min N] [--max N] [--replicas N]",
		Short: "Change a deployment's replica bounds",
		Long: `Change the minimum and maximum number of replicas of a deployment. The
autoscaler keeps the replica count between them; --min 0 lets the
deployment scale to zero when idle, and --replicas N pins it at N.`,
		Example: `  ebb scale diabetes --min 1 --max 8
  ebb scale diabetes --replicas 2
  ebb scale diabetes --min 0             # allow scale to zero`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			scaling := map[string]int32{}
			switch {
			case fl.Changed("replicas") && (fl.Changed("min") || fl.Changed("max")):
				return errors.New("--replicas sets both bounds: use it alone, or use --min and --max")
			case fl.Changed("replicas"):
				scaling["minReplicas"], scaling["maxReplicas"] = replicas, replicas
			default:
				if fl.Changed("min") {
					scaling["minReplicas"] = minR
				}
				if fl.Changed("max") {
					scaling["maxReplicas"] = maxR
				}
			}
			if len(scaling) == 0 {
				return errors.New("nothing to change: give --min, --max or --replicas")
			}
			patch, err := json.Marshal(map[string]any{"spec": map[string]any{"scaling": scaling}})
			if err != nil {
				return err
			}
			d, err := newAPIClient(cmd).PatchDeployment(cmd.Context(), args[0], patch)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployment/%s scaled (min %d, max %d)\n",
				d.Name, d.Spec.Scaling.MinReplicas, d.Spec.Scaling.MaxReplicas)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Int32Var(&minR, "min", 0, "fewest replicas to keep (0 allows scale to zero)")
	fl.Int32Var(&maxR, "max", 0, "most replicas to run")
	fl.Int32Var(&replicas, "replicas", 0, "run exactly N replicas (sets --min and --max to N)")
	addServerFlag(cmd)
	return cmd
}
