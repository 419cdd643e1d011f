package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/drift"
	"github.com/ebb-ml/ebb/internal/monitor"
)

func newMonitorCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Model monitoring: score logged predictions against labels that arrived later",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	addOutputFlag(cmd, &output)
	cmd.AddCommand(newMonitorLabelsCmd(&output))
	return cmd
}

// labelsPerRequest is how many labels one request carries.
const labelsPerRequest = 100_000

func newMonitorLabelsCmd(output *string) *cobra.Command {
	var file, idCol, labelCol, task string
	cmd := &cobra.Command{
		Use:   "labels DEPLOYMENT --file LABELS.csv",
		Short: "Join labels with a deployment's logged predictions and score each version",
		Long: `Join labels (the true outcome of predictions, known later) with the
predictions the deployment's prediction log sampled (spec.predictionLog),
by request id (the X-Request-Id the prediction was sent with; "id:i" for
row i of a batch), and score each version that made them: accuracy for
classes, mean absolute and root mean squared error for numbers.

The file is CSV with a header, or JSON lines, with a request id column
(request_id, requestId or id) and a label column (label). The server keeps
the latest predictions (200,000 by default): labels of older ones, and of
requests the log did not sample, count as unmatched.`,
		Example: `  ebb monitor labels churn --file labels.csv
  ebb monitor labels diabetes --file outcomes.jsonl --task regression -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if file == "" {
				return fmt.Errorf("give the labels: ebb monitor labels %s --file LABELS.csv", args[0])
			}
			labels, err := readLabels(file, idCol, labelCol)
			if err != nil {
				return err
			}
			c := newAPIClient(cmd)
			var reports []monitor.QualityReport
			for chunk := range slices.Chunk(labels, labelsPerRequest) {
				rep, err := c.JoinLabels(cmd.Context(), args[0], api.LabelsRequest{Task: monitor.Task(task), Labels: chunk})
				if err != nil {
					return err
				}
				reports = append(reports, rep)
			}
			rep := mergeQuality(args[0], reports)
			return writeOutput(cmd.OutOrStdout(), *output, rep, func(w io.Writer) error { return writeQualityTable(w, rep) })
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "labels: CSV with a header, or JSON lines (.jsonl)")
	f.StringVar(&idCol, "id-column", "", "the column of request ids (default: request_id, requestId or id)")
	f.StringVar(&labelCol, "label-column", "label", "the column of labels")
	f.StringVar(&task, "task", "", "classification (accuracy) or regression (MAE, RMSE); default: regression when every label and prediction is a number")
	return cmd
}

// readLabels reads a CSV or JSONL file of labels.
func readLabels(path, idCol, labelCol string) ([]monitor.Label, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pickID := func(cols []string) string {
		if idCol != "" {
			return idCol
		}
		for _, c := range []string{"request_id", "requestId", "id"} {
			if slices.Contains(cols, c) {
				return c
			}
		}
		return "request_id"
	}
	var out []monitor.Label
	if drift.SampleFormat(path) == drift.FormatJSONL {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for line := 1; sc.Scan(); line++ {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			var obj map[string]any
			if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
				return nil, fmt.Errorf("%s, line %d: not a JSON object: %w", path, line, err)
			}
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			id, label := text(obj[pickID(keys)]), text(obj[labelCol])
			if id == "" || label == "" {
				return nil, fmt.Errorf("%s, line %d: needs %s and %s", path, line, pickID(keys), labelCol)
			}
			out = append(out, monitor.Label{Key: id, Value: label})
		}
		return out, sc.Err()
	}
	r := csv.NewReader(bufio.NewReader(f))
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: a CSV file with a header: %w", path, err)
	}
	idName := pickID(header)
	idIdx, labelIdx := slices.Index(header, idName), slices.Index(header, labelCol)
	if idIdx < 0 || labelIdx < 0 {
		return nil, fmt.Errorf("%s: the header (%s) needs a request id column (%s) and a label column (%s); name them with --id-column and --label-column",
			path, strings.Join(header, ", "), idName, labelCol)
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, monitor.Label{Key: rec[idIdx], Value: rec[labelIdx]})
	}
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

// mergeQuality sums the reports of several requests of labels.
func mergeQuality(deployment string, reports []monitor.QualityReport) monitor.QualityReport {
	if len(reports) == 1 {
		return reports[0]
	}
	out := monitor.QualityReport{Deployment: deployment, Versions: []monitor.Quality{}}
	type sums struct {
		q              monitor.Quality
		right, abs, sq float64
	}
	by := map[string]*sums{}
	var order []string
	for _, r := range reports {
		out.Labels += r.Labels
		out.Unmatched += r.Unmatched
		for _, q := range r.Versions {
			s := by[q.Version]
			if s == nil {
				s = &sums{q: monitor.Quality{Version: q.Version, Task: q.Task}}
				by[q.Version] = s
				order = append(order, q.Version)
			}
			n := float64(q.Matched)
			s.q.Matched += q.Matched
			if q.Accuracy != nil {
				s.right += *q.Accuracy * n
			}
			if q.MAE != nil && q.RMSE != nil {
				s.abs += *q.MAE * n
				s.sq += *q.RMSE * *q.RMSE * n
			}
		}
	}
	slices.Sort(order)
	for _, v := range order {
		s := by[v]
		if n := float64(s.q.Matched); n > 0 {
			if s.q.Task == monitor.TaskClassification {
				acc := s.right / n
				s.q.Accuracy = &acc
			} else {
				mae, rmse := s.abs/n, math.Sqrt(s.sq/n)
				s.q.MAE, s.q.RMSE = &mae, &rmse
			}
		}
		out.Versions = append(out.Versions, s.q)
	}
	return out
}

func writeQualityTable(w io.Writer, rep monitor.QualityReport) error {
	if _, err := fmt.Fprintf(w, "%s: %d labels, %d matched no logged prediction\n", rep.Deployment, rep.Labels, rep.Unmatched); err != nil {
		return err
	}
	if len(rep.Versions) == 0 {
		_, err := fmt.Fprintln(w, "No label matched a logged prediction: label the X-Request-Id of requests the deployment's prediction log sampled (spec.predictionLog.sample).")
		return err
	}
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(rep.Versions))
	f := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return strconv.FormatFloat(*v, 'f', 4, 64)
	}
	for _, q := range rep.Versions {
		rows = append(rows, []string{q.Version, string(q.Task), strconv.Itoa(q.Matched), f(q.Accuracy), f(q.MAE), f(q.RMSE)})
	}
	return writeRows(w, []string{"VERSION", "TASK", "MATCHED", "ACCURACY", "MAE", "RMSE"}, rows)
}
