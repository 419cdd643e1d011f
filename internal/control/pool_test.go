package control

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// TestPoolServesModels deploys ten models into a pool at zero: the first
// request for each is held while the pool scales up and loads it, every
// answer is the model's own, and the statuses say where each model is.
func TestPoolServesModels(t *testing.T) {
	const n = 10
	f := newPoolFixture(t, []serving.Pool{poolOf("tiny", serving.PoolSpec{Engine: "trees", MemoryBudget: "64MiB", MaxReplicas: 2})})
	paths := make([]string, n)
	for i := range n {
		paths[i] = tinyPoolModel(t, f.dir, uint64(i))
		f.deploy(pooled(fmt.Sprintf("m-%d", i), paths[i], "tiny"))
	}
	if rt := f.routes.Lookup("m-0"); rt == nil || len(rt.Endpoints) != 0 || rt.Failure != "" {
		t.Fatalf("route of a cold pooled model: %+v, want one with no endpoints and no failure", rt)
	}
	for round := range 2 { // cold, then warm
		for i := range n {
			if err := f.check(fmt.Sprintf("m-%d", i), paths[i], uint64(round)); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	st := f.ctl.Status("m-3")
	if st.ReadyReplicas < 1 || st.Pool == nil || st.Pool.Pool != "tiny" || len(st.Pool.Replicas) < 1 || st.Pool.Bytes <= 0 {
		t.Fatalf("status of m-3: %+v, want it ready in pool tiny with its size", st)
	}
	phases := st.ReplicaStatuses[0].ColdStart
	if !slices.ContainsFunc(phases, func(p serving.Phase) bool { return p.Name == serving.PhaseModelLoaded }) {
		t.Errorf("cold start of m-3: %+v, want a model_loaded phase", phases)
	}
	f.until("pool status", func() bool {
		ps := f.ctl.PoolStatus("tiny")
		return ps.Models == n && ps.Loaded == n && ps.ReadyReplicas >= 1
	})
	ps := f.ctl.PoolStatus("tiny")
	for _, r := range ps.ReplicaStatuses {
		if r.UsedBytes > r.BudgetBytes || r.BudgetBytes != 64<<20 {
			t.Errorf("replica %+v: over its budget", r)
		}
	}
	if got := f.ctl.PoolModelBytes("tiny", "m-3"); got != st.Pool.Bytes {
		t.Errorf("PoolModelBytes = %d, want %d", got, st.Pool.Bytes)
	}
}

// TestPoolEvicts fills replicas with a budget for a few models: the least
// recently used are unloaded to make room, no replica's measured memory
// passes its budget, and every model still answers, reloaded on demand.
func TestPoolEvicts(t *testing.T) {
	const n = 12
	f := newPoolFixture(t, []serving.Pool{poolOf("small", serving.PoolSpec{Engine: "trees", MemoryBudget: "24KiB", MinReplicas: 2, MaxReplicas: 2})})
	paths := make([]string, n)
	for i := range n {
		paths[i] = tinyPoolModel(t, f.dir, uint64(100+i))
		f.deploy(pooled(fmt.Sprintf("e-%d", i), paths[i], "small"))
	}
	for round := range 2 {
		for i := range n {
			if err := f.check(fmt.Sprintf("e-%d", i), paths[i], uint64(i)); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			for _, r := range f.ctl.PoolStatus("small").ReplicaStatuses {
				if r.UsedBytes > r.BudgetBytes {
					t.Fatalf("replica %s holds %d bytes, over its budget of %d", r.ID, r.UsedBytes, r.BudgetBytes)
				}
			}
		}
	}
	f.until("some models evicted", func() bool {
		ps := f.ctl.PoolStatus("small")
		return ps.Loaded < n && ps.ReadyReplicas == 2
	})
}

// TestPoolMissing serves a deployment that names a pool not created yet:
// its requests fail at once, saying so, until the pool exists.
func TestPoolMissing(t *testing.T) {
	f := newPoolFixture(t, nil)
	path := tinyPoolModel(t, f.dir, 7)
	f.deploy(pooled("lonely", path, "later"))
	err := f.check("lonely", path, 1)
	if err == nil || !strings.Contains(err.Error(), "pool later does not exist") {
		t.Fatalf("request before the pool exists: %v, want a failure naming the pool", err)
	}
	if st := f.ctl.Status("lonely"); !strings.Contains(st.Failure, "pool later does not exist") {
		t.Errorf("status failure %q", st.Failure)
	}
	p := poolOf("later", serving.PoolSpec{Engine: "trees", MemoryBudget: "8MiB"})
	p.Spec.Default()
	if _, err := f.store.CreatePool(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.ctl.Sync(ctx, serving.PoolKey("later")); err != nil {
		t.Fatal(err)
	}
	if err := f.check("lonely", path, 2); err != nil {
		t.Fatal(err)
	}
}

// TestPoolEngineMismatch refuses, at the first request, a model of
// another engine than its pool's.
func TestPoolEngineMismatch(t *testing.T) {
	f := newPoolFixture(t, []serving.Pool{poolOf("trees-only", serving.PoolSpec{Engine: "trees", MemoryBudget: "8MiB"})})
	d := serving.Deployment{Name: "net", Spec: serving.Spec{Model: "/models/net.onnx", Engine: "onnx", Pool: &serving.PoolRef{Name: "trees-only"}}}
	f.deploy(d)
	err := f.check("net", tinyPoolModel(t, f.dir, 1), 1)
	if err == nil || !strings.Contains(err.Error(), "pool trees-only runs engine trees") {
		t.Fatalf("request: %v, want the engine mismatch", err)
	}
}

// TestPoolModelChange changes a pooled deployment's model: the old one is
// unloaded everywhere, and the next request loads and answers the new.
func TestPoolModelChange(t *testing.T) {
	f := newPoolFixture(t, []serving.Pool{poolOf("tiny", serving.PoolSpec{Engine: "trees", MemoryBudget: "8MiB", MinReplicas: 2, MaxReplicas: 2})})
	a, b := tinyPoolModel(t, f.dir, 31), tinyPoolModel(t, f.dir, 32)
	f.deploy(pooled("m", a, "tiny"))
	if err := f.check("m", a, 1); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := f.store.UpdateDeployment(ctx, "m", func(d *serving.Deployment) error {
		d.Spec.Model = b
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := f.ctl.Sync(sctx, "m"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := f.check("m", b, 3); err != nil {
			t.Fatalf("after the change: %v", err)
		}
	}
	// Deleted, it is gone from the gateway.
	if err := f.store.DeleteDeployment(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if err := f.ctl.Sync(sctx, "m"); err != nil {
		t.Fatal(err)
	}
	if rt := f.routes.Lookup("m"); rt != nil {
		t.Errorf("route of a deleted pooled deployment: %+v", rt)
	}
}
