package control

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestMaxReplicasTotal is the host-wide cap of issue 10: two deployments
// that each want 3 replicas on a host capped at 4 get 4 replicas between
// them, and the one held back says why in status.reason.
func TestMaxReplicasTotal(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/ebb.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, name := range []string{"a", "b"} {
		d := dep(name, serving.Scaling{MinReplicas: 3, MaxReplicas: 3})
		d.Spec.Default()
		if _, err := st.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{t: t, store: st, backend: newFakeBackend(), routes: &routing.Table{}, clock: clocktesting.NewFakeClock(time.Now())}
	reg := prometheus.NewRegistry()
	f.ctl = New(f.store, f.backend, f.routes, Options{
		Metrics:          NewMetrics(reg),
		Clock:            f.clock,
		MinBackoff:       time.Second,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		MaxReplicasTotal: 4,
	})
	runCtx, cancel := context.WithCancel(ctx)
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.ctl.Run(runCtx) }()
	<-f.ctl.Loaded()
	t.Cleanup(f.stop)

	for range 3 {
		f.tick()
	}
	total := func() int32 { return f.ctl.Status("a").Replicas + f.ctl.Status("b").Replicas }
	deadline := time.Now().Add(10 * time.Second)
	for total() < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for range 3 {
		f.tick()
		time.Sleep(20 * time.Millisecond)
	}
	if got := total(); got != 4 {
		t.Fatalf("replicas of a and b = %d; want 4, the cap", got)
	}
	f.backend.mu.Lock()
	started := len(f.backend.started)
	f.backend.mu.Unlock()
	if started != 4 {
		t.Errorf("backend started %d replicas; want 4", started)
	}
	var held []string
	for _, name := range []string{"a", "b"} {
		if r := f.ctl.Status(name).Reason; strings.Contains(r, "--max-replicas-total 4") {
			held = append(held, name+": "+r)
		}
	}
	if len(held) != 1 {
		t.Fatalf("deployments saying they are held by the cap: %q; want exactly one", held)
	}
	// The held-back starts are counted, for the one held deployment only.
	capped := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ebb_control_replica_starts_capped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			capped[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if len(capped) != 1 {
		t.Fatalf("ebb_control_replica_starts_capped_total = %v; want a count for the held deployment only", capped)
	}
	for name, n := range capped {
		if n < 2 || !strings.HasPrefix(held[0], name+":") {
			t.Errorf("capped starts of %s = %v; want at least the 2 replicas held back, counted for %q", name, n, held[0])
		}
	}
}
