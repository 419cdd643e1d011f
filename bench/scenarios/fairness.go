package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Fairness measures what a flooding tenant does to a well-behaved one on a
// saturated deployment, with the gateway's fair queueing
// (spec.scaling.maxConcurrency, internal/fairqueue) and without it, in one
// run. The deployment is CPU-bound: the echo engine burning fairWorkMs of
// CPU per prediction, one replica of one CPU. The well-behaved tenant sends
// open loop at fairShare of the deployment's measured capacity; the flood,
// open loop at fairFloodTimes its capacity. The goal: with fair
// queueing, the well-behaved tenant's p99 stays within fairGoal× its p99
// without the flood.
type Fairness struct{}

// Name implements harness.Scenario.
func (Fairness) Name() string { return "fairness" }

// Title implements harness.Scenario.
func (Fairness) Title() string {
	return "13. Fair queueing: a flooding tenant beside a well-behaved one"
}

const (
	fairWorkMs     = 5
	fairFloodTimes = 10
	fairShare      = 0.2
	fairGoal       = 2.0
	// fairRamp is how long the flood runs before the well-behaved tenant's
	// requests count: the time it takes to fill the queues.
	fairRamp = 500 * time.Millisecond
	// fairOutstanding bounds the flood's requests awaited at once: beyond
	// it the flood's generator skips sends (counted). Without fair
	// queueing every one of them is in flight on the replica, or waiting
	// for one of the gateway's connections to it.
	fairOutstanding = 1200
	fairSteady      = "steady"
	fairFlood       = "flood"
	fairOn          = "fair-on"
	fairOff         = "fair-off"
)

// echoWorkModel writes an echo signature that burns workMs of CPU per
// prediction into dir and returns its path.
func echoWorkModel(dir, name string, workMs float64) (string, error) {
	sig := map[string]any{
		"inputs": []map[string]any{{"name": "input", "datatype": "FP32", "shape": []int{-1, -1}}},
		"workMs": workMs,
	}
	b, err := json.Marshal(sig)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, b, 0o644)
}

// workSpec is a deployment of the echo model at path, one replica of one
// CPU (GOMAXPROCS=1), capped at maxConcurrency requests in flight (0: no
// cap, no fair queue).
func workSpec(path string, maxConcurrency int32) serving.Spec {
	spec := harness.DeploymentSpec("echo", path, 1, 1, 10*time.Minute)
	one := int32(1)
	spec.Replicas = &one
	spec.Scaling.MaxConcurrency = maxConcurrency
	spec.Template.Resources.Limits = serving.ResourceList{serving.ResourceCPU: resource.MustParse("1")}
	return spec
}

// fairPhase is one measurement: the well-behaved tenant's answers, and the
// flood's when there was one.
type fairPhase struct {
	steady, flood harness.OpenLoopResult
}

// fairRun measures one phase at url: the well-behaved tenant at
// rate req/s for d, after the flood (when floodRate > 0) has run for
// fairRamp; it returns once every request has answered. The flood runs
// in a process of its own (bench/cmd/ebbload, bin), pinned to the load
// CPUs and logging as name, so that its client work does not queue in the
// harness's Go scheduler beside the well-behaved tenant's.
func fairRun(ctx context.Context, env *harness.Env, name, bin, bodyFile, url string, rate, floodRate float64, d time.Duration) (fairPhase, error) {
	var ph fairPhase
	var flood *harness.Proc
	if floodRate > 0 {
		var err error
		flood, err = env.StartLoad(harness.StartOptions{Name: name, Dir: env.Work}, bin, "-url", url, "-body-file", bodyFile,
			"-header", gateway.DefaultTenantHeader+"="+fairFlood, "-rate", harness.F(floodRate), "-duration", (d + fairRamp).String(),
			"-max-outstanding", fmt.Sprint(fairOutstanding), "-timeout", "2m")
		if err != nil {
			return ph, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(fairRamp):
		}
	}
	ph.steady = harness.OpenLoop(ctx, harness.OpenLoopRun{URL: url, Body: echoBody,
		Header: map[string]string{gateway.DefaultTenantHeader: fairSteady},
		Rate:   rate, Duration: d, Timeout: 2 * time.Minute})
	if flood != nil {
		var err error
		if ph.flood, err = floodResult(ctx, flood); err != nil {
			return ph, err
		}
	}
	return ph, nil
}

// floodResult waits for the flood's process to end and reads what it
// printed (bench/cmd/ebbload's result line).
func floodResult(ctx context.Context, p *harness.Proc) (harness.OpenLoopResult, error) {
	select {
	case <-ctx.Done():
		return harness.OpenLoopResult{}, ctx.Err()
	case <-p.Done():
	}
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return harness.OpenLoopResult{}, err
	}
	var r struct {
		Sent, Skipped int
		Codes         map[int]int
		ElapsedMs     float64
		FirstError    string
	}
	i := bytes.LastIndex(b, []byte("result: "))
	if i < 0 || json.Unmarshal(bytes.TrimSpace(b[i+len("result: "):]), &r) != nil {
		return harness.OpenLoopResult{}, fmt.Errorf("the flood's generator printed no result; its log:\n%s", p.LogTail(2000))
	}
	return harness.OpenLoopResult{Sent: r.Sent, Skipped: r.Skipped, Codes: r.Codes, FirstError: r.FirstError,
		Elapsed: time.Duration(r.ElapsedMs * float64(time.Millisecond))}, nil
}

// fairVerdict says whether ratio meets the goal.
func fairVerdict(ratio float64) string {
	if ratio > 0 && ratio <= fairGoal {
		return "goal MET"
	}
	return "goal NOT MET"
}

// Run implements harness.Scenario.
func (Fairness) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	model, err := echoWorkModel(env.Work, "echo-fairness.json", fairWorkMs)
	if err != nil {
		return res, err
	}
	bin, bodyFile := filepath.Join(env.Work, "ebbload"), filepath.Join(env.Work, "fairness-request.json")
	if err := harness.BuildGo(ctx, env.Root, "./bench/cmd/ebbload", bin, env.Out); err != nil {
		return res, err
	}
	if err := os.WriteFile(bodyFile, echoBody, 0o644); err != nil {
		return res, err
	}
	ebb, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: "ebb-fairness", Flags: []string{"--model-roots=" + env.Work}})
	if err != nil {
		return res, err
	}
	// fair-on admits one request at a time to its one-CPU replica and
	// queues the rest fairly across tenants; fair-off sends every request
	// on to the replica as it comes.
	deps := []struct {
		name string
		max  int32
	}{{fairOn, 1}, {fairOff, 0}}
	for _, d := range deps {
		if err := ebb.Create(ctx, d.name, workSpec(model, d.max)); err != nil {
			return res, err
		}
	}
	url := func(name string) string { return ebb.URL + "/v2/models/" + name + "/infer" }
	for _, d := range deps {
		if _, _, err := ebb.WaitReady(ctx, d.name, 1, 2*time.Minute); err != nil {
			return res, err
		}
		if lat, failed := harness.Sequential(ctx, url(d.name), echoBody, 50, 10*time.Second); failed > 0 || len(lat) == 0 {
			return res, fmt.Errorf("%s: %d of the warm-up requests failed", d.name, failed)
		}
	}

	// The capacity: a closed loop that keeps the capped deployment busy.
	capRun := harness.ClosedLoop(ctx, harness.ClosedLoopRun{URL: url(fairOn), Body: echoBody, Conns: 4,
		Requests: 100000, Duration: harness.Pick(env, 3*time.Second, 2*time.Second)})
	capacity := capRun.RPS()
	if capRun.Failed() > 0 || capacity <= 0 {
		return res, fmt.Errorf("measuring the capacity: %s (%s)", capRun.CodesText(), capRun.FirstError)
	}
	rate, floodRate := fairShare*capacity, fairFloodTimes*capacity
	d := harness.Pick(env, 8*time.Second, 4*time.Second)
	rounds := harness.Pick(env, 2, 1)
	env.Logf("capacity %.0f req/s (%d ms of CPU per request, one CPU): the steady tenant sends %.1f req/s, the flood %.0f req/s, for %s, %d round(s)",
		capacity, fairWorkMs, rate, floodRate, d, rounds)

	// Every phase's well-behaved answers are pooled over the rounds; the
	// phases alternate within a round so that a disturbance of the machine
	// falls on all of them.
	type phaseKey struct {
		dep   string
		flood bool
	}
	order := []phaseKey{{fairOn, false}, {fairOff, false}, {fairOn, true}, {fairOff, true}}
	pooled := map[phaseKey]fairPhase{}
	var raw [][]string
	for round := 1; round <= rounds && ctx.Err() == nil; round++ {
		for _, k := range order {
			fr := 0.0
			if k.flood {
				fr = floodRate
			}
			ph, err := fairRun(ctx, env, fmt.Sprintf("flood-%s-%d", k.dep, round), bin, bodyFile, url(k.dep), rate, fr, d)
			if err != nil {
				return res, err
			}
			if ebb.Proc.Exited() {
				return res, fmt.Errorf("ebb exited during the load; log tail:\n%s", ebb.Proc.LogTail(2000))
			}
			p := pooled[k]
			p.steady = mergeLoop(p.steady, ph.steady)
			p.flood = mergeLoop(p.flood, ph.flood)
			pooled[k] = p
			env.Logf("round %d %-8s flood=%-5v steady p50 %.2f ms p99 %.2f ms (%s); flood %s, %d skipped",
				round, k.dep, k.flood, harness.Ms(harness.Quantile(ph.steady.Latencies, .5)), harness.Ms(harness.Quantile(ph.steady.Latencies, .99)),
				ph.steady.CodesText(), ph.flood.CodesText(), ph.flood.Skipped)
			raw = append(raw, []string{fmt.Sprint(round), k.dep, fmt.Sprint(k.flood),
				harness.F(harness.Ms(harness.Quantile(ph.steady.Latencies, .5))), harness.F(harness.Ms(harness.Quantile(ph.steady.Latencies, .99))),
				ph.steady.CodesText(), ph.flood.CodesText(), fmt.Sprint(ph.flood.Skipped)})
		}
	}

	p99 := func(k phaseKey) float64 { return harness.Ms(harness.Quantile(pooled[k].steady.Latencies, .99)) }
	p50 := func(k phaseKey) float64 { return harness.Ms(harness.Quantile(pooled[k].steady.Latencies, .5)) }
	idleOn, idleOff := p99(phaseKey{fairOn, false}), p99(phaseKey{fairOff, false})
	floodOn, floodOff := p99(phaseKey{fairOn, true}), p99(phaseKey{fairOff, true})
	ratioOn, ratioOff := harness.Ratio(floodOn, idleOn), harness.Ratio(floodOff, idleOff)
	res.Figures = map[string]float64{
		"capacity.rps": capacity, "steady.rps": rate, "flood.rps": floodRate, "workMs": fairWorkMs,
		"on.unloaded.p99Ms": idleOn, "on.flood.p99Ms": floodOn, "on.ratio": ratioOn,
		"off.unloaded.p99Ms": idleOff, "off.flood.p99Ms": floodOff, "off.ratio": ratioOff,
	}
	rows := [][]string{}
	for _, k := range order {
		ph := pooled[k]
		name := "fair queueing on (maxConcurrency 1)"
		key := "on"
		if k.dep == fairOff {
			name, key = "fair queueing off (no maxConcurrency)", "off"
		}
		load := "alone"
		if k.flood {
			load = fmt.Sprintf("with the flood (%.0f req/s)", floodRate)
			key += ".flood"
		} else {
			key += ".unloaded"
		}
		res.Figures[key+".p50Ms"] = p50(k)
		res.Figures[key+".steadyFailed"] = float64(ph.steady.Failed())
		if k.flood {
			for code, n := range ph.flood.Codes {
				res.Figures[fmt.Sprintf("%s.flood.code%d", key, code)] = float64(n)
			}
			res.Figures[key+".flood.skipped"] = float64(ph.flood.Skipped)
		}
		floodText := "—"
		if k.flood {
			floodText = fmt.Sprintf("%s; %d not sent (%d awaited)", ph.flood.CodesText(), ph.flood.Skipped, fairOutstanding)
		}
		rows = append(rows, []string{name, load, fmt.Sprint(len(ph.steady.Latencies)), harness.F(p50(k)), harness.F(p99(k)),
			harness.F(harness.Ms(harness.Quantile(ph.steady.Latencies, 1))), ph.steady.CodesText(), floodText})
		if f := ph.steady.Failed(); f > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("The well-behaved tenant had %d of %d requests fail (%s) on %s %s: %s",
				f, ph.steady.Sent, ph.steady.CodesText(), k.dep, load, ph.steady.FirstError))
		}
	}
	res.Tables = append(res.Tables, harness.Table{
		Caption: fmt.Sprintf("The well-behaved tenant (`Ebb-Tenant: %s`, %.1f req/s open loop) alone and beside the flood (`Ebb-Tenant: %s`, %.0f req/s open loop, at most %d awaited at once), pooled over %d round(s) of %s; latencies in ms. The flood's answers by status: 429 is its tenant's queue full (`--max-queue-per-tenant`, 1000), 503 the deployment's queue full or a wait timed out.",
			fairSteady, rate, fairFlood, floodRate, fairOutstanding, rounds, d),
		Header: []string{"Deployment", "Steady tenant", "answers", "p50", "p99", "max", "steady answers", "flood answers"},
		Rows:   rows,
	}, harness.Table{
		Caption: "Raw phases:",
		Header:  []string{"round", "deployment", "flood", "steady p50 ms", "steady p99 ms", "steady answers", "flood answers", "flood not sent"},
		Rows:    raw,
	})
	res.Goals = []harness.Goal{{
		Name:   "well-behaved tenant's p99 beside a 10× flood",
		Target: fmt.Sprintf("with fair queueing, p99 ≤ %.0f× its p99 without the flood", fairGoal),
		Ebb:    floodOn, Peer: idleOn, PeerName: "no flood", Unit: "ms", Ratio: ratioOn, Met: ratioOn > 0 && ratioOn <= fairGoal,
		Detail: fmt.Sprintf("fair queueing on: p99 %.2f ms alone, %.2f ms beside the flood: %.2f× (%s); off: %.2f ms alone, %.2f ms beside the flood: %.1f×. Capacity %.0f req/s; a request that arrives while the replica serves the flood waits for that request (up to %d ms) and, at most, one turn of the flood",
			idleOn, floodOn, ratioOn, fairVerdict(ratioOn), idleOff, floodOff, ratioOff, capacity, fairWorkMs),
	}}
	res.Summary = fmt.Sprintf("One `ebb up` with two deployments of the echo engine burning %d ms of CPU per prediction, each one replica limited to one CPU (GOMAXPROCS=1): `%s` with `spec.scaling.maxConcurrency: 1` (the gateway admits one request at a time and queues the rest, round robin over tenants) and `%s` without it (requests go to the replica as they come). "+
		"The capacity is measured first, with a closed loop of 4 connections through the gateway. A well-behaved tenant then sends open loop at %.0f%% of it, alone and beside a flooding tenant sending open loop at %d× it; the flood starts %s before the well-behaved tenant's requests count. "+
		"Tenants are named by the `Ebb-Tenant` header (inference on loopback needs no token). Both loads are Go clients (`harness.OpenLoop`: evenly spaced sends, bounded in time, count and answers awaited), the well-behaved tenant's in the harness and the flood's in a process of its own (`bench/cmd/ebbload`), both on the load CPUs.",
		fairWorkMs, fairOn, fairOff, fairShare*100, fairFloodTimes, fairRamp)
	return res, nil
}

// mergeLoop pools b's answers into a's.
func mergeLoop(a, b harness.OpenLoopResult) harness.OpenLoopResult {
	if a.Codes == nil {
		a.Codes = map[int]int{}
	}
	a.Sent += b.Sent
	a.Skipped += b.Skipped
	for k, v := range b.Codes {
		a.Codes[k] += v
	}
	a.Latencies = append(a.Latencies, b.Latencies...)
	a.Elapsed += b.Elapsed
	if a.FirstError == "" {
		a.FirstError = b.FirstError
	}
	return a
}
