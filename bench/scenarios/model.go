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
	"sync"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

// Model serves the diabetes XGBoost model with ebb and with the same model
// file in Python microservices (Flask under gunicorn, FastAPI under
// uvicorn), and compares throughput, latency and memory.
type Model struct{}

// Name implements harness.Scenario.
func (Model) Name() string { return "model" }

// Title implements harness.Scenario.
func (Model) Title() string { return "2. One real model vs a Python microservice" }

const modelConns = 32

// diabetesModel returns the absolute path of the example model and a
// request body for it.
func diabetesModel(env *harness.Env) (string, []byte, error) {
	dir := filepath.Join(env.Root, "examples", "diabetes")
	model := filepath.Join(dir, "model.json")
	if _, err := os.Stat(model); err != nil {
		return "", nil, fmt.Errorf("the diabetes example model is missing: %w", err)
	}
	body, err := os.ReadFile(filepath.Join(dir, "request.json"))
	if err != nil {
		return "", nil, fmt.Errorf("the diabetes example request is missing: %w", err)
	}
	return model, body, nil
}

// outputsOf decodes the first output tensor's data of an OIP v2 response.
func outputsOf(b []byte) ([]float64, error) {
	var r struct {
		Outputs []struct {
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode response %.200q: %w", b, err)
	}
	if len(r.Outputs) == 0 {
		return nil, fmt.Errorf("response has no outputs: %.200q", b)
	}
	return r.Outputs[0].Data, nil
}

// Run implements harness.Scenario.
func (Model) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	modelPath, body, err := diabetesModel(env)
	if err != nil {
		return res, err
	}
	ebb, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: "ebb-model",
		// The scenario also measures the replica directly, without the
		// gateway, so replicas must not require the gateway's secret.
		Flags: []string{"--replica-secrets=false"}})
	if err != nil {
		return res, err
	}
	if err := ebb.Create(ctx, "diabetes", harness.DeploymentSpec("trees", modelPath, 1, 1, 10*time.Minute)); err != nil {
		return res, err
	}
	_, endpoint, err := ebb.WaitReady(ctx, "diabetes", 1, 60*time.Second)
	if err != nil {
		return res, err
	}
	const path = "/v2/models/diabetes/infer"
	targets := []target{{"ebb", ebb.URL + path}}
	procs := map[string]*harness.Proc{"ebb": ebb.Proc}
	for _, s := range pyServers {
		u, p, err := startPython(ctx, env, s, modelPath, 90*time.Second)
		if err != nil {
			return res, err
		}
		targets = append(targets, target{s.name, u + path})
		procs[s.name] = p
	}
	targets = append(targets, target{"ebb replica (direct)", endpoint + path})

	// Every server must give the same predictions before it is timed.
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
			continue
		}
		if !sameOutputs(want, got) {
			res.Notes = append(res.Notes, fmt.Sprintf("PREDICTIONS DIFFER: %s returned %v, ebb returned %v.", t.name, got, want))
		}
	}

	var mu sync.Mutex
	mem := map[string]harness.Memory{}
	plan := loadPlan{
		Body:   body,
		Conns:  modelConns,
		Warmup: harness.Pick(env, 2*time.Second, time.Second),
		// Five rounds of 3 s, as the proxy scenario: in the same time as
		// three of 5 s, a median that one disturbed round moves less.
		Tput:        harness.Pick(env, 3*time.Second, 2*time.Second),
		Rounds:      harness.Pick(env, 5, 1),
		LatencyN:    harness.Pick(env, 3000, 1000),
		LatencyTime: harness.Pick(env, 30*time.Second, 10*time.Second),
		AfterRun: func(t target) {
			p, ok := procs[t.name]
			if !ok {
				return
			}
			m := p.TreeMemory()
			mu.Lock()
			if m.PSSBytes > mem[t.name].PSSBytes {
				mem[t.name] = m
			}
			mu.Unlock()
		},
	}
	ms, err := runRounds(ctx, env, targets, plan)
	if err != nil {
		return res, err
	}
	for name, p := range procs {
		if p.Exited() {
			return res, fmt.Errorf("%s exited during the load; log tail:\n%s", name, p.LogTail(2000))
		}
	}

	res.Figures = map[string]float64{}
	var rows [][]string
	best := ""
	for _, t := range targets {
		m := ms[t.name]
		rps := m.rps()
		errs, total := m.errorsOf()
		res.Figures[t.name+".rps"] = rps
		res.Figures[t.name+".p50Ms"] = medianMs(m.tput, p50)
		res.Figures[t.name+".p99Ms"] = medianMs(m.tput, p99)
		res.Figures[t.name+".c1.p50Ms"] = m.latMs(.5)
		res.Figures[t.name+".c1.p99Ms"] = m.latMs(.99)
		res.Figures[t.name+".errors"] = float64(errs)
		memCells := []string{"—", "—", "—"}
		if mm, ok := mem[t.name]; ok {
			res.Figures[t.name+".pssMiB"] = harness.MiB(mm.PSSBytes)
			res.Figures[t.name+".rssMiB"] = harness.MiB(mm.RSSBytes)
			memCells = []string{harness.F(harness.MiB(mm.PSSBytes)), harness.F(harness.MiB(mm.RSSBytes)), fmt.Sprint(mm.Processes)}
		}
		rows = append(rows, append([]string{t.name, harness.F(rps),
			harness.F(medianMs(m.tput, p50)), harness.F(medianMs(m.tput, p99)),
			harness.F(m.latMs(.5)), harness.F(m.latMs(.99))},
			append(memCells, fmt.Sprintf("%d of %d", errs, total))...))
		if errs > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %d of %d requests failed (socket errors, timeouts or non-2xx).", t.name, errs, total))
		}
		if t.name == "Flask+gunicorn" || t.name == "FastAPI+uvicorn" {
			if best == "" || rps > ms[best].rps() {
				best = t.name
			}
		}
	}
	res.Tables = append(res.Tables, harness.Table{
		Caption: fmt.Sprintf("req/s, p50 and p99: medians over %d round(s) of wrk at %d connections for %s each. c=1 p50 and p99, one request at a time: %s "+
			"Memory is the serving process tree (for ebb: `ebb up` with its control plane, gateway and the replica process), the largest sample taken right after each throughput run; PSS shares pages between processes, RSS counts them in each.",
			plan.Rounds, plan.Conns, plan.Tput, latencyNote(plan, targets, ms)),
		Header: []string{"Server", "req/s", "p50 ms", "p99 ms", "c=1 p50 ms", "c=1 p99 ms", "PSS MiB", "RSS MiB", "processes", "failed"},
		Rows:   rows,
	}, harness.Table{Caption: "Raw throughput runs:", Header: rawHeader(plan.Conns), Rows: rawRows(targets, ms)})

	// Issue 12's goals: ≥ 6× FastAPI+uvicorn's and ≥ 15× Flask+gunicorn's
	// req/s through the gateway, with the replica's RSS ≤ 1/5 of the
	// Python server's.
	ebbRPS := ms["ebb"].rps()
	for _, peer := range []struct {
		name string
		want float64
	}{{"FastAPI+uvicorn", 6}, {"Flask+gunicorn", 15}} {
		peerRPS := ms[peer.name].rps()
		ratio := harness.Ratio(ebbRPS, peerRPS)
		res.Goals = append(res.Goals, harness.Goal{
			Name: "throughput vs " + peer.name, Target: fmt.Sprintf("ebb ≥ %g× %s's req/s", peer.want, peer.name),
			Ebb: ebbRPS, Peer: peerRPS, PeerName: peer.name, Unit: "req/s", Ratio: ratio, Met: ratio >= peer.want,
			Detail: fmt.Sprintf("ebb %.0f req/s, %s %.0f req/s: %.2f×", ebbRPS, peer.name, peerRPS, ratio),
		})
	}
	var parts []string
	var replica harness.ProcMemory
	for _, pm := range ebb.Proc.TreeMemoryByProcess() {
		parts = append(parts, fmt.Sprintf("pid %d `%s` %.1f MiB PSS (%.1f RSS)", pm.PID, pm.Command, harness.MiB(pm.PSSBytes), harness.MiB(pm.RSSBytes)))
		if pm.PID != ebb.Proc.PID() {
			replica = pm
		}
	}
	res.Notes = append(res.Notes, "ebb's memory by process after the load: "+strings.Join(parts, "; ")+".")
	replicaRSS, bestRSS := harness.MiB(replica.RSSBytes), harness.MiB(mem[best].RSSBytes)
	memRatio := harness.Ratio(replicaRSS, bestRSS)
	res.Figures["ebb.replicaRSSMiB"] = replicaRSS
	res.Goals = append(res.Goals, harness.Goal{
		Name: "replica memory vs best Python", Target: "ebb's replica RSS ≤ 1/5 (0.2×) of the best Python server's",
		Ebb: replicaRSS, Peer: bestRSS, PeerName: best, Unit: "MiB RSS", Ratio: memRatio, Met: memRatio > 0 && memRatio <= 0.2,
		Detail: fmt.Sprintf("replica `%s` RSS %.1f MiB, %s RSS %.1f MiB: %.2f×; all of ebb (`ebb up` and the replica) PSS %.1f MiB (RSS %.1f), %s PSS %.1f MiB",
			replica.Command, replicaRSS, best, bestRSS, memRatio, harness.MiB(mem["ebb"].PSSBytes), harness.MiB(mem["ebb"].RSSBytes), best, harness.MiB(mem[best].PSSBytes)),
	})
	n := serverCPUCount(env)
	res.Summary = fmt.Sprintf("The diabetes XGBoost regressor (`examples/diabetes/model.json`) served by ebb (engine `trees`, one replica, reached through the gateway) "+
		"and by the same file loaded with `xgboost.Booster().load_model` in Flask under gunicorn (%d sync worker(s)) and in FastAPI under uvicorn (%d worker(s), uvloop, httptools), "+
		"one worker per server CPU, XGBoost at one thread. Every server answers the same OIP v2 JSON request (`examples/diabetes/request.json`, 2 rows) "+
		"and their predictions were checked against ebb's before timing. gunicorn's sync workers close the connection after each response (no keep-alive); that is how that server works.",
		n, n)
	return res, nil
}

// sameOutputs reports whether two prediction vectors agree to 1e-4 relative.
func sameOutputs(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-4*math.Max(1, math.Abs(a[i])) {
			return false
		}
	}
	return true
}
