package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/registry"
)

func newModelsCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "models",
		Aliases: []string{"model"},
		Short:   "Register model versions, move aliases and inspect lineage",
		Example: `  ebb models push ./model.json --name diabetes --alias champion --metric rmse=54.1
  ebb models list
  ebb models show diabetes             # versions, aliases and states
  ebb models show diabetes@champion    # one version with its lineage
  ebb models alias diabetes champion 2
  ebb models tag diabetes:2 stage=prod
  ebb models delete diabetes:1         # refused while an alias or deployment uses it
  ebb models import-mlflow ./mlruns/0/RUN/artifacts/model --name diabetes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	addServerFlag(cmd)
	addOutputFlag(cmd, &output)
	cmd.AddCommand(
		newModelsListCmd(&output),
		newModelsShowCmd(&output),
		newModelsAliasCmd(&output),
		newModelsPushCmd(&output),
		newModelsImportCmd(&output),
		newModelsTagCmd(&output),
		newModelsProfileCmd(&output),
		newModelsDeleteCmd(),
	)
	return cmd
}

func newModelsListCmd(output *string) *cobra.Command {
	var prefix string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List models with their latest version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			all, err := allModels(cmd.Context(), newAPIClient(cmd), prefix, limit)
			if err != nil {
				return err
			}
			now := time.Now()
			return writeOutput(cmd.OutOrStdout(), *output, api.ModelList{Items: all}, func(w io.Writer) error {
				if len(all) == 0 {
					_, err := fmt.Fprintln(w, "No models. Push one with `ebb models push FILE --name NAME`.")
					return err
				}
				tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
				fmt.Fprintln(tw, "NAME\tLATEST\tUPDATED\tDESCRIPTION")
				for _, m := range all {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, orNone(versionOrNone(m.LatestVersion)),
						age(now, m.UpdatedAt), m.Description)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "only models whose name starts with this")
	cmd.Flags().IntVar(&limit, "limit", 1000, "list at most this many models")
	return cmd
}

func versionOrNone(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func newModelsShowCmd(output *string) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME[:VERSION|@ALIAS]",
		Short: "Show a model's versions and aliases, or one version with its lineage",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutputWide(*output); err != nil {
				return err
			}
			return showModel(cmd.Context(), newAPIClient(cmd), cmd.OutOrStdout(), *output, args[0], *output == outputWide)
		},
	}
}

// showModel writes a model with its versions and aliases, or for
// NAME:VERSION or NAME@ALIAS one version with its lineage.
func showModel(ctx context.Context, c *apiclient.Client, w io.Writer, output, arg string, wide bool) error {
	now := time.Now()
	if ref, ok := registry.ParseRef(arg); ok {
		n := ref.Version
		if ref.Alias != "" {
			a, err := c.GetAlias(ctx, ref.Model, ref.Alias)
			if err != nil {
				return err
			}
			n = a.Version
		}
		v, err := c.GetVersion(ctx, ref.Model, n)
		if err != nil {
			return err
		}
		aliases, err := c.ListAliases(ctx, ref.Model)
		if err != nil {
			return err
		}
		return writeOutput(w, output, v, func(w io.Writer) error {
			return writeVersionDetail(w, v, aliasesOf(aliases)[v.Version], now)
		})
	}
	if err := registry.ValidateName("model name", arg); err != nil {
		return fmt.Errorf("%v: write NAME, NAME:VERSION or NAME@ALIAS", err)
	}
	m, err := c.GetModel(ctx, arg)
	if err != nil {
		return err
	}
	vs, err := c.AllVersions(ctx, arg)
	if err != nil {
		return err
	}
	out := struct {
		api.ModelDetail
		Versions []registry.Version `json:"versions"`
	}{m, vs}
	return writeOutput(w, output, out, func(w io.Writer) error {
		return writeModelDetail(w, m, vs, now, wide)
	})
}

// aliasesOf maps versions to the names of the aliases pointing at them.
func aliasesOf(as []registry.Alias) map[int][]string {
	out := map[int][]string{}
	for _, a := range as {
		out[a.Version] = append(out[a.Version], a.Name)
	}
	return out
}

func writeModelDetail(w io.Writer, m api.ModelDetail, vs []registry.Version, now time.Time, wide bool) error {
	fmt.Fprintf(w, "Model:       %s\n", m.Name)
	if m.Description != "" {
		fmt.Fprintf(w, "Description: %s\n", m.Description)
	}
	fmt.Fprintf(w, "Created:     %s (%s ago)\n", m.CreatedAt.Format(time.RFC3339), age(now, m.CreatedAt))
	if len(vs) == 0 {
		_, err := fmt.Fprintf(w, "\nNo versions. Push one with `ebb models push FILE --name %s`.\n", m.Name)
		return err
	}
	byVersion := aliasesOf(m.Aliases)
	fmt.Fprintln(w)
	header := []string{"VERSION", "ALIASES", "STATE", "ENGINE", "SHA256", "SIZE", "CREATED", "LAST USED", "SOURCE"}
	if wide {
		header = append(header, "TAGS", "METRICS")
	}
	var rows [][]string
	var warned []string
	for _, v := range vs {
		used := "never"
		if !v.LastUsedAt.IsZero() {
			used = age(now, v.LastUsedAt) + " ago"
		}
		row := []string{strconv.Itoa(v.Version), orNone(strings.Join(byVersion[v.Version], ",")),
			string(v.State), v.Engine, shortSum(v.SHA256), humanBytes(v.Size), age(now, v.CreatedAt), used, orNone(v.Lineage.Source)}
		if wide {
			row = append(row, orNone(joinMap(v.Tags, func(s string) string { return s })),
				orNone(joinMap(v.Lineage.Metrics, func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) })))
		}
		rows = append(rows, row)
		if v.State == registry.StateWarned {
			warned = append(warned, strconv.Itoa(v.Version))
		}
	}
	if err := writeRows(w, header, rows); err != nil {
		return err
	}
	if len(warned) > 0 {
		fmt.Fprintf(w, "\nWarning: version(s) %s are unused and will retire; point an alias or a deployment at one to keep it.\n",
			strings.Join(warned, ", "))
	}
	return nil
}

func writeVersionDetail(w io.Writer, v registry.Version, aliases []string, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	row := func(k, val string) {
		if val != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, val)
		}
	}
	row("Model", v.Model)
	row("Version", strconv.Itoa(v.Version))
	row("Aliases", strings.Join(aliases, ", "))
	row("State", fmt.Sprintf("%s (since %s)", v.State, v.StateChangedAt.Format(time.RFC3339)))
	row("Engine", v.Engine)
	row("Artifact", v.ArtifactURI)
	row("SHA256", v.SHA256)
	row("Size", humanBytes(v.Size))
	if v.Packaging == registry.PackagingTar {
		row("Packaging", "directory (tar)")
		row("Entry", v.Entry)
	}
	row("Created", fmt.Sprintf("%s (%s ago)", v.CreatedAt.Format(time.RFC3339), age(now, v.CreatedAt)))
	row("Created by", v.CreatedBy)
	if !v.LastUsedAt.IsZero() {
		row("Last used", fmt.Sprintf("%s (%s ago)", v.LastUsedAt.Format(time.RFC3339), age(now, v.LastUsedAt)))
	}
	l := v.Lineage
	row("Source", l.Source)
	row("Data", l.DataURI)
	row("Data SHA256", l.DataSHA256)
	row("Code commit", l.CodeCommit)
	row("Parameters", joinMap(l.Parameters, func(s string) string { return s }))
	row("Metrics", joinMap(l.Metrics, func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }))
	row("Tags", joinMap(v.Tags, func(s string) string { return s }))
	row("Inputs", tensors(v.Signature.Inputs))
	row("Outputs", tensors(v.Signature.Outputs))
	return tw.Flush()
}

func joinMap[V any](m map[string]V, format func(V) string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + format(m[k])
	}
	return strings.Join(parts, " ")
}

func tensors(ts []oip.TensorMetadata) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		dims := make([]string, len(t.Shape))
		for j, d := range t.Shape {
			dims[j] = strconv.FormatInt(d, 10)
		}
		parts[i] = fmt.Sprintf("%s %s[%s]", t.Name, t.Datatype, strings.Join(dims, ","))
	}
	return strings.Join(parts, ", ")
}

// shortSum abbreviates a SHA-256 the way git abbreviates commits.
func shortSum(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return orNone(s)
}

func newModelsAliasCmd(output *string) *cobra.Command {
	var expect int
	var del bool
	cmd := &cobra.Command{
		Use:   "alias NAME ALIAS [VERSION]",
		Short: "Point an alias at a version (deployments that follow it roll over), or show its history",
		Example: `  ebb models alias diabetes champion 3               # move champion to version 3
  ebb models alias diabetes champion 3 --expect 2    # only if it points at 2 now
  ebb models alias diabetes champion                 # who moved it when
  ebb models alias diabetes challenger --delete`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			c := newAPIClient(cmd)
			ctx := cmd.Context()
			w := cmd.OutOrStdout()
			name, alias := args[0], args[1]
			var exp *int
			if cmd.Flags().Changed("expect") {
				exp = &expect
			}
			switch {
			case del:
				if len(args) == 3 {
					return fmt.Errorf("--delete takes no VERSION")
				}
				if err := c.DeleteAlias(ctx, name, alias, exp, currentUser()); err != nil {
					return err
				}
				_, err := fmt.Fprintf(w, "alias %s@%s deleted\n", name, alias)
				return err
			case len(args) == 2:
				hist, err := c.AliasHistory(ctx, name, alias)
				if err != nil {
					return err
				}
				return writeOutput(w, *output, api.MoveList{Items: hist}, func(w io.Writer) error {
					tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
					fmt.Fprintln(tw, "AT\tFROM\tTO\tBY")
					for _, m := range hist {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.At.Format(time.RFC3339), orNone(versionOrNone(m.From)),
							orNone(versionOrNone(m.To)), orNone(m.By))
					}
					return tw.Flush()
				})
			}
			v, err := strconv.Atoi(args[2])
			if err != nil || v < 1 {
				return fmt.Errorf("VERSION %q must be a version number such as 3", args[2])
			}
			move, err := c.SetAlias(ctx, name, alias, v, exp, currentUser())
			if err != nil {
				return err
			}
			return writeOutput(w, *output, move, func(w io.Writer) error {
				var err error
				switch move.From {
				case move.To:
					_, err = fmt.Fprintf(w, "alias %s@%s already points at version %d\n", name, alias, move.To)
				case 0:
					_, err = fmt.Fprintf(w, "alias %s@%s created: version %d\n", name, alias, move.To)
				default:
					_, err = fmt.Fprintf(w, "alias %s@%s moved: version %d -> %d\n", name, alias, move.From, move.To)
				}
				return err
			})
		},
	}
	cmd.Flags().IntVar(&expect, "expect", 0, "move only if the alias points at this version now (0: only if it does not exist yet)")
	cmd.Flags().BoolVar(&del, "delete", false, "delete the alias")
	return cmd
}
