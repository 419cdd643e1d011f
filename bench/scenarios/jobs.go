package scenarios

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Jobs runs a batch job of jobRows rows through ebb (`ebb up`, the job
// scaling its own replica from zero, one replica on the server CPUs) and
// the same rows through the loop a user would write without ebb
// (bench/cmd/ebbrawjob: read the CSV, predict each chunk in process with
// ebb's own engine code, write the CSV), for a tree ensemble (the
// diabetes XGBoost model) and an ONNX MLP. The goal: the job runs
// at ≥ jobsGoal× the raw loop's rows/s, for each.
type Jobs struct{}

// Name implements harness.Scenario.
func (Jobs) Name() string { return "jobs" }

// Title implements harness.Scenario.
func (Jobs) Title() string { return "16. Batch jobs vs a raw predict loop (100,000 rows)" }

const (
	jobRows   = 100_000
	jobChunk  = 1000
	jobsGoal  = 0.8
	jobsWidth = 16 // the MLP's inputs
)

// jobsMLP are the ONNX MLP's widths: a few tens of µs of one CPU per row.
var jobsMLP = []int{jobsWidth, 128, 128, 1}

// jobCase is one model the scenario runs.
type jobCase struct {
	name, engine, model, input string
	columns                    []string
}

// writeJobInputs writes the scenario's two inputs under dir: the 50
// diabetes patients of examples/jobs repeated to jobRows rows with ids of
// their own, and jobRows rows of random features for the MLP.
func writeJobInputs(root, dir string) (diabetes, mlp string, cols []string, err error) {
	b, err := os.ReadFile(filepath.Join(root, "examples/jobs/diabetes.csv"))
	if err != nil {
		return "", "", nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	diabetes = filepath.Join(dir, "diabetes-100k.csv")
	if err := writeLines(diabetes, lines[0], jobRows, func(w *bufio.Writer, i int) {
		_, rest, _ := strings.Cut(lines[1+i%(len(lines)-1)], ",")
		fmt.Fprintf(w, "r%06d,%s\n", i, rest)
	}); err != nil {
		return "", "", nil, err
	}
	for i := range jobsWidth {
		cols = append(cols, "f"+strconv.Itoa(i))
	}
	mlp = filepath.Join(dir, "mlp-100k.csv")
	rng := rand.New(rand.NewPCG(3, 5))
	err = writeLines(mlp, "id,"+strings.Join(cols, ","), jobRows, func(w *bufio.Writer, i int) {
		fmt.Fprintf(w, "r%06d", i)
		for range jobsWidth {
			w.WriteByte(',')
			w.WriteString(strconv.FormatFloat(rng.NormFloat64(), 'g', 6, 32))
		}
		w.WriteByte('\n')
	})
	return diabetes, mlp, cols, err
}

func writeLines(path, header string, n int, row func(w *bufio.Writer, i int)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	w.WriteString(header + "\n")
	for i := range n {
		row(w, i)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// rawRun runs ebbrawjob pinned to the server CPUs and returns its rows/s.
func rawRun(ctx context.Context, env *harness.Env, bin string, c jobCase, idCol, out string) (float64, error) {
	result := out + ".json"
	p, err := env.Start(harness.StartOptions{Name: "raw-" + c.name, Dir: env.Work}, bin, "-engine", c.engine, "-model", c.model,
		"-input", c.input, "-id", idCol, "-columns", strings.Join(c.columns, ","), "-output", out,
		"-chunk", strconv.Itoa(jobChunk), "-result", result)
	if err != nil {
		return 0, err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		env.StopProc(p)
		return 0, ctx.Err()
	case <-time.After(5 * time.Minute):
		env.StopProc(p)
		return 0, fmt.Errorf("the raw loop took over 5 minutes")
	}
	var r struct {
		Rows    int     `json:"rows"`
		Seconds float64 `json:"seconds"`
	}
	b, err := os.ReadFile(result)
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil || r.Rows != jobRows || r.Seconds <= 0 {
		return 0, fmt.Errorf("raw loop of %s: %+v, %v: %s", c.name, r, err, p.LogTail(500))
	}
	return float64(r.Rows) / r.Seconds, nil
}

// jobRun submits a job of c named name through ebb's API, waits for it
// to succeed, and returns its rows/s from its start to its finish (the
// probe, its replica's start from zero and every chunk included).
func jobRun(ctx context.Context, ebb *harness.Ebb, c jobCase, name, idCol, out string) (float64, serving.JobStatus, error) {
	spec := harness.DeploymentSpec(c.engine, c.model, 0, 1, time.Minute)
	job := serving.Job{Name: name, Spec: serving.JobSpec{
		Input:     serving.JobInput{URI: c.input, IDColumn: idCol, Columns: []serving.TensorColumns{{Tensor: "input", Datatype: "FP32", Columns: c.columns}}},
		Serving:   &spec,
		Output:    serving.JobOutput{URI: out},
		Deadline:  time.Now().Add(24 * time.Hour),
		Lease:     serving.Lease{MaxReplicas: 1, MaxReplicaHours: 1},
		ChunkRows: jobChunk,
	}}
	body, err := json.Marshal(job)
	if err != nil {
		return 0, serving.JobStatus{}, err
	}
	if code, resp, err := ebb.Do(ctx, http.MethodPost, "/v1/jobs", body); err != nil || code != http.StatusCreated {
		return 0, serving.JobStatus{}, fmt.Errorf("submit job %s: HTTP %d: %.300s %v", name, code, resp, err)
	}
	end := time.Now().Add(5 * time.Minute)
	for time.Now().Before(end) {
		code, resp, err := ebb.Do(ctx, http.MethodGet, "/v1/jobs/"+name, nil)
		if err != nil || code != http.StatusOK {
			return 0, serving.JobStatus{}, fmt.Errorf("get job %s: HTTP %d: %.300s %v", name, code, resp, err)
		}
		var j serving.Job
		if err := json.Unmarshal(resp, &j); err != nil {
			return 0, serving.JobStatus{}, err
		}
		st := j.Status
		if serving.JobFinished(st.Phase) {
			if st.Phase != serving.JobSucceeded || st.StartedAt == nil || st.FinishedAt == nil || st.RowsDone != jobRows {
				return 0, st, fmt.Errorf("job %s: %s: %s (%d rows)", name, st.Phase, st.Message, st.RowsDone)
			}
			return float64(st.RowsDone) / st.FinishedAt.Sub(*st.StartedAt).Seconds(), st, nil
		}
		// The rate comes from the job's own start and finish times, not
		// from this poll: a slow one costs no precision, and a fast one
		// would take CPU from the job on the server's core.
		select {
		case <-ctx.Done():
			return 0, st, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, serving.JobStatus{}, fmt.Errorf("job %s did not finish in 5 minutes", name)
}

// sameLastColumns reports how many rows of the job's output (a header
// line, then id and values) differ from the raw loop's (id and values).
func sameLastColumns(jobOut, rawOut string) (rows, differ int, err error) {
	a, err := os.ReadFile(jobOut)
	if err != nil {
		return 0, 0, err
	}
	b, err := os.ReadFile(rawOut)
	if err != nil {
		return 0, 0, err
	}
	al := strings.Split(strings.TrimSpace(string(a)), "\n")
	bl := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(al) > 0 {
		al = al[1:] // the header
	}
	if len(al) != len(bl) {
		return len(al), len(al), fmt.Errorf("the job wrote %d rows, the raw loop %d", len(al), len(bl))
	}
	for i := range al {
		if !sameRow(al[i], bl[i]) {
			differ++
		}
	}
	return len(al), differ, nil
}

// sameRow compares two CSV rows, numbers within float32 rounding.
func sameRow(a, b string) bool {
	af, bf := strings.Split(a, ","), strings.Split(b, ",")
	if len(af) != len(bf) || af[0] != bf[0] {
		return false
	}
	for i := 1; i < len(af); i++ {
		x, err1 := strconv.ParseFloat(af[i], 64)
		y, err2 := strconv.ParseFloat(bf[i], 64)
		if err1 != nil || err2 != nil || !closeEnough(x, y) {
			return false
		}
	}
	return true
}

func closeEnough(x, y float64) bool {
	d := x - y
	if d < 0 {
		d = -d
	}
	return d <= 1e-5*max(1, x, -x, y, -y)
}

// Run implements harness.Scenario.
func (Jobs) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	diabetes, mlpIn, cols, err := writeJobInputs(env.Root, env.Work)
	if err != nil {
		return res, fmt.Errorf("writing the inputs: %w", err)
	}
	cases := []jobCase{{name: "trees (diabetes XGBoost)", engine: "trees", model: filepath.Join(env.Root, "examples/diabetes/model.json"), input: diabetes,
		columns: []string{"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}}}
	if onnx.Available("") == nil {
		path := filepath.Join(env.Work, "mlp-jobs.onnx")
		if err := writeMLPONNX(path, jobsMLP, 9); err != nil {
			return res, err
		}
		cases = append(cases, jobCase{name: "onnx (MLP " + formatLayers(jobsMLP) + ")", engine: "onnx", model: path, input: mlpIn, columns: cols})
	} else {
		res.Notes = append(res.Notes, "ONNX Runtime is not available here: the onnx case was skipped.")
	}
	raw := filepath.Join(env.Work, "ebbrawjob")
	if err := harness.BuildGo(ctx, env.Root, "./bench/cmd/ebbrawjob", raw, env.Out); err != nil {
		return res, err
	}
	ebb, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: "ebb-jobs", Flags: []string{"--model-roots=" + env.Root + "," + env.Work}})
	if err != nil {
		return res, err
	}
	rounds := harness.Pick(env, 3, 1)
	var rows [][]string
	res.Figures = map[string]float64{}
	for ci, c := range cases {
		idCol := "id"
		if c.engine == "trees" {
			idCol = "patient"
		}
		var rawRates, jobRates []float64
		for round := 1; round <= rounds; round++ {
			harness.WaitQuiet(ctx, 30, harness.Pick(env, 15*time.Second, 5*time.Second))
			rawOut := filepath.Join(env.Work, fmt.Sprintf("raw-%d-%d.csv", ci, round))
			r, err := rawRun(ctx, env, raw, c, idCol, rawOut)
			if err != nil {
				return res, err
			}
			jobOut := filepath.Join(env.Work, fmt.Sprintf("job-%d-%d.csv", ci, round))
			j, st, err := jobRun(ctx, ebb, c, fmt.Sprintf("bench-%s-%d", c.engine, round), idCol, jobOut)
			if err != nil {
				return res, err
			}
			n, differ, err := sameLastColumns(jobOut, rawOut)
			if err != nil || differ > 0 {
				res.Notes = append(res.Notes, fmt.Sprintf("%s round %d: the job's output differs from the raw loop's in %d of %d rows (%v).", c.name, round, differ, n, err))
			}
			rawRates, jobRates = append(rawRates, r), append(jobRates, j)
			env.Logf("%s round %d: raw loop %.0f rows/s, job %.0f rows/s (%d chunks, %.4f replica-hours)", c.name, round, r, j, st.ChunksDone, st.ReplicaHours)
			rows = append(rows, []string{c.name, strconv.Itoa(round), harness.F(r), harness.F(j), harness.F(harness.Ratio(j, r))})
		}
		r, j := harness.Median(rawRates), harness.Median(jobRates)
		ratio := harness.Ratio(j, r)
		res.Figures[c.engine+".rawRowsPerSecond"], res.Figures[c.engine+".jobRowsPerSecond"], res.Figures[c.engine+".ratio"] = r, j, ratio
		res.Goals = append(res.Goals, harness.Goal{
			Name:   "job vs raw predict loop, " + c.engine,
			Target: fmt.Sprintf("a %d-row job ≥ %.1f× the raw loop's rows/s", jobRows, jobsGoal),
			Ebb:    j, Peer: r, PeerName: "raw loop", Unit: "rows/s", Ratio: ratio, Met: ratio >= jobsGoal,
			Detail: fmt.Sprintf("%s: median of %d round(s): job %.0f rows/s, raw loop %.0f rows/s: %.2f×", c.name, len(jobRates), j, r, ratio),
		})
	}
	res.Tables = []harness.Table{{
		Caption: "Rounds: the raw loop, then the job, on the same input.",
		Header:  []string{"model", "round", "raw loop rows/s", "job rows/s", "job/raw"},
		Rows:    rows,
	}}
	res.Summary = fmt.Sprintf("Each round runs %d rows through the raw loop (`bench/cmd/ebbrawjob`, pinned to the server CPUs: loading the model with ebb's engine code, reading the CSV, "+
		"predicting chunks of %d rows in process, writing a CSV of ids and outputs; timed from the model's load to the output's close) and through a job submitted to one `ebb up` "+
		"(`POST /v1/jobs`: the same CSV, model and chunk size, its own deployment scaled from zero with at most one replica; timed from the job's start to its finish, "+
		"the planner's probe, the replica's start, every chunk's request through the gateway (OIP v2 with binary tensor data, both ways) and its checkpoint, and the atomic write of the output included). "+
		"Both run on the same CPUs, the server CPUs: the raw loop has them to itself, while the job's runner (reading and parsing the input, encoding the requests, "+
		"checkpointing each group of chunks — its parts synced in one append-only log, then recorded in SQLite — and writing the output), the gateway and the replica share them, "+
		"so every cost of the job is counted against the loop's. "+
		"The job's output is checked row for row against the raw loop's. Models: the diabetes XGBoost regressor (examples/diabetes) over the 50 patients of examples/jobs repeated, "+
		"and an ONNX MLP %s generated here over random features.", jobRows, jobChunk, formatLayers(jobsMLP))
	return res, nil
}
