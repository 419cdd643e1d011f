package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newDeleteCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete [deployment|route] NAME",
		Short: "Delete a deployment and stop its replicas (or a route object)",
		Example: `  ebb delete diabetes
  ebb delete deployment diabetes
  ebb delete route classify`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if len(args) == 2 {
				switch args[0] {
				case "deployment", "deployments", "deploy":
				case "route", "routes":
					return deleteRoute(cmd, newAPIClient(cmd), args[1]) // routes.go
				default:
					return fmt.Errorf("unknown resource %q: use `ebb delete deployment NAME`, `ebb delete route NAME` or `ebb delete NAME`", args[0])
				}
				name = args[1]
			}
			if err := newAPIClient(cmd).DeleteDeployment(cmd.Context(), name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployment/%s deleted\n", name)
			return nil
		},
	}
	addServerFlag(cmd)
	return cmd
}
