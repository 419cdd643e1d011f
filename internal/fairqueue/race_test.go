package fairqueue_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/fairqueue"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestGrantRacesLeaving frees the one slot at the moment its waiter
// leaves, many times over: whichever wins, the waiter either holds the slot
// or handed it back, and nothing stays queued or in flight.
func TestGrantRacesLeaving(t *testing.T) {
	tests := []struct {
		name string
		// leave ends the waiter's wait.
		leave   func(clk *clocktesting.FakeClock, cancel context.CancelFunc)
		wantErr error
	}{
		{name: "cancel", leave: func(_ *clocktesting.FakeClock, cancel context.CancelFunc) { cancel() }, wantErr: context.Canceled},
		{name: "timeout", leave: func(clk *clocktesting.FakeClock, _ context.CancelFunc) { clk.Step(time.Second) }, wantErr: fairqueue.ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var won, lost int
			for range 300 {
				clk := clocktesting.NewFakeClock(time.Now())
				q := fairqueue.New(1, fairqueue.Options{Timeout: time.Second, Clock: clk})
				hold, err := q.Acquire(context.Background(), "a", fairqueue.Interactive)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				type result struct {
					release func()
					err     error
				}
				done := make(chan result, 1)
				go func() {
					release, err := q.Acquire(ctx, "b", fairqueue.Interactive)
					done <- result{release, err}
				}()
				waitFor(t, func() bool { return q.Depth() == 1 && clk.HasWaiters() })
				var wg sync.WaitGroup
				wg.Go(hold)
				tt.leave(clk, cancel)
				r := <-done
				wg.Wait()
				switch {
				case r.err == nil:
					won++
					if n := q.InFlight(); n != 1 {
						t.Fatalf("granted: InFlight = %d; want 1", n)
					}
					r.release()
				case errors.Is(r.err, tt.wantErr):
					lost++
				default:
					t.Fatalf("Acquire = %v; want a slot or %v", r.err, tt.wantErr)
				}
				cancel()
				if d, n := q.Depth(), q.InFlight(); d != 0 || n != 0 {
					t.Fatalf("after the race: Depth %d, InFlight %d; want 0, 0", d, n)
				}
			}
			t.Logf("granted %d times, left %d times", won, lost)
		})
	}
}

// TestGrantsNeverExceedCapacity is a property test: many goroutines of
// several tenants and both levels acquire, hold for a moment, release, and
// give up at random, while the capacity may change; the requests holding a
// slot never number more than the capacity, and at the end nothing is
// queued or in flight.
func TestGrantsNeverExceedCapacity(t *testing.T) {
	tests := []struct {
		capacities []int // the capacity moves between these; the first is the start
		workers    int
		requests   int // per worker
		leaveShare float64
	}{
		{capacities: []int{1}, workers: 16, requests: 200},
		{capacities: []int{3}, workers: 24, requests: 200, leaveShare: 0.3},
		{capacities: []int{8}, workers: 32, requests: 150, leaveShare: 0.5},
		{capacities: []int{4, 0, 2, 6}, workers: 24, requests: 150, leaveShare: 0.2},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(tt.capacities), func(t *testing.T) {
			bound := 0
			for _, c := range tt.capacities {
				bound = max(bound, c)
			}
			q := fairqueue.New(tt.capacities[0], fairqueue.Options{MaxQueuePerTenant: tt.workers * tt.requests})
			var held, peak atomic.Int64
			stopMoving := make(chan struct{})
			var mover sync.WaitGroup
			if len(tt.capacities) > 1 {
				mover.Go(func() {
					for j := 0; ; j++ {
						select {
						case <-stopMoving:
							q.SetCapacity(fairqueue.Unlimited) // let every waiter through
							return
						case <-time.After(200 * time.Microsecond):
							q.SetCapacity(tt.capacities[j%len(tt.capacities)])
						}
					}
				})
			}
			var wg sync.WaitGroup
			for w := range tt.workers {
				rng := rand.New(rand.NewPCG(uint64(i), uint64(w)))
				wg.Go(func() {
					for range tt.requests {
						tenant := fmt.Sprint("t", rng.IntN(5))
						prio := fairqueue.Priority(rng.IntN(2))
						ctx, cancel := context.Background(), context.CancelFunc(func() {})
						if rng.Float64() < tt.leaveShare {
							ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(300))*time.Microsecond)
						}
						release, err := q.Acquire(ctx, tenant, prio)
						cancel()
						if err != nil {
							if !errors.Is(err, context.DeadlineExceeded) {
								t.Errorf("Acquire = %v", err)
							}
							continue
						}
						n := held.Add(1)
						for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
						}
						runtime.Gosched()
						held.Add(-1)
						release()
					}
				})
			}
			wg.Wait()
			close(stopMoving)
			mover.Wait()
			if p := peak.Load(); p > int64(bound) || p == 0 {
				t.Errorf("peak of requests holding a slot = %d; want 1..%d", p, bound)
			}
			if d, n, ds := q.Depth(), q.InFlight(), q.TenantDepths(10); d != 0 || n != 0 || len(ds) != 0 {
				t.Errorf("at the end: Depth %d, InFlight %d, TenantDepths %v; want none", d, n, ds)
			}
		})
	}
}
