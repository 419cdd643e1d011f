package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
)

// getFlags are the flags of `ebb get` and its subcommands.
type getFlags struct {
	output   string
	watch    bool
	interval time.Duration
}

func newGetCmd() *cobra.Command {
	f := &getFlags{}
	cmd := &cobra.Command{
		Use:   "get RESOURCE [NAME]",
		Short: "Show deployments or models as a table, JSON or YAML; -w watches",
		Example: `  ebb get deployments
  ebb get deployments -o wide          # with model version, desired replicas, last scale, reason
  ebb get deployment diabetes          # with its replicas and cold-start phases
  ebb get deployments diabetes -o yaml
  ebb get deployments -w               # a new row whenever one changes; Ctrl-C stops
  ebb get models
  ebb get model diabetes               # its versions
  ebb get routes                       # route objects; ebb get route NAME shows its rules`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("unknown resource %q: use `ebb get deployments`, `ebb get models` or `ebb get routes`", args[0])
		},
	}
	addServerFlag(cmd)
	addOutputFlag(cmd, &f.output)
	pf := cmd.PersistentFlags()
	pf.BoolVarP(&f.watch, "watch", "w", false, "after the table, print a row whenever one changes, until Ctrl-C")
	pf.DurationVar(&f.interval, "interval", time.Second, "how often --watch asks the server")
	cmd.AddCommand(newGetDeploymentsCmd(f), newGetModelsCmd(f), newGetRoutesCmd(f))
	return cmd
}

// check validates the flags before any request is sent.
func (f *getFlags) check() error {
	if err := checkOutputWide(f.output); err != nil {
		return err
	}
	if f.watch {
		if f.output != outputTable && f.output != outputWide {
			return fmt.Errorf("--watch prints tables: use it with -o table or -o wide, not -o %s", f.output)
		}
		if f.interval <= 0 {
			return fmt.Errorf("--interval %s must be above zero, such as 1s", f.interval)
		}
	}
	return nil
}

func newGetDeploymentsCmd(f *getFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "deployments [NAME]",
		Aliases: []string{"deployment", "deploy"},
		Short:   "List deployments, or show one with its replicas",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			c := newAPIClient(cmd)
			w := cmd.OutOrStdout()
			wide := f.output == outputWide
			if f.watch {
				return watch(cmd.Context(), w, cmd.ErrOrStderr(), f.interval, deploymentsSnapshot(c, args, wide))
			}
			now := time.Now()
			if len(args) == 1 {
				d, err := c.GetDeployment(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return writeOutput(w, f.output, d, func(w io.Writer) error {
					return writeDeploymentDetail(w, d, now, wide)
				})
			}
			ds, err := c.ListDeployments(cmd.Context())
			if err != nil {
				return err
			}
			return writeOutput(w, f.output, api.List{Items: ds}, func(w io.Writer) error {
				if len(ds) == 0 {
					_, err := fmt.Fprintln(w, "No deployments. Create one with `ebb deploy -f FILE`.")
					return err
				}
				return writeDeploymentTable(w, ds, now, wide)
			})
		},
	}
}

// deploymentHeader returns the columns of a deployment row.
func deploymentHeader(wide bool) []string {
	h := []string{"NAME", "MODEL", "ENGINE", "READY", "MIN", "MAX", "AGE"}
	if wide {
		h = append(h, "VERSION", "DESIRED", "REPLICAS", "LAST SCALE", "REASON")
	}
	return h
}

// deploymentAgeColumn is the AGE column of deploymentHeader: a watch
// ignores it (it changes every second) and marks deleted rows there.
const deploymentAgeColumn = 6

// deploymentRow is one deployment's row.
func deploymentRow(d serving.Deployment, now time.Time, wide bool) []string {
	st := d.Status
	row := []string{d.Name, modelText(d.Spec.Model, st.ModelVersion), orNone(d.Spec.Engine), fmt.Sprintf("%d/%d", st.ReadyReplicas, st.DesiredReplicas),
		fmt.Sprint(d.Spec.Scaling.MinReplicas), fmt.Sprint(d.Spec.Scaling.MaxReplicas), age(now, d.CreatedAt)}
	if wide {
		last := "-"
		if st.LastScaleTime != nil {
			last = age(now, *st.LastScaleTime) + " ago"
		}
		row = append(row, orNone(st.ModelVersion), fmt.Sprint(st.DesiredReplicas), fmt.Sprint(st.Replicas), last, orNone(st.Reason))
	}
	return row
}

// modelText is a deployment's MODEL: spec.model and, when it names an alias,
// the registry version (status.modelVersion) it resolved to:
// "diabetes@champion (v3)".
func modelText(model, version string) string {
	if version == "" || version == model {
		return model
	}
	ref, ok := serving.ParseModelRef(model)
	v, vok := serving.ParseModelRef(version)
	if ok && vok && ref.Model == v.Model && v.Version > 0 {
		return fmt.Sprintf("%s (v%d)", model, v.Version)
	}
	return model + " (" + version + ")"
}

// writeRows writes a header and rows aligned in columns.
func writeRows(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// writeDeploymentTable writes one row per deployment.
func writeDeploymentTable(w io.Writer, ds []serving.Deployment, now time.Time, wide bool) error {
	rows := make([][]string, len(ds))
	for i, d := range ds {
		rows[i] = deploymentRow(d, now, wide)
	}
	return writeRows(w, deploymentHeader(wide), rows)
}

// writeDeploymentDetail writes d's row, then its replicas with where their
// cold starts spent time, then the control loop's latest reason.
func writeDeploymentDetail(w io.Writer, d serving.Deployment, now time.Time, wide bool) error {
	if err := writeDeploymentTable(w, []serving.Deployment{d}, now, wide); err != nil {
		return err
	}
	if rs := d.Status.ReplicaStatuses; len(rs) > 0 {
		fmt.Fprintln(w)
		header := []string{"REPLICA", "STATE", "ENDPOINT", "AGE", "RESTARTS", "COLD START"}
		if wide {
			header = append(header[:4:4], "VERSION", "RESTARTS", "COLD START")
		}
		rows := make([][]string, len(rs))
		for i, r := range rs {
			state := r.State
			if r.Outdated {
				state += " (old)" // of an earlier spec, until the new one serves
			}
			rows[i] = []string{r.ID, state, orNone(r.Endpoint), age(now, r.StartedAt)}
			if wide {
				rows[i] = append(rows[i], orNone(r.ModelVersion))
			}
			rows[i] = append(rows[i], fmt.Sprint(r.Restarts), coldStart(r.ColdStart))
		}
		if err := writeRows(w, header, rows); err != nil {
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

// deploymentsSnapshot returns what a watch of deployments (or of the one
// named in args) prints.
func deploymentsSnapshot(c *apiclient.Client, args []string, wide bool) snapshotFunc {
	return func(ctx context.Context) (snapshot, error) {
		now := time.Now()
		s := snapshot{header: deploymentHeader(wide), ageColumn: deploymentAgeColumn, volatile: []int{deploymentAgeColumn, deploymentAgeColumn + 4}}
		var ds []serving.Deployment
		if len(args) == 1 {
			d, err := c.GetDeployment(ctx, args[0])
			if apiErr, ok := err.(*apiclient.Error); ok && apiErr.Code == "deployment/not_found" {
				return s, errGone{err}
			} else if err != nil {
				return s, err
			}
			ds = []serving.Deployment{d}
		} else {
			var err error
			if ds, err = c.ListDeployments(ctx); err != nil {
				return s, err
			}
		}
		for _, d := range ds {
			s.rows = append(s.rows, deploymentRow(d, now, wide))
		}
		return s, nil
	}
}

func newGetModelsCmd(f *getFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "models [NAME]",
		Aliases: []string{"model"},
		Short:   "List models with their latest version, or show one with its versions",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			c := newAPIClient(cmd)
			w := cmd.OutOrStdout()
			wide := f.output == outputWide
			if len(args) == 1 {
				if f.watch {
					return fmt.Errorf("--watch follows lists: use `ebb get models -w`, or `ebb get model %s` without it", args[0])
				}
				return showModel(cmd.Context(), c, w, f.output, args[0], wide)
			}
			if f.watch {
				return watch(cmd.Context(), w, cmd.ErrOrStderr(), f.interval, modelsSnapshot(c, wide))
			}
			s, err := modelsSnapshot(c, wide)(cmd.Context())
			if err != nil {
				return err
			}
			return writeOutput(w, f.output, api.ModelList{Items: s.models}, func(w io.Writer) error {
				if len(s.rows) == 0 {
					_, err := fmt.Fprintln(w, "No models. Push one with `ebb models push FILE --name NAME`.")
					return err
				}
				return writeRows(w, s.header, s.rows)
			})
		},
	}
}

// allModels pages through every model.
func allModels(ctx context.Context, c *apiclient.Client, prefix string, limit int) ([]registry.Model, error) {
	var all []registry.Model
	for after := ""; ; {
		page, err := c.ListModels(ctx, registry.ListOptions{Prefix: prefix, After: after, Limit: min(limit-len(all), 1000)})
		if err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.Next == "" || len(all) >= limit {
			return all, nil
		}
		after = page.Next
	}
}

// modelsSnapshot lists models: NAME LATEST UPDATED DESCRIPTION, and with
// wide their aliases and creation (one more request per model).
func modelsSnapshot(c *apiclient.Client, wide bool) snapshotFunc {
	return func(ctx context.Context) (snapshot, error) {
		now := time.Now()
		s := snapshot{header: []string{"NAME", "LATEST", "UPDATED", "DESCRIPTION"}, ageColumn: 2, volatile: []int{2, 5}}
		if wide {
			s.header = append(s.header, "ALIASES", "CREATED")
		}
		ms, err := allModels(ctx, c, "", 100000)
		if err != nil {
			return s, err
		}
		s.models = ms
		for _, m := range ms {
			row := []string{m.Name, orNone(versionOrNone(m.LatestVersion)), age(now, m.UpdatedAt), orNone(m.Description)}
			if wide {
				as, err := c.ListAliases(ctx, m.Name)
				if err != nil {
					return s, err
				}
				names := make([]string, len(as))
				for i, a := range as {
					names[i] = fmt.Sprintf("%s=%d", a.Name, a.Version)
				}
				row = append(row, orNone(strings.Join(names, ",")), age(now, m.CreatedAt))
			}
			s.rows = append(s.rows, row)
		}
		return s, nil
	}
}

// coldStart summarises phases as "process_started 12ms, artifact_fetched
// 3ms (1.2 MB, cache hit), model_loaded 80ms (total 95ms)": the artifact's
// fetch says how many bytes and whether the host's (node's) cache held it.
func coldStart(phases []serving.Phase) string {
	if len(phases) == 0 {
		return "-"
	}
	parts := make([]string, len(phases))
	var total time.Duration
	for i, p := range phases {
		parts[i] = p.Name + " " + roundDuration(p.Duration.Duration).String()
		if fetch := fetchText(p); fetch != "" {
			parts[i] += " (" + fetch + ")"
		}
		total += p.Duration.Duration
	}
	return fmt.Sprintf("%s (total %s)", strings.Join(parts, ", "), roundDuration(total))
}

// fetchText describes an artifact_fetched phase: "1.2 MB, cache hit",
// "1.2 MB, cache miss", or the size alone for a download no cache keeps
// (a plain s3:// model); "" for any other phase.
func fetchText(p serving.Phase) string {
	if p.Name != serving.PhaseArtifactFetched || (p.Bytes == 0 && p.CacheHit == nil) {
		return ""
	}
	var parts []string
	if p.Bytes > 0 {
		parts = append(parts, humanBytes(p.Bytes))
	}
	if p.CacheHit != nil {
		parts = append(parts, map[bool]string{true: "cache hit", false: "cache miss"}[*p.CacheHit])
	}
	return strings.Join(parts, ", ")
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
