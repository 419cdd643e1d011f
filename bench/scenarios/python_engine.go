package scenarios

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/serving"
)

// PythonEngine serves Python models with ebb's python engine (the Go replica
// server in front of Python worker processes) and compares them with the
// same model in FastAPI under uvicorn, and with batching on and off:
//
//   - the scikit-learn pipeline of examples/sklearn-python, through ebb's
//     gateway, against the same class loaded in FastAPI (the goal: at least
//     1.5× FastAPI's req/s at an equal or better p99);
//   - a compute-bound numpy model (python/wide_mlp.py) with batching off and
//     on (the goal: at least 3× the req/s with batching on).
type PythonEngine struct{}

// Name implements harness.Scenario.
func (PythonEngine) Name() string { return "python" }

// Title implements harness.Scenario.
func (PythonEngine) Title() string {
	return "7. Python models: ebb's python engine vs FastAPI, and batching"
}

// The load, the policies compared and the goals.
const (
	pyConns          = 32
	pyBatchConns     = 64
	pyMaxBatchSize   = 32
	pyMaxDelay       = 2 * time.Millisecond
	pySklearnGoal    = 1.5
	pyBatchGoalRatio = 3.0
)

// pyTarget is one server under load.
type pyTarget struct {
	name string // in tables: "ebb, batching on"
	key  string // figures' prefix: "sklearn.ebb_batching_on"
	url  string
	body []byte
	// group is the comparison it belongs to: "sklearn" or "mlp".
	group string
}

// Run implements harness.Scenario.
func (PythonEngine) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	if out, err := exec.CommandContext(ctx, env.Python, "-c", "import numpy, sklearn, joblib, fastapi, uvicorn, uvloop, httptools").CombinedOutput(); err != nil {
		return res, fmt.Errorf("%s cannot import the python scenario's modules (apt-get install python3-sklearn python3-fastapi python3-uvicorn python3-uvloop python3-httptools): %v: %s",
			env.Python, err, strings.TrimSpace(string(out)))
	}
	pyDir, err := writePython(env)
	if err != nil {
		return res, err
	}
	example := filepath.Join(env.Root, "examples", "sklearn-python")
	skBody, err := os.ReadFile(filepath.Join(example, "request.json"))
	if err != nil {
		return res, fmt.Errorf("the sklearn-python example request is missing: %w", err)
	}
	mlpBody := mlpRequestBody()
	cache, cacheKnown := lastLevelCache()
	big := beyondCacheLayers(cache)
	mlpModel := filepath.Join(pyDir, "wide_mlp.json")
	if err := os.WriteFile(mlpModel, fmt.Appendf(nil, `{"layers": [%d, %d, %d, %d]}`, big[0], big[1], big[2], big[3]), 0o644); err != nil {
		return res, err
	}
	workers := serverCPUCount(env)

	ebb, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: "ebb-python",
		// The examples, and wide_mlp.py where writePython put it.
		Flags: []string{"--model-roots=" + env.Root + "," + pyDir}})
	if err != nil {
		return res, err
	}
	policy := &serving.Batching{MaxBatchSize: pyMaxBatchSize, MaxQueueDelay: serving.D(pyMaxDelay)}
	deploy := func(name, model, class string, batching *serving.Batching) (string, error) {
		spec := harness.DeploymentSpec("python", model, 1, 1, 10*time.Minute)
		spec.Python = &serving.Python{Class: class, Workers: int32(workers)}
		spec.Batching = batching
		// One BLAS thread per worker: one worker per server CPU.
		spec.Env = map[string]string{"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
		if err := ebb.Create(ctx, name, spec); err != nil {
			return "", err
		}
		if _, _, err := ebb.WaitReady(ctx, name, 1, 90*time.Second); err != nil {
			return "", err
		}
		return ebb.URL + "/v2/models/" + name + "/infer", nil
	}
	var targets []pyTarget
	for _, d := range []struct {
		dep, name, key, group, model, class string
		batching                            *serving.Batching
		body                                []byte
	}{
		{"sklearn", "ebb, batching off", "sklearn.ebb_batching_off", "sklearn", filepath.Join(example, "model.joblib"), "model.py:Model", nil, skBody},
		{"sklearn-batched", "ebb, batching on", "sklearn.ebb_batching_on", "sklearn", filepath.Join(example, "model.joblib"), "model.py:Model", policy, skBody},
		{"mlp", "MLP beyond cache, batching off", "mlp.batching_off", "mlp", mlpModel, "wide_mlp.py:Model", nil, mlpBody},
		{"mlp-batched", "MLP beyond cache, batching on", "mlp.batching_on", "mlp", mlpModel, "wide_mlp.py:Model", policy, mlpBody},
	} {
		url, err := deploy(d.dep, d.model, d.class, d.batching)
		if err != nil {
			return res, err
		}
		targets = append(targets, pyTarget{d.name, d.key, url, d.body, d.group})
	}
	fastapi, _, err := startSklearnFastAPI(ctx, env, pyDir, example, workers)
	if err != nil {
		return res, err
	}
	targets = append(targets, pyTarget{"FastAPI+uvicorn", "sklearn.fastapi", fastapi + "/v2/models/sklearn/infer", skBody, "sklearn"})

	// Every server of a group must give the same predictions before it is
	// timed.
	c := &http.Client{Timeout: 30 * time.Second}
	want := map[string][]float64{}
	for _, t := range targets {
		got, err := samplePredictions(ctx, c, t.name, t.url, t.body)
		if err != nil {
			return res, err
		}
		if w, ok := want[t.group]; !ok {
			want[t.group] = got
		} else if !sameOutputs(w, got) {
			res.Notes = append(res.Notes, fmt.Sprintf("PREDICTIONS DIFFER: %s returned %v, %s's first server returned %v.", t.name, got, t.group, w))
		}
	}

	warmup := harness.Pick(env, 2*time.Second, time.Second)
	dur := harness.Pick(env, 5*time.Second, 2*time.Second)
	rounds := harness.Pick(env, 3, 1)
	conns := func(t pyTarget) int {
		if t.group == "mlp" {
			return pyBatchConns
		}
		return pyConns
	}
	for _, t := range targets {
		if _, err := runWrk95(ctx, env, t.url, t.body, conns(t), warmup); err != nil {
			return res, fmt.Errorf("warm-up of %s: %w", t.name, err)
		}
	}
	runs := map[string][]wrk95{}
	for round := 1; round <= rounds; round++ {
		for _, t := range targets {
			r, err := runWrk95(ctx, env, t.url, t.body, conns(t), dur)
			if err != nil {
				return res, fmt.Errorf("%s round %d: %w", t.name, round, err)
			}
			env.Logf("round %d %-24s %8.0f req/s (c=%d, p50 %.3f ms, p99 %.3f ms, %d errors)",
				round, t.name, r.RPS(), conns(t), r.P50Us/1000, r.P99Us/1000, r.Errors())
			runs[t.name] = append(runs[t.name], r)
		}
	}
	if ebb.Proc.Exited() {
		return res, fmt.Errorf("ebb exited during the load; log tail:\n%s", ebb.Proc.LogTail(2000))
	}
	pythonReport(&res, targets, runs, conns, rounds, dur)
	res.Summary = fmt.Sprintf("Python models served by ebb's python engine: the Go replica server (REST, validation, batching) hands decoded tensors to "+
		"%d Python worker process(es) per replica (`spec.python.workers`, one per server CPU) over a Unix socket in a binary framing, "+
		"reached through ebb's gateway, one replica per deployment. "+
		"(1) The scikit-learn pipeline of `examples/sklearn-python` (impute, scale, one-hot, linear regression) with its 2-row request "+
		"(`request.json`), served by ebb with batching off and on (`batching: {maxBatchSize: %d, maxQueueDelay: %s}`), and by the same "+
		"`model.py` class in FastAPI under uvicorn (%d worker(s), uvloop, httptools; `python/sklearn_fastapi.py`), all loaded alike by wrk "+
		"at %d connections. (2) A compute-bound numpy model (`python/wide_mlp.py`: %s, one BLAS thread per worker), "+
		"sized so that its %s of weights are at least twice the CPU's last-level cache (%s%s) and one row streams every weight from memory, "+
		"with batching off and on, loaded by wrk at %d connections with one-row requests. Rounds alternate between the five servers.",
		workers, pyMaxBatchSize, pyMaxDelay, workers, pyConns, formatLayers(big), humanize.IBytes(uint64(weightBytes(big))),
		humanize.IBytes(uint64(cache)), map[bool]string{true: "", false: ", assumed: sysfs does not say"}[cacheKnown], pyBatchConns)
	return res, nil
}

// mlpRequestBody is a one-row request for wide_mlp.py.
func mlpRequestBody() []byte {
	row := make([]string, 64)
	for i := range row {
		row[i] = strconv.FormatFloat(float64(i%17)/8-1, 'f', -1, 64)
	}
	return []byte(`{"inputs":[{"name":"x","shape":[1,64],"datatype":"FP32","data":[` + strings.Join(row, ",") + `]}]}`)
}

// startSklearnFastAPI starts python/sklearn_fastapi.py under uvicorn and
// returns its base URL.
func startSklearnFastAPI(ctx context.Context, env *harness.Env, pyDir, example string, workers int) (string, *harness.Proc, error) {
	port, err := harness.FreePort()
	if err != nil {
		return "", nil, err
	}
	p, err := env.Start(harness.StartOptions{
		Name: "FastAPI+uvicorn (sklearn)",
		Dir:  pyDir,
		Env:  []string{"EBB_BENCH_SKLEARN_DIR=" + example, "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "PYTHONDONTWRITEBYTECODE=1"},
	}, env.Python, "-m", "uvicorn", "--host", "127.0.0.1", "--port", strconv.Itoa(port), "--workers", strconv.Itoa(workers),
		"--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning", "--app-dir", pyDir, "sklearn_fastapi:app")
	if err != nil {
		return "", nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	return url, p, harness.WaitHTTP(ctx, p, url+"/v2/health/ready", 90*time.Second)
}

// pythonReport fills res's tables, figures and goals from the runs.
func pythonReport(res *harness.Result, targets []pyTarget, runs map[string][]wrk95, conns func(pyTarget) int, rounds int, dur time.Duration) {
	med := func(name string, f func(wrk95) float64) float64 {
		xs := make([]float64, len(runs[name]))
		for i, r := range runs[name] {
			xs[i] = f(r)
		}
		return harness.Median(xs)
	}
	rps := func(name string) float64 { return med(name, func(r wrk95) float64 { return r.RPS() }) }
	p99 := func(name string) float64 { return med(name, func(r wrk95) float64 { return r.P99Us / 1000 }) }

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
		p50 := med(t.name, func(r wrk95) float64 { return r.P50Us / 1000 })
		p95 := med(t.name, func(r wrk95) float64 { return r.P95Us / 1000 })
		res.Figures[t.key+".rps"] = rps(t.name)
		res.Figures[t.key+".p50Ms"] = p50
		res.Figures[t.key+".p95Ms"] = p95
		res.Figures[t.key+".p99Ms"] = p99(t.name)
		res.Figures[t.key+".errors"] = float64(errs)
		rows = append(rows, []string{t.name, fmt.Sprint(conns(t)), harness.F(rps(t.name)), harness.F(p50), harness.F(p95), harness.F(p99(t.name)),
			fmt.Sprintf("%d of %d", errs, total)})
		if errs > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %d of %d requests failed (socket errors, timeouts or non-2xx).", t.name, errs, total))
		}
	}

	const off, on, peer = "ebb, batching off", "ebb, batching on", "FastAPI+uvicorn"
	fastRPS, fastP99 := rps(peer), p99(peer)
	for _, name := range []string{off, on} {
		k := map[string]string{off: "sklearn.ratio_batching_off", on: "sklearn.ratio_batching_on"}[name]
		res.Figures[k+".rps"] = harness.Ratio(rps(name), fastRPS)
		res.Figures[k+".p99"] = harness.Ratio(p99(name), fastP99)
	}
	onRPS, onP99 := rps(on), p99(on)
	rpsRatio, p99Ratio := harness.Ratio(onRPS, fastRPS), harness.Ratio(onP99, fastP99)
	res.Goals = append(res.Goals, harness.Goal{
		Name: "sklearn-python throughput vs FastAPI", Target: fmt.Sprintf("ebb ≥ %.1f× FastAPI+uvicorn's req/s", pySklearnGoal),
		Ebb: onRPS, Peer: fastRPS, PeerName: peer, Unit: "req/s", Ratio: rpsRatio, Met: rpsRatio >= pySklearnGoal,
		Detail: fmt.Sprintf("ebb with batching %.0f req/s, FastAPI+uvicorn %.0f req/s: %.2f× (ebb without batching %.0f req/s: %.2f×)",
			onRPS, fastRPS, rpsRatio, rps(off), harness.Ratio(rps(off), fastRPS)),
	}, harness.Goal{
		Name: "sklearn-python p99 vs FastAPI", Target: "ebb's p99 ≤ FastAPI+uvicorn's (equal or better)",
		Ebb: onP99, Peer: fastP99, PeerName: peer, Unit: "ms", Ratio: p99Ratio, Met: onP99 > 0 && onP99 <= fastP99,
		Detail: fmt.Sprintf("p99 at %d connections: ebb with batching %.2f ms, FastAPI+uvicorn %.2f ms: %.2f× (ebb without batching %.2f ms: %.2f×)",
			pyConns, onP99, fastP99, p99Ratio, p99(off), harness.Ratio(p99(off), fastP99)),
	})

	const mlpOff, mlpOn = "MLP beyond cache, batching off", "MLP beyond cache, batching on"
	ratio := harness.Ratio(rps(mlpOn), rps(mlpOff))
	res.Figures["mlp.ratio.rps"] = ratio
	res.Figures["mlp.ratio.p99"] = harness.Ratio(p99(mlpOn), p99(mlpOff))
	res.Goals = append(res.Goals, harness.Goal{
		Name: "compute-bound Python model, batching on vs off", Target: fmt.Sprintf("batching on ≥ %.0f× batching off's req/s", pyBatchGoalRatio),
		Ebb: rps(mlpOn), Peer: rps(mlpOff), PeerName: "batching off", Unit: "req/s", Ratio: ratio, Met: ratio >= pyBatchGoalRatio,
		Detail: fmt.Sprintf("MLP beyond cache in numpy: batching on %.0f req/s (p99 %.2f ms), off %.0f req/s (p99 %.2f ms): on/off = %.2f×",
			rps(mlpOn), p99(mlpOn), rps(mlpOff), p99(mlpOff), ratio),
	})

	res.Tables = append(res.Tables, harness.Table{
		Caption: fmt.Sprintf("Medians over %d round(s) of %s each, closed-loop wrk load through ebb's gateway (FastAPI directly).", rounds, dur),
		Header:  []string{"Server", "connections", "req/s", "p50 ms", "p95 ms", "p99 ms", "failed"},
		Rows:    rows,
	}, harness.Table{
		Caption: "Raw runs:",
		Header:  []string{"Server", "Round", "req/s", "requests", "p50 ms", "p95 ms", "p99 ms", "errors"},
		Rows:    raw,
	})
}
