package scenarios

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

// Routing compares gateway throughput of an ebb with one deployment against
// an ebb with 10,000 more deployments (at zero replicas) in its routing
// table, both serving the same no-op deployment.
type Routing struct{}

// Name implements harness.Scenario.
func (Routing) Name() string { return "routing" }

// Title implements harness.Scenario.
func (Routing) Title() string { return "4. Routing scale" }

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat on
// Linux.
const clockTicks = 100

// Run implements harness.Scenario.
func (Routing) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	many := harness.Pick(env, 10000, 1000)
	const path = "/v2/models/noop/infer"

	one, err := env.StartEbb(ctx, "ebb-routes-1")
	if err != nil {
		return res, err
	}
	if err := one.Create(ctx, "noop", harness.DeploymentSpec("echo", "", 1, 1, 10*time.Minute)); err != nil {
		return res, err
	}
	if _, _, err := one.WaitReady(ctx, "noop", 1, 60*time.Second); err != nil {
		return res, err
	}
	tput := harness.Pick(env, 5*time.Second, 2*time.Second)
	run := func(name, url string) (harness.WrkResult, error) {
		r, err := env.Wrk(ctx, harness.WrkRun{URL: url, Body: echoBody, Connections: proxyConns, Duration: tput})
		if err == nil {
			env.Logf("%-22s %8.0f req/s (p50 %.3f ms, p99 %.3f ms, %d errors)", name, r.RPS(), r.P50Us/1000, r.P99Us/1000, r.Errors())
		}
		return r, err
	}
	if _, err := env.Wrk(ctx, harness.WrkRun{URL: one.URL + path, Body: echoBody, Connections: proxyConns, Duration: time.Second}); err != nil {
		return res, err
	}
	before, err := run("1 deployment (alone)", one.URL+path)
	if err != nil {
		return res, err
	}

	big, err := env.StartEbb(ctx, "ebb-routes-many")
	if err != nil {
		return res, err
	}
	if err := big.Create(ctx, "noop", harness.DeploymentSpec("echo", "", 1, 1, 10*time.Minute)); err != nil {
		return res, err
	}
	created, createTime, createErr := createMany(ctx, big, many, harness.Pick(env, 300*time.Second, 90*time.Second))
	env.Logf("created %d of %d deployments in %s (%.0f/s)", created, many, createTime.Round(time.Millisecond), float64(created)/createTime.Seconds())
	if createErr != "" {
		res.Notes = append(res.Notes, "Creating deployments: "+createErr)
	}
	if _, _, err := big.WaitReady(ctx, "noop", 1, 60*time.Second); err != nil {
		return res, err
	}
	// The created deployments must be in the gateway's routing table: a
	// sample of them must answer /v2/models/{name}/ready.
	routed, sampled := routable(ctx, big, created, 30*time.Second)
	env.Logf("%d of %d sampled deployments are routable", routed, sampled)
	if routed < sampled {
		res.Notes = append(res.Notes, fmt.Sprintf("Only %d of %d sampled deployments answered /v2/models/{name}/ready with 200 within 30 s of their creation.", routed, sampled))
	}
	// How busy is the big instance when nobody sends it anything?
	time.Sleep(2 * time.Second)
	idleWindow := harness.Pick(env, 5*time.Second, 2*time.Second)
	t0 := big.Proc.TreeCPUTicks()
	time.Sleep(idleWindow)
	idleCPU := float64(big.Proc.TreeCPUTicks()-t0) / clockTicks / idleWindow.Seconds() * 100
	memOne, memBig := one.Proc.TreeMemory(), big.Proc.TreeMemory()
	if _, err := env.Wrk(ctx, harness.WrkRun{URL: big.URL + path, Body: echoBody, Connections: proxyConns, Duration: time.Second}); err != nil {
		return res, err
	}

	rounds := harness.Pick(env, 3, 1)
	var bigRuns, oneRuns []harness.WrkResult
	// otherCPU is the CPU (% of one) the instance not under load used
	// during each run: interference the alternating rounds cannot cancel.
	var bigWhileOne, oneWhileBig []float64
	for range rounds {
		t0 := one.Proc.TreeCPUTicks()
		r, err := run(fmt.Sprintf("%d deployments", created+1), big.URL+path)
		if err != nil {
			return res, err
		}
		oneWhileBig = append(oneWhileBig, cpuPercent(one.Proc.TreeCPUTicks()-t0, r))
		bigRuns = append(bigRuns, r)
		t0 = big.Proc.TreeCPUTicks()
		r, err = run("1 deployment", one.URL+path)
		if err != nil {
			return res, err
		}
		bigWhileOne = append(bigWhileOne, cpuPercent(big.Proc.TreeCPUTicks()-t0, r))
		oneRuns = append(oneRuns, r)
	}
	rps := func(rs []harness.WrkResult) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = r.RPS()
		}
		return harness.Median(xs)
	}
	oneRPS, bigRPS := rps(oneRuns), rps(bigRuns)
	ratio := harness.Ratio(bigRPS, oneRPS)
	res.Figures = map[string]float64{
		"deployments.created":     float64(created),
		"deployments.createdPerS": float64(created) / createTime.Seconds(),
		"one.rps":                 oneRPS,
		"one.aloneRps":            before.RPS(),
		"many.rps":                bigRPS,
		"many.idleCPUPercent":     idleCPU,
		"one.pssMiB":              harness.MiB(memOne.PSSBytes),
		"many.pssMiB":             harness.MiB(memBig.PSSBytes),
		"one.p99Ms":               medianMs(oneRuns, p99),
		"many.p99Ms":              medianMs(bigRuns, p99),
	}
	var raw [][]string
	add := func(name string, r harness.WrkResult, otherCPU string) {
		raw = append(raw, []string{name, harness.F(r.RPS()), fmt.Sprint(r.Requests), harness.F(r.P50Us / 1000), harness.F(r.P99Us / 1000), fmt.Sprint(r.Errors()), otherCPU})
		if r.Errors() > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %d of %d requests failed.", name, r.Errors(), r.Requests))
		}
	}
	add("1 deployment, before the big instance existed", before, "—")
	for i := range bigRuns {
		add(fmt.Sprintf("%d deployments, round %d", created+1, i+1), bigRuns[i], harness.F(oneWhileBig[i]))
		add(fmt.Sprintf("1 deployment, round %d", i+1), oneRuns[i], harness.F(bigWhileOne[i]))
	}
	res.Tables = append(res.Tables, harness.Table{
		Caption: fmt.Sprintf("Gateway throughput at %d connections, %s per run, rounds alternating between the two instances:", proxyConns, tput),
		Header:  []string{"Instance", "req/s", "requests", "p50 ms", "p99 ms", "failed", "CPU % used meanwhile by the other instance"},
		Rows:    raw,
	}, harness.Table{
		Caption: "The two instances:",
		Header:  []string{"Instance", "deployments", "median req/s", "PSS MiB (ebb up + replicas)", "processes", "idle CPU %"},
		Rows: [][]string{
			{"small", "1", harness.F(oneRPS), harness.F(harness.MiB(memOne.PSSBytes)), fmt.Sprint(memOne.Processes), "—"},
			{"big", fmt.Sprint(created + 1), harness.F(bigRPS), harness.F(harness.MiB(memBig.PSSBytes)), fmt.Sprint(memBig.Processes), harness.F(idleCPU)},
		},
	})
	if idleCPU > 5 || harness.Median(bigWhileOne) > 5 {
		res.Notes = append(res.Notes, fmt.Sprintf("The big instance used %.1f%% of a CPU while idle and %.1f%% (median) while the small instance was measured, on the same server CPU.",
			idleCPU, harness.Median(bigWhileOne)))
	}
	res.Goals = append(res.Goals, harness.Goal{
		Name: fmt.Sprintf("throughput with %d deployments", many), Target: "within 10% of 1 deployment (ratio ≥ 0.9)",
		Ebb: bigRPS, Peer: oneRPS, PeerName: "ebb with 1 deployment", Unit: "req/s", Ratio: ratio,
		Met: created == many && routed == sampled && ratio >= 0.9 && ratio <= 1.1,
		Detail: fmt.Sprintf("%d deployments: %.0f req/s; 1 deployment: %.0f req/s (%.0f before the big instance existed): %.2f×; %d of %d deployments created at %.0f/s",
			created+1, bigRPS, oneRPS, before.RPS(), ratio, created, many, float64(created)/createTime.Seconds()),
	})
	res.Summary = fmt.Sprintf("Two `ebb up` instances, each with the deployment `noop` (engine `echo`, one replica). The big one also holds %d deployments of the echo engine at zero replicas, "+
		"created through the admin API by 8 concurrent clients. Throughput of the gateway to `noop` at %d connections, in alternating rounds; the 1-deployment instance was also measured once before the big one started.",
		many, proxyConns)
	return res, nil
}

// createMany creates deployments d-00000.. at zero replicas with 8
// concurrent clients, until count or timeout. It returns how many were
// created, how long it took and the first error.
func createMany(ctx context.Context, ebb *harness.Ebb, count int, timeout time.Duration) (int, time.Duration, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var next, created atomic.Int64
	var mu sync.Mutex
	firstErr := ""
	start := time.Now()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(count) {
					return
				}
				err := ebb.Create(ctx, fmt.Sprintf("d-%05d", i), harness.DeploymentSpec("echo", "", 0, 1, time.Minute))
				if err != nil {
					mu.Lock()
					if firstErr == "" {
						firstErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil && int(created.Load()) < count && firstErr == "" {
		firstErr = fmt.Sprintf("stopped after %s with %d of %d created", timeout, created.Load(), count)
	}
	return int(created.Load()), time.Since(start), firstErr
}

// cpuPercent turns clock ticks used during a wrk run into percent of one
// CPU.
func cpuPercent(ticks uint64, r harness.WrkResult) float64 {
	if r.DurationUs == 0 {
		return 0
	}
	return float64(ticks) / clockTicks / (float64(r.DurationUs) / 1e6) * 100
}

// routable checks that up to 50 of the created deployments, spread over
// them, answer GET /v2/models/{name}/ready with 200, waiting up to timeout
// for the routing table to catch up. It returns how many did, of how many.
func routable(ctx context.Context, ebb *harness.Ebb, created int, timeout time.Duration) (ok, sampled int) {
	var names []string
	step := max(1, created/50)
	for i := 0; i < created; i += step {
		names = append(names, fmt.Sprintf("d-%05d", i))
	}
	if created > 0 {
		names = append(names, fmt.Sprintf("d-%05d", created-1))
	}
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for _, n := range names {
		for {
			code := 0
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, ebb.URL+"/v2/models/"+n+"/ready", nil)
			if err == nil {
				if resp, err := c.Do(req); err == nil {
					code = resp.StatusCode
					resp.Body.Close()
				}
			}
			if code == http.StatusOK {
				ok++
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return ok, len(names)
}
