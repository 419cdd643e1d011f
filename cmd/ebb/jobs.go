package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Batch inference jobs: `ebb jobs submit|get|list|cancel|logs|delete`.

func newJobsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "jobs",
		Aliases: []string{"job"},
		Short:   "Submit and watch batch inference jobs: a dataset through a model before a deadline, within a lease",
		Long: `A job sends every row of a dataset (CSV, JSONL or Parquet, on file:// or
s3://) through a model and writes the outputs to one location. It feeds an
existing deployment at batch priority (spec.deployment) or runs replicas of
its own from zero and back to zero (spec.serving). Its lease bounds what it
spends: max replicas, max replica-hours (and max GPU-hours, for a model
whose replicas ask for GPUs), and optional windows.

The planner probes the model's rate, then runs the fewest replicas that meet
the deadline; a job that cannot fit its lease is refused with the numbers.
Progress is checkpointed by chunk: a job resumes after a crash without
redoing or duplicating rows, and its output appears whole, once.`,
	}
	addServerFlag(cmd)
	cmd.AddCommand(newJobsSubmitCmd(), newJobsGetCmd(), newJobsListCmd(), newJobsCancelCmd(), newJobsLogsCmd(), newJobsDeleteCmd())
	return cmd
}

// jobWatch are the flags of the commands that can follow a job.
type jobWatch struct {
	watch    bool
	interval time.Duration
	output   string
}

func (f *jobWatch) add(cmd *cobra.Command) {
	cmd.Flags().BoolVarP(&f.watch, "watch", "w", false, "follow the job's progress until it ends")
	cmd.Flags().DurationVar(&f.interval, "interval", time.Second, "how often --watch asks the server")
	addOutputFlag(cmd, &f.output)
}

func (f *jobWatch) check() error {
	if err := checkOutput(f.output); err != nil {
		return err
	}
	if f.watch && f.output != outputTable {
		return errors.New("--watch draws a progress line: leave out -o")
	}
	if f.interval <= 0 {
		return fmt.Errorf("--interval %s must be above zero, such as 1s", f.interval)
	}
	return nil
}

func newJobsSubmitCmd() *cobra.Command {
	var file string
	var f jobWatch
	cmd := &cobra.Command{
		Use:   "submit -f FILE",
		Short: "Submit a job from a file (YAML or JSON: name and spec)",
		Example: `  ebb jobs submit -f examples/jobs/diabetes-job.yaml --watch
  ebb jobs submit -f job.json -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if file == "" {
				return errors.New("give the job file with -f FILE (\"-\" for standard input)")
			}
			data, err := readInput(cmd, file)
			if err != nil {
				return err
			}
			body, err := jobDoc(data)
			if err != nil {
				return fmt.Errorf("%s: %w", displayName(file), err)
			}
			j, err := newAPIClient(cmd).SubmitJobJSON(cmd.Context(), body)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if f.watch {
				fmt.Fprintf(w, "job/%s submitted\n", j.Name)
				return watchJob(cmd, j.Name, f.interval)
			}
			return writeOutput(w, f.output, j, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "job/%s submitted: %d rows; follow it with `ebb jobs get %s --watch`\n", j.Name, j.Status.RowsTotal, j.Name)
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", `job file, YAML or JSON ("-" for standard input)`)
	f.add(cmd)
	return cmd
}

// jobDoc reads a job file, one YAML document or JSON object, into the
// JSON the API takes.
func jobDoc(data []byte) ([]byte, error) {
	docs := splitYAML(data)
	var body []byte
	for _, d := range docs {
		b, err := yaml.YAMLToJSON(d)
		if err != nil {
			return nil, err
		}
		if t := bytes.TrimSpace(b); len(t) == 0 || string(t) == "null" {
			continue
		}
		if body != nil {
			return nil, errors.New("holds more than one document: submit one job a file")
		}
		body = b
	}
	if body == nil {
		return nil, errors.New("holds no job: write one with name and spec")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, errors.New("must hold one job, a mapping with name and spec")
	}
	if _, ok := top["spec"]; !ok {
		return nil, errors.New("spec is required: the job's input, deployment or serving, output, deadline and lease")
	}
	return body, nil
}

func newJobsGetCmd() *cobra.Command {
	var f jobWatch
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a job: its progress, plan, warnings; --watch follows it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if f.watch {
				return watchJob(cmd, args[0], f.interval)
			}
			j, err := newAPIClient(cmd).GetJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return writeOutput(cmd.OutOrStdout(), f.output, j, func(w io.Writer) error { return writeJobDetail(w, j, time.Now()) })
		},
	}
	f.add(cmd)
	return cmd
}

func newJobsListCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List jobs, oldest first",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			js, err := newAPIClient(cmd).ListJobs(cmd.Context())
			if err != nil {
				return err
			}
			now := time.Now()
			return writeOutput(cmd.OutOrStdout(), output, api.JobList{Items: js}, func(w io.Writer) error {
				if len(js) == 0 {
					_, err := fmt.Fprintln(w, "No jobs. Submit one with `ebb jobs submit -f job.yaml`.")
					return err
				}
				rows := make([][]string, len(js))
				for i, j := range js {
					s := j.Status
					rows[i] = []string{j.Name, s.Phase, fmt.Sprintf("%d/%d", s.RowsDone, s.RowsTotal), rateText(s.RowsPerSecond),
						etaText(s.ETA, now), j.Spec.Deadline.Local().Format("2006-01-02 15:04"), fmt.Sprint(s.Replicas),
						fmt.Sprintf("%.2f/%.2f", s.ReplicaHours, j.Spec.Lease.MaxReplicaHours), age(now, j.CreatedAt)}
				}
				return writeRows(w, []string{"NAME", "PHASE", "ROWS", "RATE", "ETA", "DEADLINE", "REPLICAS", "REPLICA-H", "AGE"}, rows)
			})
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

func newJobsCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel NAME",
		Short: "Stop a job: its replicas go back, its output is not written",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			j, err := newAPIClient(cmd).CancelJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			verb := "cancel requested: it stops at its next step"
			if j.Status.Phase == serving.JobCancelled {
				verb = "cancelled"
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "job/%s %s\n", j.Name, verb)
			return err
		},
	}
}

func newJobsLogsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a job's latest events: probe, plan, re-plans, warnings, windows, the end",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			text, err := newAPIClient(cmd).JobLogs(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), text)
			return err
		},
	}
}

func newJobsDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a finished job and its checkpoints (its output stays)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := newAPIClient(cmd).DeleteJob(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "job/%s deleted\n", args[0])
			return err
		},
	}
}

// watchJob draws the job's progress line every interval until the job
// ends (or Ctrl-C): rewritten in place on a terminal, a new line on each
// change otherwise. It ends with the job's message; a job that did not
// succeed is an error.
func watchJob(cmd *cobra.Command, name string, interval time.Duration) error {
	c, w := newAPIClient(cmd), cmd.OutOrStdout()
	f, ok := w.(*os.File)
	tty := ok && isTerminal(f)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := ""
	for {
		ctx, cancel := context.WithTimeout(cmd.Context(), interval+watchFetchTimeout)
		j, err := c.GetJob(ctx, name)
		cancel()
		if err != nil {
			if cmd.Context().Err() != nil {
				return nil
			}
			return err
		}
		line := progressLine(j, time.Now())
		switch {
		case tty:
			fmt.Fprintf(w, "\r\033[K%s", line)
		case line != last:
			fmt.Fprintln(w, line)
		}
		last = line
		if serving.JobFinished(j.Status.Phase) {
			if tty {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "job/%s %s: %s\n", j.Name, j.Status.Phase, j.Status.Message)
			if j.Status.Phase != serving.JobSucceeded {
				return fmt.Errorf("job %s %s", j.Name, strings.ToLower(j.Status.Phase))
			}
			return nil
		}
		select {
		case <-tick.C:
		case <-cmd.Context().Done():
			if tty {
				fmt.Fprintln(w)
			}
			return nil
		}
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressLine is one line of a job's progress: a bar, rows, rate, ETA
// against the deadline, replicas, and replica-hours against the budget.
func progressLine(j serving.Job, now time.Time) string {
	s := j.Status
	const width = 20
	frac := 0.0
	if s.RowsTotal > 0 {
		frac = float64(s.RowsDone) / float64(s.RowsTotal)
	}
	filled := min(int(frac*width), width)
	bar := strings.Repeat("#", filled) + strings.Repeat("-", width-filled)
	parts := []string{
		fmt.Sprintf("%s %s [%s] %3.0f%% %d/%d rows", j.Name, s.Phase, bar, 100*frac, s.RowsDone, s.RowsTotal),
		rateText(s.RowsPerSecond),
		"ETA " + etaText(s.ETA, now) + " " + deadlineText(s.ETA, j.Spec.Deadline, now),
		fmt.Sprintf("replicas %d", s.Replicas),
		fmt.Sprintf("%.2f/%.2f replica-h", s.ReplicaHours, j.Spec.Lease.MaxReplicaHours),
	}
	if len(s.Warnings) > 0 {
		parts = append(parts, "warning: "+s.Warnings[0])
	}
	return strings.Join(parts, "  ")
}

func rateText(r float64) string {
	if r <= 0 {
		return "- rows/s"
	}
	return fmt.Sprintf("%.4g rows/s", r)
}

// etaText is when the ETA is, as a clock time today or a date.
func etaText(eta *time.Time, now time.Time) string {
	if eta == nil {
		return "-"
	}
	t := eta.Local()
	if y, m, d := t.Date(); y == now.Local().Year() && m == now.Local().Month() && d == now.Local().Day() {
		return t.Format("15:04:05")
	}
	return t.Format("Jan 2 15:04")
}

// deadlineText compares the ETA with the deadline: (deadline Mon 06:00,
// 3h12m to spare) or (deadline ..., 20m late).
func deadlineText(eta *time.Time, deadline, now time.Time) string {
	d := "deadline " + deadline.Local().Format("Mon Jan 2 15:04")
	if eta == nil {
		return "(" + d + ", in " + roundDuration(deadline.Sub(now)).String() + ")"
	}
	if spare := deadline.Sub(*eta); spare >= 0 {
		return "(" + d + ", " + roundDuration(spare).String() + " to spare)"
	}
	return "(" + d + ", " + roundDuration(eta.Sub(deadline)).String() + " late)"
}

// writeJobDetail shows one job.
func writeJobDetail(w io.Writer, j serving.Job, now time.Time) error {
	s, spec := j.Status, j.Spec
	serves := spec.Deployment + " (batch priority)"
	if spec.Serving != nil {
		serves = fmt.Sprintf("its own: %s", modelText(spec.Serving.Model, ""))
		if s.Deployment != "" {
			serves += ", deployment " + s.Deployment
		}
	}
	fmt.Fprintf(w, "Name:           %s\nPhase:          %s\n", j.Name, s.Phase)
	if s.Message != "" {
		fmt.Fprintf(w, "Message:        %s\n", s.Message)
	}
	fmt.Fprintf(w, "Model:          %s\n", serves)
	fmt.Fprintf(w, "Input:          %s (%s, %d rows in %d chunks of %d)\n", spec.Input.URI, spec.Input.Format, s.RowsTotal, s.ChunksTotal, spec.ChunkRows)
	fmt.Fprintf(w, "Output:         %s (%s)\n", spec.Output.URI, spec.Output.Format)
	fmt.Fprintf(w, "Progress:       %d/%d rows, %d/%d chunks, %s", s.RowsDone, s.RowsTotal, s.ChunksDone, s.ChunksTotal, rateText(s.RowsPerSecond))
	if s.RowsSkipped > 0 {
		fmt.Fprintf(w, ", %d bad rows skipped", s.RowsSkipped)
	}
	fmt.Fprintf(w, "\nETA:            %s %s\n", etaText(s.ETA, now), deadlineText(s.ETA, spec.Deadline, now))
	fmt.Fprintf(w, "Replicas:       %d of at most %d\n", s.Replicas, spec.Lease.MaxReplicas)
	fmt.Fprintf(w, "Replica-hours:  %.2f of %.2f\n", s.ReplicaHours, spec.Lease.MaxReplicaHours)
	if s.GPUHours > 0 || spec.Lease.MaxGPUHours > 0 {
		most := "no bound"
		if spec.Lease.MaxGPUHours > 0 {
			most = fmt.Sprintf("%.2f", spec.Lease.MaxGPUHours)
		}
		fmt.Fprintf(w, "GPU-hours:      %.2f of %s\n", s.GPUHours, most)
	}
	if p := s.Plan; p != nil {
		fmt.Fprintf(w, "Plan:           %d replicas at %.4g rows/s each, finishing %s, %.2f replica-hours\n",
			p.Replicas, p.RowsPerSecondPerReplica, p.Finish.Local().Format("Mon Jan 2 15:04"), p.ReplicaHours)
	}
	for _, win := range spec.Lease.Windows {
		fmt.Fprintf(w, "Window:         %s %s-%s %s\n", orNone(strings.Join(win.Days, ",")), win.Start, win.End, orNone(win.TimeZone))
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(w, "Warning:        %s\n", warn)
	}
	for _, b := range s.BadRows {
		fmt.Fprintf(w, "Bad row:        %s\n", b)
	}
	_, err := fmt.Fprintf(w, "Age:            %s\n", age(now, j.CreatedAt))
	return err
}
