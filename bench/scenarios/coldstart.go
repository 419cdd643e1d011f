package scenarios

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/serving"
)

// ColdStart measures the first response of deployments at zero replicas
// (process backend), the cold-start phases ebb reports, the warm latency of
// the same model, a burst of concurrent requests at zero, and, as the
// peer, a Python microservice started from nothing until its first answer.
type ColdStart struct{}

// Name implements harness.Scenario.
func (ColdStart) Name() string { return "coldstart" }

// Title implements harness.Scenario.
func (ColdStart) Title() string { return "3. Scale from zero" }

var phaseNames = []string{serving.PhaseProcessStarted, serving.PhaseModelLoaded, serving.PhaseReady}

// Run implements harness.Scenario.
func (ColdStart) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	modelPath, body, err := diabetesModel(env)
	if err != nil {
		return res, err
	}
	ebb, err := env.StartEbb(ctx, "ebb-cold")
	if err != nil {
		return res, err
	}
	n := harness.Pick(env, 50, 10)
	for i := range n {
		if err := ebb.Create(ctx, fmt.Sprintf("cold-%d", i), harness.DeploymentSpec("trees", modelPath, 0, 1, 10*time.Minute)); err != nil {
			return res, err
		}
	}
	if err := ebb.Create(ctx, "warm", harness.DeploymentSpec("trees", modelPath, 1, 1, 10*time.Minute)); err != nil {
		return res, err
	}
	if _, _, err := ebb.WaitReady(ctx, "warm", 1, 60*time.Second); err != nil {
		return res, err
	}
	// Let the control loop settle after the creations.
	time.Sleep(time.Second)

	c := &http.Client{Timeout: 90 * time.Second}
	defer c.CloseIdleConnections()
	var cold []time.Duration
	phases := map[string][]time.Duration{}
	var unaccounted []time.Duration
	var failures []string
	for i := range n {
		name := fmt.Sprintf("cold-%d", i)
		if d, err := ebb.Get(ctx, name); err == nil && d.Status.ReadyReplicas > 0 {
			failures = append(failures, fmt.Sprintf("%s had %d ready replicas before its first request", name, d.Status.ReadyReplicas))
		}
		code, out, lat, err := harness.Post(ctx, c, ebb.URL+"/v2/models/"+name+"/infer", body)
		if err != nil || code != http.StatusOK {
			failures = append(failures, fmt.Sprintf("%s: HTTP %d %v %.200s", name, code, err, out))
			continue
		}
		cold = append(cold, lat)
		d, err := ebb.Get(ctx, name)
		if err != nil || len(d.Status.ReplicaStatuses) == 0 {
			failures = append(failures, fmt.Sprintf("%s: no replica status after the first response (%v)", name, err))
			continue
		}
		var sum time.Duration
		for _, ph := range d.Status.ReplicaStatuses[0].ColdStart {
			phases[ph.Name] = append(phases[ph.Name], ph.Duration.Duration)
			sum += ph.Duration.Duration
		}
		unaccounted = append(unaccounted, lat-sum)
		time.Sleep(100 * time.Millisecond)
	}
	env.Logf("cold starts: %d measured, p50 %.1f ms, p99 %.1f ms", len(cold), harness.Ms(harness.Quantile(cold, .5)), harness.Ms(harness.Quantile(cold, .99)))

	warmN := harness.Pick(env, 500, 200)
	warm, warmFailed := harness.Sequential(ctx, ebb.URL+"/v2/models/warm/infer", body, warmN, 20*time.Second)
	if warmFailed > 0 {
		failures = append(failures, fmt.Sprintf("warm: %d of %d requests failed", warmFailed, warmN))
	}

	burstN := 1000
	if err := ebb.Create(ctx, "burst", harness.DeploymentSpec("trees", modelPath, 0, 4, 10*time.Minute)); err != nil {
		return res, err
	}
	time.Sleep(500 * time.Millisecond)
	burstStart := time.Now()
	burst := harness.Burst(ctx, ebb.URL+"/v2/models/burst/infer", body, burstN, 90*time.Second)
	burstOK := burst.Codes[http.StatusOK]
	burstLen := slices.Max(burst.Latencies)
	burstStatus, _ := ebb.Get(ctx, "burst")
	scaleOut, scaled := scaleOutStart(burstStatus.Status.ReplicaStatuses, burstStart)
	env.Logf("burst: %d of %d answered 200 (codes %v), max %.1f ms; second replica started %.1f ms into the burst (scaled out: %v)",
		burstOK, burstN, burst.Codes, harness.Ms(burstLen), harness.Ms(scaleOut), scaled)

	// The peer: a Python microservice that is not running when its first
	// request arrives must start, import, load the model and answer.
	pyRuns := harness.Pick(env, 3, 1)
	pyCold := map[string][]time.Duration{}
	for _, s := range pyServers {
		for range pyRuns {
			d, err := pythonColdStart(ctx, env, s, modelPath, body)
			if err != nil {
				return res, err
			}
			pyCold[s.name] = append(pyCold[s.name], d)
		}
	}

	res.Figures = map[string]float64{
		"cold.count":       float64(len(cold)),
		"cold.p50Ms":       harness.Ms(harness.Quantile(cold, .5)),
		"cold.p99Ms":       harness.Ms(harness.Quantile(cold, .99)),
		"cold.maxMs":       harness.Ms(harness.Quantile(cold, 1)),
		"warm.count":       float64(len(warm)),
		"warm.p50Ms":       harness.Ms(harness.Quantile(warm, .5)),
		"warm.p99Ms":       harness.Ms(harness.Quantile(warm, .99)),
		"burst.n":          float64(burstN),
		"burst.ok":         float64(burstOK),
		"burst.p50Ms":      harness.Ms(harness.Quantile(burst.Latencies, .5)),
		"burst.p99Ms":      harness.Ms(harness.Quantile(burst.Latencies, .99)),
		"burst.maxMs":      harness.Ms(harness.Quantile(burst.Latencies, 1)),
		"burst.replicas":   float64(burstStatus.Status.Replicas),
		"burst.scaleOutMs": harness.Ms(scaleOut),
	}
	rows := [][]string{
		{"ebb cold first response", fmt.Sprint(len(cold)), ms(cold, .5), ms(cold, .99), ms(cold, 1)},
		{"ebb warm (same model, via gateway, 1 connection)", fmt.Sprint(len(warm)), ms(warm, .5), ms(warm, .99), ms(warm, 1)},
	}
	for _, ph := range phaseNames {
		ds := phases[ph]
		res.Figures["phase."+ph+".p50Ms"] = harness.Ms(harness.Quantile(ds, .5))
		rows = append(rows, []string{"ebb phase `" + ph + "`", fmt.Sprint(len(ds)), ms(ds, .5), ms(ds, .99), ms(ds, 1)})
	}
	res.Figures["phase.outside.p50Ms"] = harness.Ms(harness.Quantile(unaccounted, .5))
	rows = append(rows, []string{"ebb first response minus the phases (hold, scheduling, routing, the request itself)", fmt.Sprint(len(unaccounted)),
		ms(unaccounted, .5), ms(unaccounted, .99), ms(unaccounted, 1)})
	rows = append(rows, []string{fmt.Sprintf("ebb burst: %d concurrent requests at zero", burstN), fmt.Sprint(len(burst.Latencies)),
		ms(burst.Latencies, .5), ms(burst.Latencies, .99), ms(burst.Latencies, 1)})
	bestPy, bestPyP50 := "", time.Duration(0)
	for _, s := range pyServers {
		ds := pyCold[s.name]
		p := harness.Quantile(ds, .5)
		res.Figures["python."+s.name+".coldP50Ms"] = harness.Ms(p)
		rows = append(rows, []string{s.name + " from process start to first response", fmt.Sprint(len(ds)), ms(ds, .5), ms(ds, .99), ms(ds, 1)})
		if bestPy == "" || p < bestPyP50 {
			bestPy, bestPyP50 = s.name, p
		}
	}
	res.Tables = append(res.Tables, harness.Table{
		Caption: "Latencies in ms (nearest-rank percentiles over the count shown):",
		Header:  []string{"What", "count", "p50", "p99", "max"},
		Rows:    rows,
	})
	codes := []string{}
	for code, k := range burst.Codes {
		codes = append(codes, fmt.Sprintf("%d×%d", k, code))
	}
	slices.Sort(codes)
	res.Tables = append(res.Tables, harness.Table{
		Caption: "Burst outcome:",
		Header:  []string{"requests", "answered 200", "responses by status (0 = transport error)", "replicas after the burst", "second replica started (ms into the burst)", "last answer (ms)", "first failure"},
		Rows: [][]string{{fmt.Sprint(burstN), fmt.Sprint(burstOK), strings.Join(codes, ", "), fmt.Sprint(burstStatus.Status.Replicas),
			scaleOutCell(scaleOut, scaled), harness.F(harness.Ms(burstLen)), burst.FirstError}},
	})
	for _, f := range failures {
		res.Notes = append(res.Notes, "Failure: "+f)
	}

	coldP50 := harness.Ms(harness.Quantile(cold, .5))
	res.Goals = append(res.Goals, harness.Goal{
		Name: "cold-start p50", Target: "ebb cold first-response p50 ≤ 25 ms",
		Ebb: coldP50, Peer: harness.Ms(bestPyP50), PeerName: bestPy + " cold", Unit: "ms",
		Ratio: harness.Ratio(coldP50, harness.Ms(bestPyP50)),
		Met:   len(cold) == n && coldP50 > 0 && coldP50 <= 25,
		Detail: fmt.Sprintf("%d of %d cold starts answered; p50 %.1f ms, p99 %.1f ms; warm p50 %.2f ms (cold/warm %.0f×); %s from nothing p50 %.0f ms",
			len(cold), n, coldP50, harness.Ms(harness.Quantile(cold, .99)), harness.Ms(harness.Quantile(warm, .5)),
			harness.Ratio(coldP50, harness.Ms(harness.Quantile(warm, .5))), bestPy, harness.Ms(bestPyP50)),
	})
	burstP99 := res.Figures["burst.p99Ms"]
	res.Goals = append(res.Goals, harness.Goal{
		Name: "burst at zero", Target: fmt.Sprintf("all %d concurrent requests to a deployment at zero answer 200, p99 ≤ 400 ms", burstN),
		Ebb: burstP99, Unit: "ms p99", Met: burstOK == burstN && burstP99 <= 400,
		Detail: fmt.Sprintf("%d of %d answered 200 (%s); p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d replica(s) afterwards",
			burstOK, burstN, strings.Join(codes, ", "), res.Figures["burst.p50Ms"], res.Figures["burst.p99Ms"], res.Figures["burst.maxMs"], burstStatus.Status.Replicas),
	})
	res.Goals = append(res.Goals, harness.Goal{
		Name: "scale-out during the burst", Target: "the burst's second replica starts before its last answer",
		Ebb: harness.Ms(scaleOut), Peer: harness.Ms(burstLen), PeerName: "last answer", Unit: "ms into the burst",
		Ratio: harness.Ratio(harness.Ms(scaleOut), harness.Ms(burstLen)),
		Met:   scaled && scaleOut < burstLen,
		Detail: fmt.Sprintf("second replica started %s ms into the burst; the last of %d answers came at %.1f ms; %d replica(s) afterwards",
			scaleOutCell(scaleOut, scaled), burstN, harness.Ms(burstLen), burstStatus.Status.Replicas),
	})
	res.Summary = fmt.Sprintf("One `ebb up` with %d deployments of the diabetes model at zero replicas (`minReplicas: 0`, process backend). Each gets one request, in turn, through the gateway; "+
		"its first-response time runs from sending the request to the last byte of the answer, and the cold-start phases come from the deployment's status. "+
		"The warm figure is %d sequential requests to a deployment of the same model with a ready replica. The burst sends %d requests at once, each on its own connection, to a fresh deployment at zero (maxReplicas 4). "+
		"The peer is the Python microservice cold-started the way a process-per-model platform would: from launching the server process to its first answer (%d run(s) each).",
		n, warmN, burstN, pyRuns)
	return res, nil
}

func ms(ds []time.Duration, q float64) string { return harness.F(harness.Ms(harness.Quantile(ds, q))) }

// pythonColdStart starts a Python peer and returns the time from starting
// it to its first 200 answer to an infer request; it stops the peer.
func pythonColdStart(ctx context.Context, env *harness.Env, s pyServer, model string, body []byte) (time.Duration, error) {
	dir, err := writePython(env)
	if err != nil {
		return 0, err
	}
	port, err := harness.FreePort()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	p, err := env.Start(harness.StartOptions{
		Name: s.name + " (cold)",
		Dir:  dir,
		Env:  []string{"EBB_BENCH_MODEL=" + model, "OMP_NUM_THREADS=1", "PYTHONDONTWRITEBYTECODE=1"},
	}, s.argv(env.Python, dir, port, 1)...)
	if err != nil {
		return 0, err
	}
	defer env.StopProc(p)
	url := fmt.Sprintf("http://127.0.0.1:%d/v2/models/diabetes/infer", port)
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	deadline := start.Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if code, _, _, err := harness.Post(ctx, c, url, body); err == nil && code == http.StatusOK {
			return time.Since(start), nil
		}
		if p.Exited() {
			return 0, fmt.Errorf("%s exited before answering; log tail:\n%s", s.name, p.LogTail(2000))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s did not answer within 60s; log tail:\n%s", s.name, p.LogTail(2000))
}

// scaleOutStart returns how long after start the second replica of a burst
// started (the first is the scale from zero), and false when there is no
// second replica.
func scaleOutStart(reps []serving.ReplicaStatus, start time.Time) (time.Duration, bool) {
	var at []time.Time
	for _, r := range reps {
		at = append(at, r.StartedAt)
	}
	if len(at) < 2 {
		return 0, false
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	return at[1].Sub(start), true
}

func scaleOutCell(d time.Duration, ok bool) string {
	if !ok {
		return "never"
	}
	return harness.F(harness.Ms(d))
}
