package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Batching serves the ONNX MLP example (examples/mlp-onnx) with ebb twice,
// once with dynamic batching off and once on, and compares throughput and
// p95 latency under the same closed-loop load of one-row requests.
type Batching struct{}

// Name implements harness.Scenario.
func (Batching) Name() string { return "batching" }

// Title implements harness.Scenario.
func (Batching) Title() string { return "5. Dynamic batching (ONNX MLP)" }

// The load and the policy compared.
const (
	batchingConns        = 64
	batchingMaxBatchSize = 32
	batchingMaxDelay     = 2 * time.Millisecond
	batchingGoalRatio    = 3.0
)

// mlpRequest returns the absolute path of the example model and a one-row
// infer request built from the first row of its golden.json.
func mlpRequest(env *harness.Env) (string, []byte, error) {
	dir := filepath.Join(env.Root, "examples", "mlp-onnx")
	model := filepath.Join(dir, "model.onnx")
	if _, err := os.Stat(model); err != nil {
		return "", nil, fmt.Errorf("the mlp-onnx example model is missing: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		return "", nil, fmt.Errorf("the mlp-onnx example golden file is missing: %w", err)
	}
	var g struct {
		Inputs map[string]struct {
			Shape []int     `json:"shape"`
			Data  []float64 `json:"data"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		return "", nil, fmt.Errorf("mlp-onnx golden.json: %w", err)
	}
	in := g.Inputs["input"]
	if len(in.Shape) != 2 || in.Shape[0] < 1 || len(in.Data) < in.Shape[1] {
		return "", nil, fmt.Errorf("mlp-onnx golden.json: input has shape %v, want [n, 64]", in.Shape)
	}
	row, err := json.Marshal(in.Data[:in.Shape[1]])
	if err != nil {
		return "", nil, err
	}
	body := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[1,%d],"datatype":"FP32","data":%s}]}`, in.Shape[1], row)
	return model, []byte(body), nil
}

// Run implements harness.Scenario.
func (Batching) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	modelPath, body, err := mlpRequest(env)
	if err != nil {
		return res, err
	}
	if err := onnx.Available(""); err != nil {
		return res, fmt.Errorf("the onnx engine cannot run here: %w", err)
	}
	lib, _ := onnx.FindLibrary("")
	ebb, err := env.StartEbb(ctx, "ebb-batching")
	if err != nil {
		return res, err
	}
	policy := &serving.Batching{MaxBatchSize: batchingMaxBatchSize, MaxQueueDelay: serving.D(batchingMaxDelay)}
	off := harness.DeploymentSpec("onnx", modelPath, 1, 1, 10*time.Minute)
	on := off
	on.Batching = policy
	targets := []target{}
	for _, d := range []struct {
		name, label string
		spec        serving.Spec
	}{{"mlp-unbatched", "batching off", off}, {"mlp-batched", "batching on", on}} {
		if err := ebb.Create(ctx, d.name, d.spec); err != nil {
			return res, err
		}
		if _, _, err := ebb.WaitReady(ctx, d.name, 1, 60*time.Second); err != nil {
			return res, err
		}
		targets = append(targets, target{d.label, ebb.URL + "/v2/models/" + d.name + "/infer"})
	}

	// Both must answer, and alike, before they are timed.
	c := &http.Client{Timeout: 30 * time.Second}
	var want []float64
	for _, t := range targets {
		code, out, _, err := harness.Post(ctx, c, t.url, body)
		if err != nil || code != http.StatusOK {
			return res, fmt.Errorf("%s: sample request failed: HTTP %d %v %.300s", t.name, code, err, out)
		}
		got, err := outputsOf(out)
		if err != nil {
			return res, fmt.Errorf("%s: %w", t.name, err)
		}
		if want == nil {
			want = got
		} else if !sameOutputs(want, got) {
			res.Notes = append(res.Notes, fmt.Sprintf("PREDICTIONS DIFFER: %s returned %v, batching off returned %v.", t.name, got, want))
		}
	}

	warmup := harness.Pick(env, 2*time.Second, time.Second)
	dur := harness.Pick(env, 5*time.Second, 2*time.Second)
	rounds := harness.Pick(env, 3, 1)
	for _, t := range targets {
		if _, err := runWrk95(ctx, env, t.url, body, batchingConns, warmup); err != nil {
			return res, fmt.Errorf("warm-up of %s: %w", t.name, err)
		}
	}
	runs := map[string][]wrk95{}
	for round := 1; round <= rounds; round++ {
		for _, t := range targets {
			r, err := runWrk95(ctx, env, t.url, body, batchingConns, dur)
			if err != nil {
				return res, fmt.Errorf("%s round %d: %w", t.name, round, err)
			}
			env.Logf("round %d %-13s %8.0f req/s (c=%d, p50 %.3f ms, p95 %.3f ms, p99 %.3f ms, %d errors)",
				round, t.name, r.RPS(), batchingConns, r.P50Us/1000, r.P95Us/1000, r.P99Us/1000, r.Errors())
			runs[t.name] = append(runs[t.name], r)
		}
	}

	med := func(name string, f func(wrk95) float64) float64 {
		xs := make([]float64, len(runs[name]))
		for i, r := range runs[name] {
			xs[i] = f(r)
		}
		return harness.Median(xs)
	}
	rps := func(r wrk95) float64 { return r.RPS() }
	p := func(q func(wrk95) float64) func(wrk95) float64 { return func(r wrk95) float64 { return q(r) / 1000 } }
	q50 := p(func(r wrk95) float64 { return r.P50Us })
	q95 := p(func(r wrk95) float64 { return r.P95Us })
	q99 := p(func(r wrk95) float64 { return r.P99Us })

	res.Figures = map[string]float64{}
	var rows, raw [][]string
	for _, t := range targets {
		key := strings.ReplaceAll(t.name, " ", "_")
		var errs, total int64
		for i, r := range runs[t.name] {
			errs += r.Errors()
			total += r.Requests
			raw = append(raw, []string{t.name, fmt.Sprint(i + 1), harness.F(r.RPS()), fmt.Sprint(r.Requests),
				harness.F(r.P50Us / 1000), harness.F(r.P95Us / 1000), harness.F(r.P99Us / 1000), fmt.Sprint(r.Errors())})
		}
		res.Figures[key+".rps"] = med(t.name, rps)
		res.Figures[key+".p50Ms"] = med(t.name, q50)
		res.Figures[key+".p95Ms"] = med(t.name, q95)
		res.Figures[key+".p99Ms"] = med(t.name, q99)
		res.Figures[key+".errors"] = float64(errs)
		rows = append(rows, []string{t.name, harness.F(med(t.name, rps)), harness.F(med(t.name, q50)),
			harness.F(med(t.name, q95)), harness.F(med(t.name, q99)), fmt.Sprintf("%d of %d", errs, total)})
		if errs > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %d of %d requests failed (socket errors, timeouts or non-2xx).", t.name, errs, total))
		}
	}
	res.Tables = append(res.Tables, harness.Table{
		Caption: fmt.Sprintf("Medians over %d round(s) of %s at %d connections, one-row requests through ebb's gateway.", rounds, dur, batchingConns),
		Header:  []string{"Replica", "req/s", "p50 ms", "p95 ms", "p99 ms", "failed"},
		Rows:    rows,
	}, harness.Table{
		Caption: "Raw runs:",
		Header:  []string{"Replica", "Round", "req/s", "requests", "p50 ms", "p95 ms", "p99 ms", "errors"},
		Rows:    raw,
	})

	offRPS, onRPS := med("batching off", rps), med("batching on", rps)
	ratio := harness.Ratio(onRPS, offRPS)
	res.Goals = append(res.Goals, harness.Goal{
		Name: "throughput, batching on vs off", Target: fmt.Sprintf("batching on ≥ %.0f× batching off's req/s", batchingGoalRatio),
		Ebb: onRPS, Peer: offRPS, PeerName: "batching off", Unit: "req/s", Ratio: ratio, Met: ratio >= batchingGoalRatio,
		Detail: fmt.Sprintf("batching on %.0f req/s, off %.0f req/s: on/off = %.2f×", onRPS, offRPS, ratio),
	})
	offP95, onP95 := med("batching off", q95), med("batching on", q95)
	p95Ratio := harness.Ratio(onP95, offP95)
	res.Goals = append(res.Goals, harness.Goal{
		Name: "p95, batching on vs off", Target: "batching on's p95 ≤ batching off's (equal or better)",
		Ebb: onP95, Peer: offP95, PeerName: "batching off", Unit: "ms", Ratio: p95Ratio, Met: onP95 > 0 && onP95 <= offP95,
		Detail: fmt.Sprintf("p95 at %d connections: batching on %.2f ms, off %.2f ms: on/off = %.2f×", batchingConns, onP95, offP95, p95Ratio),
	})
	res.Notes = append(res.Notes, "Batching amortises only the model call: the engine's cost per row falls several-fold from 1-row to 32-row calls "+
		"(`go test -run - -bench Predict ./internal/engine/onnx/`), but each request still pays its own HTTP, JSON and gateway work, "+
		"which for a model this small is most of its cost; a compute-heavier model gains more.")
	res.Summary = fmt.Sprintf("The PyTorch MLP of `examples/mlp-onnx` (64 → 128 → 64 → 10, exported to ONNX) served by ebb's onnx engine (ONNX Runtime %s from %s) "+
		"in two deployments of one replica each, reached through ebb's gateway: one without batching, one with `batching: {maxBatchSize: %d, maxQueueDelay: %s}`. "+
		"Each is loaded alike by wrk at %d connections (closed loop) with the same one-row OIP v2 request; the rounds alternate between the two. "+
		"The goal is at least %.0f× the throughput with batching at an equal or better p95.",
		onnx.LibraryVersion, lib, batchingMaxBatchSize, batchingMaxDelay, batchingConns, batchingGoalRatio)
	return res, nil
}

// wrk95 is a wrk run's summary with the 95th percentile, which the
// harness's summary lacks. Latencies are in microseconds.
type wrk95 struct {
	harness.WrkResult
	P95Us float64 `json:"p95Us"`
}

// wrk95Lua makes wrk POST the file named by the first script argument and
// print its summary as one JSON line, p95 included.
const wrk95Lua = `function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK95 {"requests":%d,"durationUs":%d,"bytes":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"statusErrors":%d,"timeouts":%d,"meanUs":%.1f,"maxUs":%d,"p50Us":%d,"p90Us":%d,"p95Us":%d,"p99Us":%d,"p999Us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99), latency:percentile(99.9)))
end
`

// runWrk95 runs wrk like harness.Env.Wrk (pinned to the load CPUs, bounded
// by d) with a script that also reports p95.
func runWrk95(ctx context.Context, env *harness.Env, url string, body []byte, conns int, d time.Duration) (wrk95, error) {
	var r wrk95
	dir := filepath.Join(env.Work, "batching")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	script, bodyFile := filepath.Join(dir, "post95.lua"), filepath.Join(dir, "body.json")
	if err := os.WriteFile(script, []byte(wrk95Lua), 0o644); err != nil {
		return r, err
	}
	if err := os.WriteFile(bodyFile, body, 0o644); err != nil {
		return r, err
	}
	threads := max(1, min(env.LoadThreads, conns))
	secs := max(1, int(d.Round(time.Second)/time.Second))
	argv := []string{"wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(secs) + "s", "--timeout", "10s", "-s", script, url, "--", bodyFile}
	if env.LoadCPUs != "" {
		argv = append([]string{"taskset", "-c", env.LoadCPUs}, argv...)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("wrk %s: %w: %s", url, err, out.String())
	}
	return parseWrk95(out.String())
}

// parseWrk95 reads the WRK95 line and wrk's "Non-2xx or 3xx responses".
func parseWrk95(out string) (wrk95, error) {
	var r wrk95
	found := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if s, ok := strings.CutPrefix(line, "WRK95 "); ok {
			if err := json.Unmarshal([]byte(s), &r); err != nil {
				return r, fmt.Errorf("wrk summary %q: %w", s, err)
			}
			found = true
		}
		if s, ok := strings.CutPrefix(line, "Non-2xx or 3xx responses:"); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
				r.Non2xx = n
			}
		}
	}
	if !found {
		return r, errors.New("wrk printed no summary: " + out)
	}
	return r, nil
}
