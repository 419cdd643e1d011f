package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// runPools hosts two registry versions of the diabetes model in one
// multi-model pool, each its own deployment, in both homes: each answers
// with its own version's predictions, its status says which of the
// pool's replicas hold it, the pool's status counts both loaded, and the
// pool cannot be deleted while a deployment names it. In ebb up the pool's
// replicas are processes; in the cluster they are pods of a ModelPool,
// and the gateways route by the status the leader writes.
func runPools(t *testing.T, h *home, v1, v2 golden, rows []int) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	poolFile := filepath.Join(t.TempDir(), "pool.yaml")
	pool := "name: tenants\nspec:\n  engine: trees\n  memoryBudget: 64MiB\n  shardSize: 1\n  maxReplicas: 2\n  scaleToZeroAfter: 30s\n"
	if err := os.WriteFile(poolFile, []byte(pool), 0o644); err != nil {
		t.Fatal(err)
	}
	h.cli("pools", "apply", "-f", poolFile)
	for name, model := range map[string]string{"tenant-a": "diabetes:1", "tenant-b": "diabetes:2"} {
		d := serving.Deployment{Name: name, Spec: serving.Spec{Model: model, Pool: &serving.PoolRef{Name: "tenants"}}}
		if code, body := h.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
			t.Fatalf("[%s] create pooled deployment %s: %d %s", h.name, name, code, body)
		}
		h.waitKnown(name)
	}

	// Each model answers with its own version, through the same pool.
	for _, k := range rows[:min(3, len(rows))] {
		for name, want := range map[string]float64{"tenant-a": v1.Predictions[k], "tenant-b": v2.Predictions[k]} {
			got, code, body := h.inferRow(ctx, "/v2/models/"+name+"/infer", v1.Rows[k])
			if code != http.StatusOK || !near(got, want) {
				t.Fatalf("[%s] pooled %s row %d: %d %s (got %v want %v)", h.name, name, k, code, body, got, want)
			}
		}
	}
	for _, name := range []string{"tenant-a", "tenant-b"} {
		st := h.waitStatus(name, 30*time.Second, "loaded in pool tenants", func(st serving.Status) bool {
			return st.Pool != nil && st.Pool.Pool == "tenants" && len(st.Pool.Replicas) > 0 && st.Pool.Bytes > 0 && st.ReadyReplicas > 0
		})
		t.Logf("[%s] %s: %s", h.name, name, st.Reason)
	}

	// The pool's status counts both, with each replica's memory.
	var p serving.Pool
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, body := h.do(http.MethodGet, "/v1/pools/tenants", nil, &p); code != http.StatusOK {
			t.Fatalf("[%s] GET /v1/pools/tenants: %d %s", h.name, code, body)
		}
		if p.Status.Models == 2 && p.Status.Loaded == 2 && p.Status.ReadyReplicas > 0 {
			break
		}
		if time.Now().After(deadline) {
			st, _ := json.Marshal(p.Status)
			t.Fatalf("[%s] pool status never showed 2 models loaded: %s", h.name, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	used := int64(0)
	for _, r := range p.Status.ReplicaStatuses {
		used += r.UsedBytes
		if r.BudgetBytes != 64<<20 {
			t.Errorf("[%s] pool replica %s budget %d, want 64 MiB", h.name, r.ID, r.BudgetBytes)
		}
	}
	if used == 0 {
		t.Errorf("[%s] the pool's replicas report no memory used with 2 models loaded: %+v", h.name, p.Status.ReplicaStatuses)
	}
	if out := h.cli("pools", "get"); !strings.Contains(out, "tenants") {
		t.Errorf("[%s] ebb pools get lacks the pool:\n%s", h.name, out)
	}

	// A pool in use cannot be deleted; once empty it can.
	if out, err := h.try("pools", "delete", "tenants"); err == nil || !strings.Contains(out, "tenant-a") {
		t.Errorf("[%s] deleting a pool in use: err %v, output %s; want a refusal naming its deployments", h.name, err, out)
	}
	h.cli("delete", "deployment", "tenant-a")
	h.cli("delete", "deployment", "tenant-b")
	for _, name := range []string{"tenant-a", "tenant-b"} {
		deadline := time.Now().Add(30 * time.Second)
		for code, _ := h.do(http.MethodGet, "/v1/deployments/"+name, nil, nil); code != http.StatusNotFound; code, _ = h.do(http.MethodGet, "/v1/deployments/"+name, nil, nil) {
			if time.Now().After(deadline) {
				t.Fatalf("[%s] pooled deployment %s still there 30s after delete", h.name, name)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	h.cli("pools", "delete", "tenants")
	if code, body := h.do(http.MethodGet, "/v1/pools/tenants", nil, nil); code != http.StatusNotFound {
		t.Errorf("[%s] GET of a deleted pool: %d %s, want 404", h.name, code, body)
	}
}
