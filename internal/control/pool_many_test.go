package control

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestPoolManyModels hosts many distinct tiny XGBoost models in one pool
// of 4 replicas (shards of 2) behind the real gateway: every model's
// first answer (held while it loads) and a later one are its own
// prediction, no replica's measured memory passes its budget, and it
// reports the cold first answer's latency and a warm model's p99 beside
// a single-model deployment's. EBB_POOL_MODELS sets the count (default
// 300; the figure is 10000); bench/scenarios/pools.go runs the
// same through `ebb up`, with replica processes and their resident
// memory.
func TestPoolManyModels(t *testing.T) {
	n := 300
	if v := os.Getenv("EBB_POOL_MODELS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("EBB_POOL_MODELS=%q: give a count of models", v)
		}
	}
	dir := t.TempDir()
	paths := make([]string, n)
	deps := make([]serving.Deployment, 0, n+1)
	for i := range n {
		paths[i] = tinyPoolModel(t, dir, uint64(1000+i))
		deps = append(deps, pooled(fmt.Sprintf("t-%05d", i), paths[i], "many"))
	}
	single := serving.Deployment{Name: "single", Spec: serving.Spec{Model: paths[0], Engine: "trees", Scaling: serving.Scaling{MinReplicas: 1}}}
	deps = append(deps, single)
	// Each replica holds about half the models (shards of 2 of 4).
	budget := max(int64(n/2)*(8<<10), 8<<20)
	f := newPoolFixture(t, []serving.Pool{poolOf("many", serving.PoolSpec{Engine: "trees", MemoryBudget: strconv.FormatInt(budget, 10),
		MinReplicas: 4, MaxReplicas: 4, ShardSize: 2})}, deps...)
	f.until("4 ready replicas and the single deployment", func() bool {
		rt := f.routes.Lookup("single")
		return f.ctl.PoolStatus("many").ReadyReplicas == 4 && rt != nil && len(rt.Endpoints) == 1
	})

	began := time.Now()
	cold := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		if err := f.check(deps[i].Name, paths[i], uint64(i)); err != nil {
			t.Fatalf("cold: %v", err)
		}
		cold[i] = time.Since(start)
	}
	coldTook := time.Since(began)
	for i := range n {
		if err := f.check(deps[i].Name, paths[i], uint64(i+1)); err != nil {
			t.Fatalf("warm: %v", err)
		}
	}
	f.until("every model counted in the pool's status", func() bool { return f.ctl.PoolStatus("many").Loaded == n })
	ps := f.ctl.PoolStatus("many")
	for _, r := range ps.ReplicaStatuses {
		if r.UsedBytes > r.BudgetBytes || r.UsedBytes == 0 {
			t.Errorf("replica %s (slot %s) holds %d bytes, over its budget of %d", r.ID, r.Slot, r.UsedBytes, r.BudgetBytes)
		}
		t.Logf("replica slot %s: %d models, %s of %s", r.Slot, r.Models, pool.FormatBytes(r.UsedBytes), pool.FormatBytes(r.BudgetBytes))
	}

	// Warm latency: one pooled model and the single-model deployment of
	// the same model, requests alternating.
	const warm = 1000
	in := []oip.Tensor{poolRows(1, 1)}
	var pooledLat, singleLat []time.Duration
	for range warm {
		for _, m := range []string{deps[0].Name, "single"} {
			start := time.Now()
			if _, err := f.gw.PostREST(m, oip.InferRequest{}, in, false); err != nil {
				t.Fatal(err)
			}
			if m == "single" {
				singleLat = append(singleLat, time.Since(start))
			} else {
				pooledLat = append(pooledLat, time.Since(start))
			}
		}
	}
	p99p, p99s := quantile(pooledLat, 0.99), quantile(singleLat, 0.99)
	t.Logf("%d models: cold first answer p50 %s, p90 %s, p99 %s (goal p50 ≤ 50ms; all loaded in %s)",
		n, quantile(cold, 0.5), quantile(cold, 0.9), quantile(cold, 0.99), coldTook.Round(time.Millisecond))
	t.Logf("warm p99: pooled %s, single-model deployment %s: %.2f× (goal ≤ 1.2×)", p99p, p99s, float64(p99p)/float64(p99s))
}

// quantile returns the q-quantile of ds (nearest rank).
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
