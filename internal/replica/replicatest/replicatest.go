// Package replicatest is the conformance suite every replica.Backend passes.
// A backend's test calls Run with a Harness that knows how to make its
// backend, a spec that serves and one that cannot load, and how to kill a
// replica behind the backend's back.
package replicatest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
)

// Harness adapts one backend to the suite.
type Harness struct {
	// New returns a fresh Backend over the same environment, as a restarted
	// ebb would create; Recover is tested across two of them.
	New func(t *testing.T) replica.Backend
	// Spec returns a spec with the given ID whose model loads and serves.
	Spec func(t *testing.T, id string) replica.Spec
	// BadSpec returns a spec whose model cannot load; Ready must fail with
	// an error that contains BadSpecMessage.
	BadSpec        func(t *testing.T, id string) replica.Spec
	BadSpecMessage string
	// Kill ends the replica abruptly (SIGKILL, pod deletion), bypassing the
	// backend.
	Kill func(t *testing.T, h replica.Handle)
	// Timeout bounds each step; default 30s.
	Timeout time.Duration
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	if h.Timeout == 0 {
		h.Timeout = 30 * time.Second
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"StartReadyStop", testStartReadyStop},
		{"BadModelFailsReady", testBadModel},
		{"KillIsSeenByWait", testKill},
		{"RecoverInNewBackend", testRecover},
		{"RecoverGone", testRecoverGone},
		{"ConcurrentStarts", testConcurrentStarts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, h) })
	}
}

func (h Harness) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// startReady starts a replica, waits until it is ready, and registers a
// cleanup that stops it.
func startReady(t *testing.T, h Harness, b replica.Backend, id string) replica.Handle {
	t.Helper()
	ctx := h.ctx(t)
	hd, err := b.Start(ctx, h.Spec(t, id))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
		defer cancel()
		_ = b.Stop(ctx, hd)
	})
	if hd.Endpoint == "" || hd.Spec.ID != id || hd.StartedAt.IsZero() {
		t.Fatalf("Start returned an incomplete handle: %+v", hd)
	}
	st, err := b.Ready(ctx, hd)
	if err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if st.ReadyAt.IsZero() || st.ModelLoadedAt.IsZero() || st.ReadyAt.Before(st.ModelLoadedAt) {
		t.Errorf("Ready returned inconsistent startup times: %+v", st)
	}
	return hd
}

func get(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func testStartReadyStop(t *testing.T, h Harness) {
	b := h.New(t)
	hd := startReady(t, h, b, "conf-start")
	ctx := h.ctx(t)
	if code, err := get(ctx, hd.Endpoint+"/v2/health/ready"); err != nil || code != http.StatusOK {
		t.Fatalf("GET /v2/health/ready after Ready = %d, %v; want 200", code, err)
	}
	if err := b.Stop(ctx, hd); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := get(ctx, hd.Endpoint+"/v2/health/live"); err == nil {
		t.Errorf("replica still answers after Stop")
	}
	if err := b.Stop(ctx, hd); err != nil {
		t.Errorf("second Stop = %v; want nil (stopping a stopped replica is not an error)", err)
	}
}

func testBadModel(t *testing.T, h Harness) {
	b := h.New(t)
	ctx := h.ctx(t)
	hd, err := b.Start(ctx, h.BadSpec(t, "conf-bad"))
	if err != nil {
		// Refusing at Start is allowed if the error says why.
		if !strings.Contains(err.Error(), h.BadSpecMessage) {
			t.Fatalf("Start = %v; want an error containing %q", err, h.BadSpecMessage)
		}
		return
	}
	t.Cleanup(func() { _ = b.Stop(context.Background(), hd) })
	_, err = b.Ready(ctx, hd)
	if err == nil {
		t.Fatal("Ready succeeded for a model that cannot load")
	}
	if !strings.Contains(err.Error(), h.BadSpecMessage) {
		t.Errorf("Ready = %v; want an error containing %q", err, h.BadSpecMessage)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ready waited for its deadline instead of reporting the failure")
	}
}

func testKill(t *testing.T, h Harness) {
	b := h.New(t)
	hd := startReady(t, h, b, "conf-kill")
	h.Kill(t, hd)
	ex, err := b.Wait(h.ctx(t), hd)
	if err != nil {
		t.Fatalf("Wait after kill: %v", err)
	}
	if ex.Code == 0 && ex.Err == nil {
		t.Errorf("Wait after kill = %+v; want an abnormal exit", ex)
	}
}

func testRecover(t *testing.T, h Harness) {
	first := h.New(t)
	hd := startReady(t, h, first, "conf-recover")
	second := h.New(t)
	ctx := h.ctx(t)
	if err := second.Recover(ctx, hd); err != nil {
		t.Fatalf("Recover in a new backend: %v", err)
	}
	st, err := second.Ready(ctx, hd)
	if err != nil || st.ReadyAt.IsZero() {
		t.Fatalf("Ready after Recover = %+v, %v; want ready", st, err)
	}
	waited := make(chan error, 1)
	go func() { _, err := second.Wait(ctx, hd); waited <- err }()
	if err := second.Stop(ctx, hd); err != nil {
		t.Fatalf("Stop through the recovering backend: %v", err)
	}
	if err := <-waited; err != nil {
		t.Errorf("Wait through the recovering backend: %v", err)
	}
	if code, err := get(ctx, hd.Endpoint+"/v2/health/live"); err == nil {
		t.Errorf("replica still answers (%d) after Stop through the recovering backend", code)
	}
}

func testRecoverGone(t *testing.T, h Harness) {
	b := h.New(t)
	hd := startReady(t, h, b, "conf-gone")
	ctx := h.ctx(t)
	if err := b.Stop(ctx, hd); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	err := h.New(t).Recover(ctx, hd)
	if !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("Recover of a stopped replica = %v; want replica.ErrNotFound", err)
	}
}

func testConcurrentStarts(t *testing.T, h Harness) {
	b := h.New(t)
	ctx := h.ctx(t)
	const n = 4
	var wg sync.WaitGroup
	handles := make([]replica.Handle, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			hd, err := b.Start(ctx, h.Spec(t, fmt.Sprintf("conf-many-%d", i)))
			if err == nil {
				handles[i] = hd
				_, err = b.Ready(ctx, hd)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, hd := range handles {
		if hd.Endpoint != "" {
			t.Cleanup(func() { _ = b.Stop(context.Background(), hd) })
		}
		if errs[i] != nil {
			t.Errorf("replica %d: %v", i, errs[i])
			continue
		}
		if seen[hd.Endpoint] {
			t.Errorf("two replicas share endpoint %s", hd.Endpoint)
		}
		seen[hd.Endpoint] = true
	}
}
