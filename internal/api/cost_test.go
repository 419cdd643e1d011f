package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// fakeCosts answers every deployment 100 replica-seconds at a peak of 2
// over the period asked for, and records the periods.
type fakeCosts struct{ since []time.Time }

func (f *fakeCosts) Cost(_ context.Context, name string, since time.Time) (serving.Cost, error) {
	f.since = append(f.since, since)
	return serving.Cost{Deployment: name, Since: since, ReplicaSeconds: 100, PeakReplicas: 2, AlwaysOnSeconds: 400, Reduction: 0.25}, nil
}

func (f *fakeCosts) CostAll(ctx context.Context, since time.Time) ([]serving.Cost, error) {
	a, _ := f.Cost(ctx, "a", since)
	b, _ := f.Cost(ctx, "b", since)
	b.ReplicaSeconds, b.PeakReplicas, b.AlwaysOnSeconds, b.Partial, b.Recorded = 300, 1, 400, true, since.Add(time.Hour)
	b.GPUSeconds, b.PeakGPUs, b.AlwaysOnGPUSeconds = 600, 2, 800 // 2 GPUs per replica
	return []serving.Cost{a, b}, nil
}

// TestCosts: GET /v1/deployments/{name}/cost and GET /v1/cost read the
// period from ?since (7 days by default, a duration with days, or a time),
// sum the deployments into a total, and refuse a bad period or a missing
// deployment.
func TestCosts(t *testing.T) {
	costs := &fakeCosts{}
	e := newEnvWith(t, func(h *api.Handler, _ *sqlite.Store) { h.MountCosts(costs) })
	if code, _, body := e.do(t, "POST", "/v1/deployments", "application/json", `{"name":"a","spec":{"model":"m.json"}}`); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	before := time.Now()
	code, _, body := e.do(t, "GET", "/v1/deployments/a/cost", "", "")
	if c := decode[serving.Cost](t, body); code != http.StatusOK || c.ReplicaSeconds != 100 || c.Deployment != "a" {
		t.Fatalf("GET cost = %d %s", code, body)
	}
	if d := before.Sub(costs.since[0]); d < 7*24*time.Hour-time.Minute || d > 7*24*time.Hour+time.Minute {
		t.Errorf("default period %v; want 7 days", d)
	}
	e.do(t, "GET", "/v1/deployments/a/cost?since=2d", "", "")
	if d := time.Since(costs.since[1]); d < 48*time.Hour-time.Minute || d > 48*time.Hour+time.Minute {
		t.Errorf("since=2d: period %v; want 48h", d)
	}
	e.do(t, "GET", "/v1/deployments/a/cost?since=2026-12-01T00:00:00Z", "", "")
	if want := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC); !costs.since[2].Equal(want) {
		t.Errorf("since=2026-12-01T00:00:00Z: %v", costs.since[2])
	}

	code, _, body = e.do(t, "GET", "/v1/cost?since=36h", "", "")
	list := decode[api.CostList](t, body)
	if code != http.StatusOK || len(list.Items) != 2 || list.Total.ReplicaSeconds != 400 || list.Total.AlwaysOnSeconds != 800 || list.Total.Reduction != 0.5 || !list.Total.Partial {
		t.Errorf("GET /v1/cost = %d %+v; want two items, 400 of 800 replica-seconds, partial", code, list)
	}
	if tot := list.Total; tot.GPUSeconds != 600 || tot.PeakGPUs != 2 || tot.AlwaysOnGPUSeconds != 800 {
		t.Errorf("GET /v1/cost total = %+v; want 600 of 800 GPU-seconds, GPU peak 2", tot)
	}
	if a := list.Items[0]; a.GPUSeconds != 0 || a.AlwaysOnGPUSeconds != 0 {
		t.Errorf("a, without GPUs = %+v; want no GPU-seconds", a)
	}

	code, _, body = e.do(t, "GET", "/v1/cost?since=yesterday", "", "")
	wantError(t, "a bad period", code, body, http.StatusBadRequest, "request/malformed", "give a period such as 7d or 36h")
	code, _, body = e.do(t, "GET", "/v1/deployments/nope/cost", "", "")
	wantError(t, "cost of a missing deployment", code, body, http.StatusNotFound, "deployment/not_found", "")
}
