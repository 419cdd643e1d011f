package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/serving"
)

// The multi-model pools' commands: `ebb pools apply|get|delete`.

func newPoolsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "pools",
		Aliases: []string{"pool"},
		Short:   "Create, list and delete multi-model pools: a few replicas that host many models, loaded on demand",
		Long: `A pool is a set of replicas of one engine (trees, onnx, or python classes that opt in) that host many
models each, loading and unloading them on demand within a memory budget per
replica. A deployment joins a pool by naming it in its spec:

  spec:
    model: models/customer-42.json
    pool: {name: customers}

Clients call it by the deployment's name, as any deployment. The pool scales
0:N on the demand of all its models; each model is placed on shardSize of its
replicas (more while it is hot), so a model that crashes its replicas harms
only the models placed with it, and after three crashes it is quarantined.`,
	}
	addServerFlag(cmd)
	get := &getFlags{}
	cmd.AddCommand(newPoolsApplyCmd(), newPoolsGetCmd(get), newPoolsDeleteCmd())
	return cmd
}

func newPoolsApplyCmd() *cobra.Command {
	return newApplyFileCmd(applyFile{
		noun: "pool",
		docs: poolDocs,
		apply: func(ctx context.Context, c *apiclient.Client, name string, body []byte) (bool, error) {
			_, created, err := c.ApplyPoolJSON(ctx, name, body)
			return created, err
		},
	}, "Create pools, or replace their specs, from a file",
		`Apply reads one or more pools, YAML or JSON, separated by "---" lines: each
in ebb's form (name and spec, as `+"`ebb pools get NAME -o yaml`"+` prints it) or a
ModelPool manifest (apiVersion serving.ebb.dev/v1alpha1, kind ModelPool,
metadata.name, spec), as kubectl applies it:

  name: customers
  spec:
    engine: trees
    memoryBudget: 256MiB
    shardSize: 2
    minReplicas: 0
    maxReplicas: 4`,
		`  ebb pools apply -f customers-pool.yaml`)
}

// poolDocs reads data, YAML documents or one JSON object, into pools.
func poolDocs(data []byte) ([]specDoc, error) {
	return specDocs(data, func(body []byte) (specDoc, error) {
		return objectDoc(body, objectForm{kind: "ModelPool", noun: "pool", example: "customers",
			spec: "the pool's engine and memoryBudget", elsewhere: "deployments go to `ebb deploy -f`, routes to `ebb routes apply -f`"})
	}, "holds no pool: write one with name and spec, or a ModelPool manifest")
}

func newPoolsGetCmd(f *getFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "get [NAME]",
		Aliases: []string{"list"},
		Short:   "List pools, or show one with its replicas, memory and quarantined models",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(f.output); err != nil {
				return err
			}
			c, w, now := newAPIClient(cmd), cmd.OutOrStdout(), time.Now()
			if len(args) == 1 {
				p, err := c.GetPool(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return writeOutput(w, f.output, p, func(w io.Writer) error { return writePoolDetail(w, p, now) })
			}
			ps, err := c.ListPools(cmd.Context())
			if err != nil {
				return err
			}
			return writeOutput(w, f.output, api.PoolList{Items: ps}, func(w io.Writer) error {
				if len(ps) == 0 {
					_, err := fmt.Fprintln(w, "No pools. Create one with `ebb pools apply -f pool.yaml`.")
					return err
				}
				rows := make([][]string, len(ps))
				for i, p := range ps {
					st := p.Status
					rows[i] = []string{p.Name, p.Spec.Engine, p.Spec.MemoryBudget, fmt.Sprintf("%d/%d", st.ReadyReplicas, st.DesiredReplicas),
						fmt.Sprintf("%d/%d", st.Loaded, st.Models), fmt.Sprint(len(st.Quarantined)), age(now, p.CreatedAt)}
				}
				return writeRows(w, []string{"NAME", "ENGINE", "BUDGET", "READY", "LOADED", "QUARANTINED", "AGE"}, rows)
			})
		},
	}
	addOutputFlag(cmd, &f.output)
	return cmd
}

// writePoolDetail shows one pool: its spec, its replicas' memory, and
// the models it quarantined.
func writePoolDetail(w io.Writer, p serving.Pool, now time.Time) error {
	s, st := p.Spec, p.Status
	fmt.Fprintf(w, "Name:          %s\nEngine:        %s\nMemory budget: %s per replica\nShard size:    %d\nReplicas:      %d ready, %d desired (%d to %d)\nModels:        %d, %d loaded\nGeneration:    %d\nAge:           %s\n",
		p.Name, s.Engine, s.MemoryBudget, s.ShardSize, st.ReadyReplicas, st.DesiredReplicas, s.MinReplicas, s.MaxReplicas, st.Models, st.Loaded, p.Generation, age(now, p.CreatedAt))
	if st.Reason != "" {
		fmt.Fprintf(w, "Reason:        %s\n", st.Reason)
	}
	if st.Failure != "" {
		fmt.Fprintf(w, "Failure:       %s\n", st.Failure)
	}
	if len(st.ReplicaStatuses) > 0 {
		fmt.Fprintln(w)
		rows := make([][]string, len(st.ReplicaStatuses))
		for i, r := range st.ReplicaStatuses {
			rows[i] = []string{r.ID, orNone(r.Slot), r.State, fmt.Sprint(r.Models), pool.FormatBytes(r.UsedBytes) + " of " + pool.FormatBytes(r.BudgetBytes)}
		}
		if err := writeRows(w, []string{"REPLICA", "SLOT", "STATE", "MODELS", "MEMORY"}, rows); err != nil {
			return err
		}
	}
	if len(st.Quarantined) > 0 {
		fmt.Fprintln(w, "\nQuarantined:")
		for _, q := range st.Quarantined {
			fmt.Fprintf(w, "  %s: %s\n", q.Model, strings.TrimSpace(q.Reason))
		}
	}
	return nil
}

func newPoolsDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a pool that no deployment names; its replicas stop",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := newAPIClient(cmd).DeletePool(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pool/%s deleted\n", args[0])
			return nil
		},
	}
}
