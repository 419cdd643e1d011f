package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/serving"
)

func newDescribeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "describe RESOURCE NAME",
		Short: "Show a deployment in full: spec, status, replicas and recent events",
		Example: `  ebb describe deployment diabetes
  ebb describe deploy diabetes --context prod`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return fmt.Errorf("unknown resource %q: use `ebb describe deployment NAME`", args[0])
		},
	}
	addServerFlag(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:     "deployment NAME",
		Aliases: []string{"deployments", "deploy"},
		Short:   "Show a deployment's spec, status, replicas with their cold starts, and its events with scale decisions",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := newAPIClient(cmd)
			d, err := c.GetDeployment(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			evs, evErr := c.Events(cmd.Context(), args[0])
			if err := writeDescribe(cmd.OutOrStdout(), d, evs, evErr, time.Now()); err != nil {
				return err
			}
			recs, err := c.Decisions(cmd.Context(), args[0])
			return writeDecisions(cmd.OutOrStdout(), d.Name, recs, err, time.Now())
		},
	})
	return cmd
}

// writeDescribe writes a deployment the way kubectl describe does: fields,
// then tables of replicas and events (oldest first). evErr, when set, is
// why the events could not be read; the rest is written anyway.
func writeDescribe(w io.Writer, d serving.Deployment, evs []serving.Event, evErr error, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	row := func(indent, k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s%s:\t%s\n", indent, k, v)
		}
	}
	sp, st := d.Spec, d.Status
	row("", "Name", d.Name)
	row("", "Created", fmt.Sprintf("%s (%s ago)", d.CreatedAt.UTC().Format(time.RFC3339), age(now, d.CreatedAt)))
	row("", "Generation", strconv.FormatInt(d.Generation, 10))
	row("", "Model", sp.Model)
	row("", "Engine", sp.Engine)
	row("", "Scaling", scalingText(d.Name, sp))
	if b := sp.Batching; b != nil {
		row("", "Batching", fmt.Sprintf("max batch %d, preferred %v, max queue delay %s", b.MaxBatchSize, b.PreferredBatchSizes, b.MaxQueueDelay))
	}
	if p := sp.Python; p != nil {
		py := strings.TrimSpace(p.Class + " " + p.Interpreter)
		if p.Workers > 1 {
			py += fmt.Sprintf(", %d workers", p.Workers)
		}
		row("", "Python", py)
	}
	if len(sp.Command) > 0 {
		row("", "Command", strings.Join(sp.Command, " "))
	}
	row("", "URL", sp.URL)
	row("", "Upstream model", sp.UpstreamModel)
	row("", "Protocol", sp.Protocol)
	row("", "Env", joinMap(sp.Env, func(s string) string { return s }))
	if sp.PredictionLog != nil {
		row("", "Prediction log", sp.PredictionLog.String())
	}
	fmt.Fprintln(tw, "Status:\t")
	row("  ", "Serving", st.ModelVersion)
	row("  ", "Replicas", fmt.Sprintf("%d ready, %d desired, %d in all", st.ReadyReplicas, st.DesiredReplicas, st.Replicas))
	if st.LastScaleTime != nil {
		row("  ", "Last scale", fmt.Sprintf("%s (%s ago)", st.LastScaleTime.UTC().Format(time.RFC3339), age(now, *st.LastScaleTime)))
	}
	row("  ", "Schedule", scheduleText(sp.Scaling.Schedule, st.Schedule, now))
	row("  ", "Reason", st.Reason)
	row("  ", "Failure", st.Failure)
	if ps := st.Pool; ps != nil {
		where := "pool " + ps.Pool + ", not loaded"
		if len(ps.Replicas) > 0 {
			where = fmt.Sprintf("pool %s, loaded in slots %s", ps.Pool, strings.Join(ps.Replicas, ", "))
		}
		if ps.Bytes > 0 {
			where += fmt.Sprintf(" (%d bytes measured)", ps.Bytes)
		}
		row("  ", "Pool", where)
		row("  ", "Quarantine", ps.Quarantine)
	}
	for i, ig := range st.Ignored {
		if i == 0 {
			row("  ", "Ignored", ig)
		} else {
			fmt.Fprintf(tw, "  \t%s\n", ig)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "Replicas:")
	if len(st.ReplicaStatuses) == 0 {
		fmt.Fprintln(w, "  <none>")
	} else {
		rows := make([][]string, len(st.ReplicaStatuses))
		for i, r := range st.ReplicaStatuses {
			rows[i] = []string{r.ID, r.State, orNone(r.ModelVersion), orNone(r.Endpoint), age(now, r.StartedAt), coldStart(r.ColdStart)}
		}
		if err := writeIndented(w, []string{"ID", "STATE", "VERSION", "ENDPOINT", "AGE", "COLD START"}, rows); err != nil {
			return err
		}
		for _, r := range st.ReplicaStatuses {
			if r.Message != "" {
				fmt.Fprintf(w, "  %s: %s\n", r.ID, r.Message)
			}
		}
	}

	if len(st.Traffic) > 0 {
		fmt.Fprintln(w, "Traffic:")
		rows := make([][]string, len(st.Traffic))
		for i, tr := range st.Traffic {
			tag := tr.Tag
			if tr.Primary {
				tag += " (primary)"
			}
			rows[i] = []string{tag, fmt.Sprintf("%d%%", tr.Weight), tr.Model, orNone(tr.ModelVersion), fmt.Sprintf("%d/%d", tr.ReadyReplicas, tr.DesiredReplicas)}
		}
		if err := writeIndented(w, []string{"TAG", "WEIGHT", "MODEL", "VERSION", "READY/DESIRED"}, rows); err != nil {
			return err
		}
	}

	fmt.Fprintln(w, "Events:")
	switch {
	case evErr != nil:
		why := evErr.Error()
		if ae, ok := evErr.(*apiclient.Error); ok && ae.Code == "request/not_found" {
			why = "this server does not serve events (an older ebb)"
		}
		_, err := fmt.Fprintf(w, "  <unavailable: %s>\n", why)
		return err
	case len(evs) == 0:
		_, err := fmt.Fprintln(w, "  <none>")
		return err
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	rows := make([][]string, len(evs))
	for i, ev := range evs {
		when := age(now, ev.Time)
		if ev.Count > 1 {
			when += fmt.Sprintf(" (x%d)", ev.Count)
		}
		rows[i] = []string{ev.Type, ev.Reason, when, ev.Message}
	}
	return writeIndented(w, []string{"TYPE", "REASON", "AGE", "MESSAGE"}, rows)
}

// scalingText summarises the scaling policy in words.
func scalingText(name string, sp serving.Spec) string {
	sc := sp.Scaling
	if n, ok := sp.Pinned(); ok {
		return fmt.Sprintf("pinned at %d replicas (the autoscaler is off; `ebb scale %s --auto` turns it on)", n, name)
	}
	s := fmt.Sprintf("%d to %d replicas, target %g requests in flight per replica", sc.MinReplicas, sc.MaxReplicas, sc.TargetConcurrency)
	if sc.MinReplicas == 0 && sc.ScaleToZeroAfter.Duration > 0 {
		s += fmt.Sprintf(", to zero after %s idle", sc.ScaleToZeroAfter.Duration)
	}
	return s
}

// writeIndented writes a table two spaces in.
func writeIndented(w io.Writer, header []string, rows [][]string) error {
	var b strings.Builder
	if err := writeRows(&b, header, rows); err != nil {
		return err
	}
	for _, l := range strings.SplitAfter(b.String(), "\n") {
		if l != "" {
			if _, err := io.WriteString(w, "  "+l); err != nil {
				return err
			}
		}
	}
	return nil
}

// scheduleText says where a deployment's schedule stands: the window that
// applies, its bounds and the next transition.
func scheduleText(windows []serving.ScheduleWindow, s *serving.ScheduleStatus, now time.Time) string {
	if len(windows) == 0 {
		return ""
	}
	if s == nil {
		return fmt.Sprintf("%d window(s), not evaluated yet", len(windows))
	}
	out := s.Applies()
	if out == "" {
		out = fmt.Sprintf("no window: %d..%d replicas", s.MinReplicas, s.MaxReplicas)
	}
	if s.Next != nil {
		what := "window ends"
		if s.NextWindow != "" {
			what = s.NextWindow + " starts (less the cold-start lead)"
		}
		out += fmt.Sprintf("; next: %s at %s (in %s)", what, s.Next.UTC().Format(time.RFC3339), s.Next.Sub(now).Round(time.Second))
	}
	return out
}
