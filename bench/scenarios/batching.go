package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Batching serves three ONNX MLPs with ebb, each twice, once with dynamic
// batching off and once on, and compares throughput and p95 latency under
// the same closed-loop load of one-row requests. The goal is judged on a
// model generated for the machine (widemodel.go): its weights are at least
// twice the CPU's last-level cache, so its cost per row dominates serving a
// request and a batch shares one pass over the weights. The small example
// model and the 17 MB trained wide one of examples/mlp-onnx are reported
// beside it.
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

// batchingModel is one model the scenario serves.
type batchingModel struct {
	// label names it in tables; prefix starts its deployments' names and
	// its figures' keys ("" keeps the keys of earlier reports).
	label, prefix string
	// file is its name in examples/mlp-onnx; layers its widths.
	file, layers string
	// goal: the goal is judged on this model, which the scenario
	// generates (beyondCacheLayers) instead of reading file.
	goal bool
}

var batchingModels = []batchingModel{
	{label: "small example", prefix: "", file: "model.onnx", layers: "64 → 128 → 64 → 10"},
	{label: "wide example", prefix: "wide.", file: "model-wide.onnx", layers: "64 → 2048 → 2048 → 10"},
	{label: "beyond cache", prefix: "big.", goal: true},
}

// batchingTarget is one deployment under load.
type batchingTarget struct {
	model *batchingModel
	on    bool
	name  string // "batching off", or "wide, batching on"
	url   string
}

// key is the prefix of the target's figures, e.g. "wide.batching_on".
func (t batchingTarget) key() string {
	if t.on {
		return t.model.prefix + "batching_on"
	}
	return t.model.prefix + "batching_off"
}

// mlpBody returns a one-row infer request built from the first row of
// examples/mlp-onnx/golden.json (every model of the scenario takes the same
// input, "input" [N, 64]).
func mlpBody(env *harness.Env) ([]byte, error) {
	dir := filepath.Join(env.Root, "examples", "mlp-onnx")
	data, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		return nil, fmt.Errorf("the mlp-onnx example golden file is missing: %w", err)
	}
	var g struct {
		Inputs map[string]struct {
			Shape []int     `json:"shape"`
			Data  []float64 `json:"data"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("mlp-onnx golden.json: %w", err)
	}
	in := g.Inputs["input"]
	if len(in.Shape) != 2 || in.Shape[0] < 1 || len(in.Data) < in.Shape[1] {
		return nil, fmt.Errorf("mlp-onnx golden.json: input has shape %v, want [n, 64]", in.Shape)
	}
	row, err := json.Marshal(in.Data[:in.Shape[1]])
	if err != nil {
		return nil, err
	}
	body := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[1,%d],"datatype":"FP32","data":%s}]}`, in.Shape[1], row)
	return []byte(body), nil
}

// engineCost times the model alone in ONNX Runtime (one intra-op thread,
// in this process, on the load CPUs) and returns its cost per row in
// microseconds for calls of each of rows rows.
func engineCost(ctx context.Context, path string, rows ...int) ([]float64, error) {
	m, err := onnx.Load(path, onnx.Options{IntraOpThreads: 1})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	out := make([]float64, len(rows))
	for i, n := range rows {
		in := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{int64(n), 64}, Data: make([]float32, n*64)}}
		for j := range in[0].Data.([]float32) {
			in[0].Data.([]float32)[j] = float32(j % 17)
		}
		best := time.Duration(0)
		for round := 0; round < 5; round++ {
			calls, t0 := 0, time.Now()
			for calls < 1000 && (calls < 3 || time.Since(t0) < 50*time.Millisecond) {
				if _, err := m.Predict(ctx, in); err != nil {
					return nil, err
				}
				calls++
			}
			if d := time.Since(t0) / time.Duration(calls); round == 0 || d < best {
				best = d
			}
		}
		out[i] = float64(best.Nanoseconds()) / 1000 / float64(n)
	}
	return out, nil
}

// Run implements harness.Scenario.
func (Batching) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	if err := onnx.Available(""); err != nil {
		return res, fmt.Errorf("the onnx engine cannot run here: %w", err)
	}
	lib, _ := onnx.FindLibrary("")
	paths := map[*batchingModel]string{}
	body, err := mlpBody(env)
	if err != nil {
		return res, err
	}
	cache, cacheKnown := lastLevelCache()
	big := beyondCacheLayers(cache)
	for i := range batchingModels {
		m := &batchingModels[i]
		if !m.goal {
			path := filepath.Join(env.Root, "examples", "mlp-onnx", m.file)
			if _, err := os.Stat(path); err != nil {
				return res, fmt.Errorf("the mlp-onnx example model is missing (re-export it with examples/mlp-onnx/export.py): %w", err)
			}
			paths[m] = path
			continue
		}
		m.layers = formatLayers(big)
		path := filepath.Join(env.Work, "mlp-beyond-cache.onnx")
		if err := writeMLPONNX(path, big, 1); err != nil {
			return res, fmt.Errorf("writing the beyond-cache MLP: %w", err)
		}
		paths[m] = path
	}
	costs := map[*batchingModel][]float64{}
	for m, path := range paths {
		c, err := engineCost(ctx, path, 1, batchingMaxBatchSize)
		if err != nil {
			return res, fmt.Errorf("timing %s in ONNX Runtime: %w", m.file, err)
		}
		costs[m] = c
	}

	ebb, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: "ebb-batching",
		// The examples, and the generated model in the work dir.
		Flags: []string{"--model-roots=" + env.Root + "," + env.Work}})
	if err != nil {
		return res, err
	}
	policy := &serving.Batching{MaxBatchSize: batchingMaxBatchSize, MaxQueueDelay: serving.D(batchingMaxDelay)}
	var targets []batchingTarget
	for i := range batchingModels {
		m := &batchingModels[i]
		for _, on := range []bool{false, true} {
			spec := harness.DeploymentSpec("onnx", paths[m], 1, 1, 10*time.Minute)
			name, dep := "batching off", "mlp-unbatched"
			if on {
				spec.Batching = policy
				name, dep = "batching on", "mlp-batched"
			}
			if m.prefix != "" {
				name = strings.TrimSuffix(m.prefix, ".") + ", " + name
				dep = strings.TrimSuffix(m.prefix, ".") + "-" + dep
			}
			if err := ebb.Create(ctx, dep, spec); err != nil {
				return res, err
			}
			if _, _, err := ebb.WaitReady(ctx, dep, 1, 60*time.Second); err != nil {
				return res, err
			}
			targets = append(targets, batchingTarget{m, on, name, ebb.URL + "/v2/models/" + dep + "/infer"})
		}
	}

	// Each model's two deployments must answer, and alike, before they are
	// timed.
	c := &http.Client{Timeout: 30 * time.Second}
	want := map[*batchingModel][]float64{}
	for _, t := range targets {
		got, err := samplePredictions(ctx, c, t.name, t.url, body)
		if err != nil {
			return res, err
		}
		if w, ok := want[t.model]; !ok {
			want[t.model] = got
		} else if !sameOutputs(w, got) {
			res.Notes = append(res.Notes, fmt.Sprintf("PREDICTIONS DIFFER: %s returned %v, batching off returned %v.", t.name, got, w))
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
			env.Logf("round %d %-22s %8.0f req/s (c=%d, p50 %.3f ms, p95 %.3f ms, p99 %.3f ms, %d errors)",
				round, t.name, r.RPS(), batchingConns, r.P50Us/1000, r.P95Us/1000, r.P99Us/1000, r.Errors())
			runs[t.name] = append(runs[t.name], r)
		}
	}
	batchingReport(&res, env, targets, runs, costs, rounds, dur)
	res.Summary = fmt.Sprintf("Three MLPs served by ebb's onnx engine (ONNX Runtime %s from %s): "+
		"the small example of `examples/mlp-onnx` (%s, 70 KB), its wide variant (`export.py --wide`: %s, 17 MB), "+
		"and a model generated for this machine (%s, %s of float32 weights, random with a fixed seed), sized so that its weights are at least twice "+
		"the CPU's last-level cache (%s%s): one row has to stream every weight from memory, so the model's own cost per row dominates serving a request, "+
		"and a batch shares that pass. Each runs in two deployments of one replica each, reached through ebb's gateway: "+
		"one without batching, one with `batching: {maxBatchSize: %d, maxQueueDelay: %s}`. "+
		"Each deployment is loaded alike by wrk at %d connections (closed loop) with the same one-row OIP v2 request; the rounds alternate between the six. "+
		"The goal, at least %.0f× the throughput with batching at an equal or better p95, is judged on the generated model; "+
		"the other two show where batching stops paying.",
		onnx.LibraryVersion, lib, batchingModels[0].layers, batchingModels[1].layers, formatLayers(big), humanize.IBytes(uint64(weightBytes(big))),
		humanize.IBytes(uint64(cache)), map[bool]string{true: "", false: ", assumed: sysfs does not say"}[cacheKnown],
		batchingMaxBatchSize, batchingMaxDelay, batchingConns, batchingGoalRatio)
	res.Figures["cacheBytes"] = float64(cache)
	res.Figures["big.weightBytes"] = float64(weightBytes(big))
	return res, nil
}

// batchingReport fills res's tables, figures, goals and notes from the
// runs of each target.
func batchingReport(res *harness.Result, env *harness.Env, targets []batchingTarget, runs map[string][]wrk95,
	costs map[*batchingModel][]float64, rounds int, dur time.Duration) {
	med := func(name string, f func(wrk95) float64) float64 {
		xs := make([]float64, len(runs[name]))
		for i, r := range runs[name] {
			xs[i] = f(r)
		}
		return harness.Median(xs)
	}
	rps := func(r wrk95) float64 { return r.RPS() }
	q50 := func(r wrk95) float64 { return r.P50Us / 1000 }
	q95 := func(r wrk95) float64 { return r.P95Us / 1000 }
	q99 := func(r wrk95) float64 { return r.P99Us / 1000 }

	res.Figures = map[string]float64{}
	var rows, raw [][]string
	for _, t := range targets {
		var errs, total int64
		for i, r := range runs[t.name] {
			errs += r.Errors()
			total += r.Requests
			raw = append(raw, []string{t.name, fmt.Sprint(i + 1), harness.F(r.RPS()), fmt.Sprint(r.Requests),
				harness.F(r.P50Us / 1000), harness.F(r.P95Us / 1000), harness.F(r.P99Us / 1000), fmt.Sprint(r.Errors())})
		}
		k := t.key()
		res.Figures[k+".rps"] = med(t.name, rps)
		res.Figures[k+".p50Ms"] = med(t.name, q50)
		res.Figures[k+".p95Ms"] = med(t.name, q95)
		res.Figures[k+".p99Ms"] = med(t.name, q99)
		res.Figures[k+".errors"] = float64(errs)
		rows = append(rows, []string{t.name, harness.F(med(t.name, rps)), harness.F(med(t.name, q50)),
			harness.F(med(t.name, q95)), harness.F(med(t.name, q99)), fmt.Sprintf("%d of %d", errs, total)})
		if errs > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %d of %d requests failed (socket errors, timeouts or non-2xx).", t.name, errs, total))
		}
	}

	// One line per model: the engine's cost per row and the ratios.
	var byModel [][]string
	servers := float64(serverCPUCount(env))
	for i := 0; i+1 < len(targets); i += 2 {
		off, on := targets[i], targets[i+1]
		m := off.model
		offRPS, onRPS := med(off.name, rps), med(on.name, rps)
		offP95, onP95 := med(off.name, q95), med(on.name, q95)
		ratio, p95Ratio := harness.Ratio(onRPS, offRPS), harness.Ratio(onP95, offP95)
		cost := costs[m]
		res.Figures[m.prefix+"engineUsPerRow.rows1"] = cost[0]
		res.Figures[m.prefix+fmt.Sprintf("engineUsPerRow.rows%d", batchingMaxBatchSize)] = cost[1]
		res.Figures[m.prefix+"ratio.rps"] = ratio
		res.Figures[m.prefix+"ratio.p95"] = p95Ratio
		verdict := "reported only"
		if m.goal {
			met := ratio >= batchingGoalRatio && onP95 > 0 && onP95 <= offP95
			verdict = map[bool]string{true: "goal MET", false: "goal NOT MET"}[met]
		}
		byModel = append(byModel, []string{m.label + " (" + m.layers + ")", harness.F(cost[0]), harness.F(cost[1]),
			harness.F(offRPS), harness.F(onRPS), harness.F(ratio) + "×", harness.F(offP95), harness.F(onP95), verdict})
		if m.goal {
			res.Goals = append(res.Goals, harness.Goal{
				Name: "throughput, batching on vs off (MLP beyond cache)", Target: fmt.Sprintf("batching on ≥ %.0f× batching off's req/s", batchingGoalRatio),
				Ebb: onRPS, Peer: offRPS, PeerName: "batching off", Unit: "req/s", Ratio: ratio, Met: ratio >= batchingGoalRatio,
				Detail: fmt.Sprintf("%s: batching on %.0f req/s, off %.0f req/s: on/off = %.2f×", m.layers, onRPS, offRPS, ratio),
			}, harness.Goal{
				Name: "p95, batching on vs off (MLP beyond cache)", Target: "batching on's p95 ≤ batching off's (equal or better)",
				Ebb: onP95, Peer: offP95, PeerName: "batching off", Unit: "ms", Ratio: p95Ratio, Met: onP95 > 0 && onP95 <= offP95,
				Detail: fmt.Sprintf("p95 at %d connections: batching on %.2f ms, off %.2f ms: on/off = %.2f×", batchingConns, onP95, offP95, p95Ratio),
			})
			continue
		}
		// Closed loop at 64 connections keeps the server CPUs busy, so
		// CPU time per request is about their count over the req/s.
		perReq := servers * 1e6 / offRPS
		// Batching can save at most the model's own cost per row minus its
		// cost per row in a full batch; the rest every request pays.
		bound := math.Inf(1)
		if left := perReq - (cost[0] - cost[1]); left > 0 {
			bound = perReq / left
		}
		res.Notes = append(res.Notes, fmt.Sprintf("The %s model (reported, not the goal's) gains %.2f× in throughput (p95 %.2f×) from batching: "+
			"ONNX Runtime runs it in %.1f µs per row alone and %.2f µs per row in %d-row calls, while serving one request without batching takes about %.0f µs of server CPU "+
			"(%.0f CPU(s) at %.0f req/s), HTTP, JSON and the gateway included, which every request pays with or without batching. "+
			"Batching can remove at most the %.1f µs the model saves per row in a batch, so its gain here is bounded by about %.2f×.",
			m.label, ratio, p95Ratio, cost[0], cost[1], batchingMaxBatchSize, perReq, servers, offRPS, cost[0]-cost[1], bound))
	}
	res.Tables = append(res.Tables, harness.Table{
		Caption: fmt.Sprintf("Each model: ONNX Runtime's own cost per row (one thread, timed in the harness), then medians over %d round(s) of %s at %d connections through ebb's gateway.",
			rounds, dur, batchingConns),
		Header: []string{"Model", "engine µs/row, 1 row", fmt.Sprintf("engine µs/row, %d rows", batchingMaxBatchSize),
			"off req/s", "on req/s", "on/off", "off p95 ms", "on p95 ms", "verdict"},
		Rows: byModel,
	}, harness.Table{
		Caption: fmt.Sprintf("Medians over %d round(s) of %s at %d connections, one-row requests through ebb's gateway.", rounds, dur, batchingConns),
		Header:  []string{"Replica", "req/s", "p50 ms", "p95 ms", "p99 ms", "failed"},
		Rows:    rows,
	}, harness.Table{
		Caption: "Raw runs:",
		Header:  []string{"Replica", "Round", "req/s", "requests", "p50 ms", "p95 ms", "p99 ms", "errors"},
		Rows:    raw,
	})
	res.Notes = append(res.Notes, "Each replica gives ONNX Runtime one intra-op thread per CPU it may use (its GOMAXPROCS; here the replicas are pinned to the server CPUs). "+
		"ONNX Runtime's own default, one per core of the machine, gave a replica pinned to one CPU a second thread that spun on that CPU during batched calls "+
		"(a third of the batched replica's CPU in a profile), which is why the previous report had batching slower than no batching on the small model (0.78×).")
}

// samplePredictions sends one request to url and returns its first
// output's data, so that servers compared in a group can be checked to
// predict the same before they are timed.
func samplePredictions(ctx context.Context, c *http.Client, name, url string, body []byte) ([]float64, error) {
	code, out, _, err := harness.Post(ctx, c, url, body)
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("%s: sample request failed: HTTP %d %v %.300s", name, code, err, out)
	}
	got, err := outputsOf(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return got, nil
}
