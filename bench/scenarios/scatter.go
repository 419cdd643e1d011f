package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Scatter times one large request to a compute-bound model (an ONNX MLP
// generated here, run by replicas of one CPU each) sent whole to one
// replica, and split by the gateway (spec.scatter) into segments that four
// replicas serve at once. The goal: the split request is at least
// 2.5× faster than the whole one.
type Scatter struct{}

// Name implements harness.Scenario.
func (Scatter) Name() string { return "scatter" }

// Title implements harness.Scenario.
func (Scatter) Title() string { return "12. Scatter/gather (100,000 rows over 4 replicas)" }

const (
	scatterRows        = 100_000
	scatterReplicas    = 4
	scatterSegmentRows = scatterRows / scatterReplicas
	scatterGoalRatio   = 2.5
	scatterInputWidth  = 8
)

// scatterLayers are the widths of the MLP: a narrow input and output, so
// that the 100,000-row request and its answer are a few MB, and two hidden
// layers that make each row cost about a million multiply-adds: seconds of
// one CPU for the request, against tens of milliseconds of JSON.
var scatterLayers = []int{scatterInputWidth, 1024, 1024, 1}

// scatterBody returns an infer request of rows rows of the MLP's input,
// random with a fixed seed, in JSON.
func scatterBody(rows int) ([]byte, error) {
	rng := rand.New(rand.NewPCG(7, 11))
	data := make([]float32, rows*scatterInputWidth)
	for i := range data {
		data[i] = float32(rng.NormFloat64())
	}
	in := oip.Tensor{Name: "input", Datatype: oip.FP32, Shape: []int64{int64(rows), scatterInputWidth}, Data: data}
	body, _, err := oip.RequestBody(oip.InferRequest{ID: "scatter"}, []oip.Tensor{in}, false)
	return body, err
}

// scatterAnswer is one timed request.
type scatterAnswer struct {
	took     time.Duration
	body     []byte
	segments string // Ebb-Segments
	replicas string // Ebb-Replica
}

// scatterPost sends body to url and returns the answer, which must be 200.
func scatterPost(ctx context.Context, c *http.Client, url string, body []byte) (scatterAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return scatterAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return scatterAnswer{}, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	a := scatterAnswer{took: time.Since(start), body: out, segments: resp.Header.Get("Ebb-Segments"), replicas: resp.Header.Get("Ebb-Replica")}
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("HTTP %d: %.300s", resp.StatusCode, out)
	}
	return a, err
}

// scatterEngineTime times the model alone in ONNX Runtime, one intra-op
// thread as a one-CPU replica has, on calls of rows rows: the best of runs.
func scatterEngineTime(ctx context.Context, path string, rows, runs int) (time.Duration, error) {
	m, err := onnx.Load(path, onnx.Options{IntraOpThreads: 1})
	if err != nil {
		return 0, err
	}
	defer m.Close()
	in := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{int64(rows), scatterInputWidth}, Data: make([]float32, rows*scatterInputWidth)}}
	var best time.Duration
	for i := range max(runs, 1) {
		start := time.Now()
		if _, err := m.Predict(ctx, in); err != nil {
			return 0, err
		}
		if d := time.Since(start); i == 0 || d < best {
			best = d
		}
	}
	return best, nil
}

// scatterSpec is a deployment of the MLP at path pinned at replicas
// replicas of one CPU each, split by sc when set.
func scatterSpec(path string, replicas int32, sc *serving.Scatter) serving.Spec {
	spec := harness.DeploymentSpec("onnx", path, 0, replicas, 10*time.Minute)
	spec.Replicas = &replicas
	spec.Template.Resources.Limits = serving.ResourceList{serving.ResourceCPU: resource.MustParse("1")}
	spec.Scatter = sc
	return spec
}

// scatterBound is the most a split over replicas one-CPU replicas can gain
// on cpus server CPUs: as many segments run at once as there are CPUs for
// them, and the gateway's own work (decoding, encoding and joining) runs
// beside them.
func scatterBound(replicas, cpus int) float64 {
	return float64(min(replicas, max(cpus, 1)))
}

// scatterVerdict says whether ratio meets the goal.
func scatterVerdict(ratio float64) string {
	if ratio >= scatterGoalRatio {
		return "goal MET"
	}
	return "goal NOT MET"
}

// Run implements harness.Scenario.
func (Scatter) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	if err := onnx.Available(""); err != nil {
		return res, fmt.Errorf("the onnx engine cannot run here: %w", err)
	}
	path := filepath.Join(env.Work, "mlp-scatter.onnx")
	if err := writeMLPONNX(path, scatterLayers, 3); err != nil {
		return res, fmt.Errorf("writing the MLP: %w", err)
	}
	engineWhole, err := scatterEngineTime(ctx, path, scatterRows, 1)
	if err != nil {
		return res, fmt.Errorf("timing the MLP in ONNX Runtime: %w", err)
	}
	engineSegment, err := scatterEngineTime(ctx, path, scatterSegmentRows, 3)
	if err != nil {
		return res, fmt.Errorf("timing the MLP in ONNX Runtime: %w", err)
	}
	env.Logf("engine alone, one thread: %d rows in %v, %d rows in %v", scatterRows, engineWhole, scatterSegmentRows, engineSegment)
	body, err := scatterBody(scatterRows)
	if err != nil {
		return res, err
	}

	ebb, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: "ebb-scatter", Flags: []string{"--model-roots=" + env.Work}})
	if err != nil {
		return res, err
	}
	const whole, split = "mlp-whole", "mlp-scatter"
	deps := []struct {
		name     string
		replicas int32
		sc       *serving.Scatter
	}{
		{whole, 1, nil},
		{split, scatterReplicas, &serving.Scatter{SegmentRows: scatterSegmentRows}},
	}
	for _, d := range deps {
		if err := ebb.Create(ctx, d.name, scatterSpec(path, d.replicas, d.sc)); err != nil {
			return res, err
		}
	}
	for _, d := range deps {
		if _, _, err := ebb.WaitReady(ctx, d.name, d.replicas, 2*time.Minute); err != nil {
			return res, err
		}
	}
	url := func(name string) string { return ebb.URL + "/v2/models/" + name + "/infer" }
	c := &http.Client{Timeout: 5 * time.Minute}

	// Both answer alike before they are timed (and every replica has run
	// the model once); the split one in four segments over four replicas.
	a, err := scatterPost(ctx, c, url(whole), body)
	if err != nil {
		return res, fmt.Errorf("%s: %w", whole, err)
	}
	b, err := scatterPost(ctx, c, url(split), body)
	if err != nil {
		return res, fmt.Errorf("%s: %w", split, err)
	}
	wantOut, err1 := outputsOf(a.body)
	gotOut, err2 := outputsOf(b.body)
	switch {
	case err1 != nil || err2 != nil:
		return res, fmt.Errorf("reading the answers: %v; %v", err1, err2)
	case len(wantOut) != scatterRows:
		return res, fmt.Errorf("the whole request's answer has %d values, want %d", len(wantOut), scatterRows)
	case !sameOutputs(wantOut, gotOut):
		res.Notes = append(res.Notes, "PREDICTIONS DIFFER between the whole and the split request.")
	}
	if b.segments != fmt.Sprint(scatterReplicas) || len(strings.Split(b.replicas, ",")) != scatterReplicas {
		res.Notes = append(res.Notes, fmt.Sprintf("The split request went in %q segments to replicas %q, not %d segments over %d replicas.",
			b.segments, b.replicas, scatterReplicas, scatterReplicas))
	}

	rounds := harness.Pick(env, 5, 2)
	budget := harness.Pick(env, 4*time.Minute, 90*time.Second)
	began := time.Now()
	times, cpu := map[string][]float64{}, map[string][]float64{}
	var raw [][]string
	for round := 1; round <= rounds && (round == 1 || time.Since(began) < budget); round++ {
		harness.WaitQuiet(ctx, 30, harness.Pick(env, 15*time.Second, 5*time.Second))
		for _, name := range []string{whole, split} {
			t0 := ebb.Proc.TreeCPUTicks()
			a, err := scatterPost(ctx, c, url(name), body)
			if err != nil {
				return res, fmt.Errorf("%s round %d: %w", name, round, err)
			}
			s, used := a.took.Seconds(), float64(ebb.Proc.TreeCPUTicks()-t0)/clockTicks
			times[name] = append(times[name], s)
			cpu[name] = append(cpu[name], used)
			raw = append(raw, []string{name, fmt.Sprint(round), harness.F(s), harness.F(used), harness.F(used / s), a.segments, a.replicas})
			env.Logf("round %d %-12s %.3f s, %.2f CPU s (segments %q, replicas %q)", round, name, s, used, a.segments, a.replicas)
		}
	}
	w, sp := harness.Median(times[whole]), harness.Median(times[split])
	wCPU, spCPU := harness.Median(cpu[whole]), harness.Median(cpu[split])
	ratio := harness.Ratio(w, sp)
	cpus := serverCPUCount(env)
	bound := scatterBound(scatterReplicas, cpus)
	res.Figures = map[string]float64{
		"whole.seconds": w, "split.seconds": sp, "ratio": ratio, "serverCPUs": float64(cpus), "bound": bound,
		"engine.wholeSeconds": engineWhole.Seconds(), "engine.segmentSeconds": engineSegment.Seconds(),
		"requestBytes": float64(len(body)), "rounds": float64(len(times[split])),
		"whole.cpuSeconds": wCPU, "split.cpuSeconds": spCPU,
	}
	res.Goals = []harness.Goal{{
		Name:   "100,000-row request split over 4 replicas vs one replica",
		Target: fmt.Sprintf("split ≥ %.1f× faster than whole (compute-bound model)", scatterGoalRatio),
		Ebb:    sp, Peer: w, PeerName: "one replica, whole", Unit: "s", Ratio: ratio, Met: ratio >= scatterGoalRatio,
		Detail: fmt.Sprintf("median whole %.3f s, split %.3f s: whole/split = %.2f× (%s); at most about %.0f× on %d server CPU(s)",
			w, sp, ratio, scatterVerdict(ratio), bound, cpus),
	}}
	res.Tables = []harness.Table{{
		Caption: "Each round sends the request whole, then split, one request at a time: wall time at the client, and the CPU time of ebb's process tree (gateway and replicas) meanwhile; CPUs busy is their ratio.",
		Header:  []string{"deployment", "round", "seconds", "CPU s", "CPUs busy", "Ebb-Segments", "Ebb-Replica"},
		Rows:    raw,
	}}
	if wCPU < 0.8*w {
		res.Notes = append(res.Notes, fmt.Sprintf("The whole request kept ebb's processes busy on %.2f CPU(s) on average, not one: other work on the machine shared the server CPUs. "+
			"Four replica processes then take a larger share of a contended CPU than one does, which flatters the split beyond what its parallelism gives.", wCPU/w))
	}
	if cpus < scatterReplicas {
		res.Notes = append(res.Notes, fmt.Sprintf("The servers run on %d CPU(s): the four one-CPU replicas share them, so the split request can run at most %d segment(s) at a time "+
			"and gain at most about %.0f× before the gateway's own work; the goal needs at least %d server CPUs (four replicas, plus room for the gateway) to be reachable.",
			cpus, min(cpus, scatterReplicas), bound, scatterReplicas+1))
	}
	res.Summary = fmt.Sprintf("One `ebb up` serves an ONNX MLP generated for the scenario (%s, float32, random weights with a fixed seed: "+
		"about %.1f µs per row in ONNX Runtime with one thread, %.3f s for %d rows) in two deployments whose replicas have one CPU each "+
		"(`template.resources.limits.cpu: 1`, which sets the replica's GOMAXPROCS and so its ONNX intra-op threads): `%s`, one replica, no scatter, "+
		"and `%s`, %d replicas pinned, `scatter: {segmentRows: %d}`. "+
		"The same request, %d rows of %d random FP32 values in JSON (%d bytes), is sent to each in turn, one at a time, rounds alternating; "+
		"both answers were checked to agree before timing. The gateway cuts the split one into %d segments of %d rows, "+
		"sends them to the %d replicas at once and joins the outputs in row order; its time includes decoding the request, encoding the segments and joining the answers.",
		formatLayers(scatterLayers), float64(engineWhole.Microseconds())/scatterRows, engineWhole.Seconds(), scatterRows,
		whole, split, scatterReplicas, scatterSegmentRows,
		scatterRows, scatterInputWidth, len(body), scatterReplicas, scatterSegmentRows, scatterReplicas)
	return res, nil
}
