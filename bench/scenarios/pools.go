package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Pools hosts many distinct tiny XGBoost models in one multi-model pool of
// one `ebb up` (issue 14): every model is asked once cold (held while a
// replica of the pool loads it) and once warm, each answer checked against
// the model's own prediction computed here; the pool's replicas' resident
// memory is read as they fill; a warm pooled model's latency is compared
// with a single-model deployment of the same model; and the pool's
// memory with what one replica process per model would take.
type Pools struct{}

// Name implements harness.Scenario.
func (Pools) Name() string { return "pools" }

// Title implements harness.Scenario.
func (Pools) Title() string { return "15. Multi-model pools (10,000 tiny models)" }

const (
	poolsModels   = 10_000
	poolsReplicas = 4
	poolsShard    = 2
	poolsFeatures = 4
	// poolsColdGoal and poolsWarmGoal are the goals: a cold
	// model's first answer p50, and a warm model's p99 against a
	// single-model deployment's.
	poolsColdGoal = 50 * time.Millisecond
	poolsWarmGoal = 1.2
)

// poolsBudget is each replica's memory budget for n models: each replica
// holds about n×shard/replicas of them, at the ~4.8 KiB a tiny model
// counts (its trees and DefaultServingBytes), with room to spare.
func poolsBudget(n int) int64 {
	return max(int64(n*poolsShard/poolsReplicas)*8<<10, 16<<20)
}

// writeTinyXGB writes a small XGBoost JSON model (three trees of depth one
// or two over poolsFeatures features, drawn from seed).
func writeTinyXGB(path string, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 23))
	leaf := func() string { return fmt.Sprintf("%.4f", rng.Float64()*10-5) }
	cut := func() string { return fmt.Sprintf("%.4f", rng.Float64()*2-1) }
	var tree []string
	for range 3 {
		if rng.IntN(2) == 0 {
			tree = append(tree, fmt.Sprintf(`{"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_conditions":[%s,%s,%s],"split_indices":[%d,0,0],"default_left":[1,0,0]}`,
				cut(), leaf(), leaf(), rng.IntN(poolsFeatures)))
			continue
		}
		tree = append(tree, fmt.Sprintf(`{"left_children":[1,3,-1,-1,-1],"right_children":[2,4,-1,-1,-1],"split_conditions":[%s,%s,%s,%s,%s],"split_indices":[%d,%d,0,0,0],"default_left":[0,1,0,0,0]}`,
			cut(), cut(), leaf(), leaf(), leaf(), rng.IntN(poolsFeatures), rng.IntN(poolsFeatures)))
	}
	model := fmt.Sprintf(`{"learner":{"learner_model_param":{"base_score":"%s","num_feature":"%d"},"objective":{"name":"reg:squarederror"},`+
		`"gradient_booster":{"name":"gbtree","model":{"tree_info":[0,0,0],"trees":[%s]}}}}`, leaf(), poolsFeatures, strings.Join(tree, ","))
	return os.WriteFile(path, []byte(model), 0o644)
}

// poolsModel is one generated model: its deployment, a request and the
// answer it must give.
type poolsModel struct {
	name string
	body []byte
	want []float64
}

// newPoolsModel writes model i and computes its answer to its request.
func newPoolsModel(dir string, i int) (poolsModel, string, error) {
	path := filepath.Join(dir, fmt.Sprintf("m-%05d.json", i))
	if err := writeTinyXGB(path, uint64(i)); err != nil {
		return poolsModel{}, "", err
	}
	rng := rand.New(rand.NewPCG(uint64(i), 29))
	x := make([]float32, 2*poolsFeatures)
	for j := range x {
		x[j] = float32(rng.Float64()*2 - 1)
	}
	in := oip.Tensor{Name: trees.InputName, Datatype: oip.FP32, Shape: []int64{2, poolsFeatures}, Data: x}
	m, err := trees.Load(path)
	if err != nil {
		return poolsModel{}, "", err
	}
	out, err := m.Predict(context.Background(), []oip.Tensor{in})
	if err != nil {
		return poolsModel{}, "", err
	}
	body, _, err := oip.RequestBody(oip.InferRequest{}, []oip.Tensor{in}, false)
	if err != nil {
		return poolsModel{}, "", err
	}
	var want []float64
	for _, v := range out[0].Data.([]float32) {
		want = append(want, float64(v))
	}
	return poolsModel{name: fmt.Sprintf("t-%05d", i), body: body, want: want}, path, nil
}

// poolReplicas returns the memory of ebb's pool replica processes.
func poolReplicas(ebb *harness.Ebb) []harness.ProcMemory {
	var out []harness.ProcMemory
	for _, m := range ebb.Proc.TreeMemoryByProcess() {
		if m.PID != ebb.Proc.PID() && poolProcess(m.PID) {
			out = append(out, m)
		}
	}
	return out
}

// poolProcess reports whether pid runs with --pool.
func poolProcess(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "\x00--pool\x00")
}

// Run implements harness.Scenario.
func (Pools) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	n := harness.Pick(env, poolsModels, 500)
	if v := os.Getenv("EBB_POOL_MODELS"); v != "" {
		fmt.Sscan(v, &n)
	}
	dir := filepath.Join(env.Work, "pool-models")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	models := make([]poolsModel, n)
	paths := make([]string, n)
	for i := range n {
		var err error
		if models[i], paths[i], err = newPoolsModel(dir, i); err != nil {
			return res, fmt.Errorf("model %d: %w", i, err)
		}
	}
	ebb, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: "ebb-pools", Flags: []string{"--model-roots=" + dir, "--grpc-addr", ""}})
	if err != nil {
		return res, err
	}
	budget := poolsBudget(n)
	pool := serving.Pool{Name: "tiny", Spec: serving.PoolSpec{Engine: "trees", MemoryBudget: fmt.Sprint(budget),
		ShardSize: poolsShard, MinReplicas: poolsReplicas, MaxReplicas: poolsReplicas, ScaleToZeroAfter: serving.D(time.Hour)}}
	body, _ := json.Marshal(pool)
	if code, out, err := ebb.Do(ctx, http.MethodPost, "/v1/pools", body); err != nil || code != http.StatusCreated {
		return res, fmt.Errorf("create pool: HTTP %d %v: %s", code, err, out)
	}
	began := time.Now()
	for i, m := range models {
		spec := serving.Spec{Model: paths[i], Engine: "trees", Pool: &serving.PoolRef{Name: "tiny"}}
		if err := ebb.Create(ctx, m.name, spec); err != nil {
			return res, err
		}
	}
	env.Logf("%d pooled deployments created in %s", n, time.Since(began).Round(time.Millisecond))
	if err := ebb.Create(ctx, "single", harness.DeploymentSpec("trees", paths[0], 1, 1, time.Hour)); err != nil {
		return res, err
	}
	if _, _, err := ebb.WaitReady(ctx, "single", 1, 2*time.Minute); err != nil {
		return res, err
	}
	if err := waitPoolReady(ctx, ebb, "tiny", poolsReplicas); err != nil {
		return res, err
	}
	time.Sleep(settle)
	baseline := poolReplicas(ebb)
	single := harness.ProcMemory{}
	for _, m := range ebb.Proc.TreeMemoryByProcess() {
		if m.PID != ebb.Proc.PID() && !poolProcess(m.PID) {
			single = m
		}
	}

	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	url := func(name string) string { return ebb.URL + "/v2/models/" + name + "/infer" }
	peak := map[int]int64{}
	sample := func() {
		for _, m := range poolReplicas(ebb) {
			peak[m.PID] = max(peak[m.PID], m.RSSBytes)
		}
	}
	var cold []time.Duration
	right, wrong := 0, []string{}
	ask := func(m poolsModel) time.Duration {
		code, out, d, err := harness.Post(ctx, c, url(m.name), m.body)
		got, perr := outputsOf(out)
		switch {
		case err != nil || code != http.StatusOK:
			wrong = append(wrong, fmt.Sprintf("%s: HTTP %d %v %.200s", m.name, code, err, out))
		case perr != nil || !sameOutputs(m.want, got):
			wrong = append(wrong, fmt.Sprintf("%s: answered %v, want %v", m.name, got, m.want))
		default:
			right++
		}
		return d
	}
	began = time.Now()
	for i, m := range models {
		cold = append(cold, ask(m))
		if i%250 == 0 {
			sample()
		}
	}
	coldTook := time.Since(began)
	for _, m := range models {
		ask(m)
	}
	time.Sleep(settle)
	sample()
	env.Logf("cold pass %s; %d of %d answers right", coldTook.Round(time.Millisecond), right, 2*n)

	lat, failed, err := harness.Interleaved(ctx, []string{url(models[0].name), url("single")}, models[0].body,
		harness.Pick(env, 3000, 500), harness.Pick(env, 60*time.Second, 15*time.Second))
	if err != nil {
		return res, err
	}
	warmPool, warmSingle := harness.Quantile(lat[0], 0.99), harness.Quantile(lat[1], 0.99)
	warmRatio := harness.Ratio(harness.Ms(warmPool), harness.Ms(warmSingle))
	env.Logf("warm, one request at a time: pooled p50 %.3f p90 %.3f p99 %.3f ms; single p50 %.3f p90 %.3f p99 %.3f ms",
		harness.Ms(harness.Quantile(lat[0], 0.5)), harness.Ms(harness.Quantile(lat[0], 0.9)), harness.Ms(warmPool),
		harness.Ms(harness.Quantile(lat[1], 0.5)), harness.Ms(harness.Quantile(lat[1], 0.9)), harness.Ms(warmSingle))

	// Memory: each replica's growth over its idle baseline against its
	// budget, and the pool against one process per model.
	var poolRSS, worstGrowth int64
	var rows [][]string
	for _, b := range baseline {
		p := max(peak[b.PID], b.RSSBytes)
		poolRSS += p
		worstGrowth = max(worstGrowth, p-b.RSSBytes)
		rows = append(rows, []string{fmt.Sprint(b.PID), harness.F(harness.MiB(b.RSSBytes)), harness.F(harness.MiB(p)),
			harness.F(harness.MiB(p - b.RSSBytes)), harness.F(harness.MiB(budget))})
	}
	perModel := single.RSSBytes
	oneEach := int64(n) * perModel
	memRatio := harness.Ratio(float64(oneEach), float64(poolRSS))
	coldP50 := harness.Quantile(cold, 0.5)
	res.Figures = map[string]float64{
		"models": float64(n), "answersRight": float64(right), "answers": float64(2 * n),
		"cold.p50ms": harness.Ms(coldP50), "cold.p90ms": harness.Ms(harness.Quantile(cold, 0.9)), "cold.p99ms": harness.Ms(harness.Quantile(cold, 0.99)),
		"cold.totalSeconds": coldTook.Seconds(),
		"warm.pooledP99ms":  harness.Ms(warmPool), "warm.singleP99ms": harness.Ms(warmSingle), "warm.ratio": warmRatio,
		"warm.pooledFailed": float64(failed[0]), "warm.singleFailed": float64(failed[1]),
		"memory.budgetMiB": harness.MiB(budget), "memory.worstGrowthMiB": harness.MiB(worstGrowth),
		"memory.poolRSSMiB": harness.MiB(poolRSS), "memory.singleReplicaRSSMiB": harness.MiB(perModel),
		"memory.oneProcessPerModelMiB": harness.MiB(oneEach), "memory.ratio": memRatio,
	}
	res.Goals = []harness.Goal{
		{Name: "every model answers correctly", Target: fmt.Sprintf("%d of %d answers (cold and warm) equal each model's own prediction", 2*n, 2*n),
			Ebb: float64(right), Unit: "answers", Met: right == 2*n,
			Detail: fmt.Sprintf("%d right of %d", right, 2*n)},
		{Name: "replica memory within its budget", Target: "each pool replica's RSS grows by at most its memory budget",
			Ebb: harness.MiB(worstGrowth), Peer: harness.MiB(budget), PeerName: "budget", Unit: "MiB", Met: worstGrowth <= budget,
			Detail: fmt.Sprintf("largest growth %.1f MiB over an idle replica's RSS, budget %.1f MiB", harness.MiB(worstGrowth), harness.MiB(budget))},
		{Name: "cold model's first answer p50", Target: fmt.Sprintf("≤ %s", poolsColdGoal),
			Ebb: harness.Ms(coldP50), Unit: "ms", Met: coldP50 <= poolsColdGoal,
			Detail: fmt.Sprintf("p50 %.2f ms, p90 %.2f ms, p99 %.2f ms over %d cold models", harness.Ms(coldP50), res.Figures["cold.p90ms"], res.Figures["cold.p99ms"], n)},
		{Name: "warm pooled model p99 vs a single-model deployment", Target: fmt.Sprintf("≤ %.1f× the single-model deployment's", poolsWarmGoal),
			Ebb: harness.Ms(warmPool), Peer: harness.Ms(warmSingle), PeerName: "single-model deployment", Unit: "ms", Ratio: warmRatio, Met: warmRatio <= poolsWarmGoal,
			Detail: fmt.Sprintf("p99 %.3f ms pooled, %.3f ms single: %.2f× (p50 %.3f and %.3f ms)", harness.Ms(warmPool), harness.Ms(warmSingle), warmRatio,
				harness.Ms(harness.Quantile(lat[0], 0.5)), harness.Ms(harness.Quantile(lat[1], 0.5)))},
		{Name: "memory: pool vs one replica process per model", Target: "reported",
			Ebb: harness.MiB(poolRSS), Peer: harness.MiB(oneEach), PeerName: fmt.Sprintf("%d single-model replicas", n), Unit: "MiB RSS",
			Ratio: memRatio, Met: poolRSS > 0 && perModel > 0,
			Detail: fmt.Sprintf("%d pool replicas, %.0f MiB RSS in all, against %d × %.1f MiB (one idle single-model replica's RSS) = %.0f MiB: %.0f× less",
				len(baseline), harness.MiB(poolRSS), n, harness.MiB(perModel), harness.MiB(oneEach), memRatio)},
	}
	res.Tables = []harness.Table{{
		Caption: "Each pool replica's RSS in MiB: idle before any load, at its peak while the models were asked, the growth, and its memory budget.",
		Header:  []string{"replica PID", "idle", "peak", "growth", "budget"},
		Rows:    rows,
	}}
	for _, w := range wrong[:min(len(wrong), 5)] {
		res.Notes = append(res.Notes, "Wrong or failed answer: "+w)
	}
	res.Summary = fmt.Sprintf("One `ebb up` (SQLite, process backend) with one pool `tiny` of engine trees: %d replicas pinned, shards of %d, a memory budget of %.1f MiB per replica. "+
		"%d distinct XGBoost models are generated (three trees of depth one or two over %d features, random with a fixed seed per model), each deployed with `spec.pool: {name: tiny}`, "+
		"and a deployment `single` of the first model with a replica of its own. Each model is asked once in turn, cold (the gateway holds the request while a replica loads the model), "+
		"then once more, warm; every answer is compared with the model's prediction computed by the benchmark. The pool replicas' RSS is sampled while they fill. "+
		"Then the first model and `single` are asked in turn, one request at a time, for the warm p99.",
		poolsReplicas, poolsShard, harness.MiB(budget), n, poolsFeatures)
	return res, nil
}

// waitPoolReady waits until the pool has n ready replicas.
func waitPoolReady(ctx context.Context, ebb *harness.Ebb, name string, n int32) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, out, err := ebb.Do(ctx, http.MethodGet, "/v1/pools/"+name, nil)
		var p serving.Pool
		if err == nil && code == http.StatusOK && json.Unmarshal(out, &p) == nil && p.Status.ReadyReplicas >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pool %s: %d ready replicas not reached in 2 minutes: HTTP %d %v %.300s", name, n, code, err, out)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
