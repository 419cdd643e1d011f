package activator

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/routing"
	clocktesting "k8s.io/utils/clock/testing"
)

// wakes counts Wake calls per deployment.
type wakes struct {
	mu sync.Mutex
	n  map[string]int
	ch chan string
}

func newWakes() *wakes { return &wakes{n: map[string]int{}, ch: make(chan string, 100)} }

func (w *wakes) Wake(d string) {
	w.mu.Lock()
	w.n[d]++
	w.mu.Unlock()
	select {
	case w.ch <- d:
	default:
	}
}

func ready(name string) routing.Route {
	return routing.Route{Deployment: name, Endpoints: []*balance.Endpoint{balance.NewEndpoint("r1", "http://127.0.0.1:1")}}
}

func TestWaitWarmReturnsAtOnce(t *testing.T) {
	var tab routing.Table
	tab.Publish(ready("m"))
	w := newWakes()
	a := New(&tab, w, Options{})
	r, err := a.Wait(context.Background(), "m")
	if err != nil || len(r.Endpoints) != 1 {
		t.Fatalf("Wait = %v, %v; want the ready route", r, err)
	}
	if w.n["m"] != 0 {
		t.Errorf("warm request woke the autoscaler %d times; want 0", w.n["m"])
	}
}

func TestWaitUnknown(t *testing.T) {
	a := New(&routing.Table{}, newWakes(), Options{})
	if _, err := a.Wait(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Wait = %v; want ErrNotFound", err)
	}
}

// TestWaitColdReleasedWhenReady holds many requests at zero and releases all
// of them when a replica is routed.
func TestWaitColdReleasedWhenReady(t *testing.T) {
	var tab routing.Table
	tab.Publish(routing.Route{Deployment: "m"})
	w := newWakes()
	a := New(&tab, w, Options{Clock: clocktesting.NewFakeClock(time.Now())})

	const n = 50
	errs := make(chan error, n)
	for range n {
		go func() {
			r, err := a.Wait(context.Background(), "m")
			if err == nil && len(r.Endpoints) == 0 {
				err = errors.New("released with no endpoints")
			}
			errs <- err
		}()
	}
	<-w.ch // at least one woke the autoscaler
	waitFor(t, func() bool { return a.QueueDepth("m") == n })
	// A route change that still has no endpoint must not release anyone.
	tab.Publish(routing.Route{Deployment: "m"})
	tab.Publish(ready("m"))
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Wait: %v", err)
		}
	}
	if d := a.QueueDepth("m"); d != 0 {
		t.Errorf("QueueDepth after release = %d; want 0", d)
	}
}

func TestWaitBounds(t *testing.T) {
	tests := []struct {
		name string
		// act runs while one request is held; it returns what must
		// happen to the held request.
		act  func(t *testing.T, tab *routing.Table, clk *clocktesting.FakeClock, cancel context.CancelFunc)
		want func(error) bool
	}{
		{
			name: "timeout",
			act: func(t *testing.T, _ *routing.Table, clk *clocktesting.FakeClock, _ context.CancelFunc) {
				waitFor(t, clk.HasWaiters)
				clk.Step(time.Minute)
			},
			want: func(err error) bool { return errors.Is(err, ErrTimeout) },
		},
		{
			name: "client gives up",
			act: func(_ *testing.T, _ *routing.Table, _ *clocktesting.FakeClock, cancel context.CancelFunc) {
				cancel()
			},
			want: func(err error) bool { return errors.Is(err, context.Canceled) },
		},
		{
			name: "deployment deleted",
			act: func(_ *testing.T, tab *routing.Table, _ *clocktesting.FakeClock, _ context.CancelFunc) {
				tab.Remove("m")
			},
			want: func(err error) bool { return errors.Is(err, ErrNotFound) },
		},
		{
			name: "owner pins it at zero",
			act: func(_ *testing.T, tab *routing.Table, _ *clocktesting.FakeClock, _ context.CancelFunc) {
				tab.Publish(routing.Route{Deployment: "m", ScaledToZero: true})
			},
			want: func(err error) bool { return errors.Is(err, ErrScaledToZero) },
		},
		{
			name: "deployment fails to start",
			act: func(_ *testing.T, tab *routing.Table, _ *clocktesting.FakeClock, _ context.CancelFunc) {
				tab.Publish(routing.Route{Deployment: "m", Failure: "model.json: not an XGBoost model"})
			},
			want: func(err error) bool {
				var fe *FailedError
				return errors.As(err, &fe) && fe.Reason == "model.json: not an XGBoost model"
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tab routing.Table
			tab.Publish(routing.Route{Deployment: "m"})
			clk := clocktesting.NewFakeClock(time.Now())
			w := newWakes()
			a := New(&tab, w, Options{Clock: clk, Timeout: 30 * time.Second})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { _, err := a.Wait(ctx, "m"); done <- err }()
			<-w.ch
			tt.act(t, &tab, clk, cancel)
			if err := <-done; !tt.want(err) {
				t.Errorf("Wait = %v; not the expected error", err)
			}
			if d := a.QueueDepth("m"); d != 0 {
				t.Errorf("QueueDepth = %d after the request left; want 0", d)
			}
		})
	}
}

// TestWaitScaledToZero checks that a deployment pinned at zero refuses
// requests at once, without holding them or waking anything, and that a
// replica still routed (draining after the pin) is used.
func TestWaitScaledToZero(t *testing.T) {
	var tab routing.Table
	tab.Publish(routing.Route{Deployment: "m", ScaledToZero: true})
	w := newWakes()
	a := New(&tab, w, Options{Clock: clocktesting.NewFakeClock(time.Now())})
	if _, err := a.Wait(context.Background(), "m"); !errors.Is(err, ErrScaledToZero) {
		t.Fatalf("Wait = %v; want ErrScaledToZero", err)
	}
	if w.n["m"] != 0 || a.QueueDepth("m") != 0 {
		t.Errorf("pinned-zero request woke %d times, queue depth %d; want 0, 0", w.n["m"], a.QueueDepth("m"))
	}
	r := ready("m")
	r.ScaledToZero = true
	tab.Publish(r)
	if got, err := a.Wait(context.Background(), "m"); err != nil || len(got.Endpoints) != 1 {
		t.Errorf("Wait with a routed replica = %v, %v; want the route", got, err)
	}
}

func TestWaitQueueFull(t *testing.T) {
	var tab routing.Table
	tab.Publish(routing.Route{Deployment: "m"})
	w := newWakes()
	a := New(&tab, w, Options{MaxQueue: 2, Clock: clocktesting.NewFakeClock(time.Now())})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		go a.Wait(ctx, "m")
	}
	waitFor(t, func() bool { return a.QueueDepth("m") == 2 })
	if _, err := a.Wait(ctx, "m"); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third Wait = %v; want ErrQueueFull", err)
	}
	if got := a.QueueDepths(); got["m"] != 2 {
		t.Errorf("QueueDepths = %v; want m:2", got)
	}
}

// waitFor waits for a condition that other goroutines make true.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWaitTenantBound: one tenant's burst fills its own share of a cold
// deployment's hold, not the hold: its next request fails with
// ErrTenantQueueFull while other tenants, and requests of no tenant, are
// still held; the bound is per deployment, and a request that leaves
// frees its tenant's place.
func TestWaitTenantBound(t *testing.T) {
	var tab routing.Table
	tab.Publish(routing.Route{Deployment: "m"})
	tab.Publish(routing.Route{Deployment: "n"})
	a := New(&tab, newWakes(), Options{MaxQueue: 5, MaxQueuePerTenant: 2, Clock: clocktesting.NewFakeClock(time.Now())})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	hold := func(ctx context.Context, deployment, tenant string) {
		wg.Go(func() { a.WaitTenant(ctx, deployment, tenant) })
	}
	leave, leaveNow := context.WithCancel(ctx)
	hold(ctx, "m", "a")
	hold(leave, "m", "a")
	waitFor(t, func() bool { return a.TenantQueueDepth("m", "a") == 2 })

	tests := []struct {
		name       string
		deployment string
		tenant     string
		wantErr    error // nil: held
	}{
		{name: "tenant at its bound", deployment: "m", tenant: "a", wantErr: ErrTenantQueueFull},
		{name: "another tenant", deployment: "m", tenant: "b"},
		{name: "no tenant", deployment: "m", tenant: ""},
		{name: "same tenant, another deployment", deployment: "n", tenant: "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := a.QueueDepth(tt.deployment)
			if tt.wantErr != nil {
				_, err := a.WaitTenant(ctx, tt.deployment, tt.tenant)
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), `(2 held for "m" of tenant "a")`) {
					t.Fatalf("WaitTenant = %v; want %v with the bound", err, tt.wantErr)
				}
				if d := a.QueueDepth(tt.deployment); d != before {
					t.Errorf("QueueDepth = %d after a refusal; want %d", d, before)
				}
				return
			}
			hold(ctx, tt.deployment, tt.tenant)
			waitFor(t, func() bool { return a.QueueDepth(tt.deployment) == before+1 })
		})
	}

	leaveNow()
	waitFor(t, func() bool { return a.TenantQueueDepth("m", "a") == 1 })
	hold(ctx, "m", "a")
	waitFor(t, func() bool { return a.TenantQueueDepth("m", "a") == 2 && a.QueueDepth("m") == 4 })
	cancel()
	wg.Wait()
	if d, ds := a.TenantQueueDepth("m", "a"), a.QueueDepths(); d != 0 || len(ds) != 0 {
		t.Errorf("after every request left: tenant a holds %d, depths %v; want none", d, ds)
	}
}

// TestWaitTenantWarmAllocatesNothing: naming a tenant costs the warm path
// nothing.
func TestWaitTenantWarmAllocatesNothing(t *testing.T) {
	var tab routing.Table
	tab.Publish(ready("m"))
	a := New(&tab, newWakes(), Options{})
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { a.WaitTenant(ctx, "m", "tenant-a") }); n != 0 {
		t.Errorf("warm WaitTenant allocates %v times; want 0", n)
	}
}
