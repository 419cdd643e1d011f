package fairqueue_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/fairqueue"
	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestParsePriority(t *testing.T) {
	tests := []struct {
		in      string
		want    fairqueue.Priority
		wantErr bool
	}{
		{in: "", want: fairqueue.Interactive},
		{in: "interactive", want: fairqueue.Interactive},
		{in: "batch", want: fairqueue.Batch},
		{in: "Batch", wantErr: true},
		{in: "low", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := fairqueue.ParsePriority(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParsePriority(%q) = %v, %v; want %v, error %t", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err == nil && tt.in != "" && got.String() != tt.in {
				t.Errorf("String = %q; want %q", got.String(), tt.in)
			}
		})
	}
}

// TestAcquireFreeAllocatesNothing: the fast path (a free slot, nobody
// waiting) allocates nothing, with a bound and without.
func TestAcquireFreeAllocatesNothing(t *testing.T) {
	for _, capacity := range []int{fairqueue.Unlimited, 4} {
		q := fairqueue.New(capacity, fairqueue.Options{})
		ctx := context.Background()
		allocs := testing.AllocsPerRun(1000, func() {
			release, err := q.Acquire(ctx, "t", fairqueue.Interactive)
			if err != nil {
				t.Fatal(err)
			}
			release()
		})
		if allocs != 0 {
			t.Errorf("capacity %d: Acquire and release allocate %v times; want 0", capacity, allocs)
		}
		if n := q.InFlight(); n != 0 {
			t.Errorf("capacity %d: InFlight = %d after every release; want 0", capacity, n)
		}
	}
}

func BenchmarkAcquireFree(b *testing.B) {
	q := fairqueue.New(fairqueue.Unlimited, fairqueue.Options{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		release, _ := q.Acquire(ctx, "t", fairqueue.Interactive)
		release()
	}
}

func BenchmarkAcquireFreeParallel(b *testing.B) {
	q := fairqueue.New(1<<20, fairqueue.Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			release, _ := q.Acquire(ctx, "t", fairqueue.Interactive)
			release()
		}
	})
}

// grants runs requests against q and records the order in which they are
// granted; each releases its slot at once.
type grants struct {
	q     *fairqueue.Queue
	wg    sync.WaitGroup
	mu    sync.Mutex
	order []string
	errs  []error
}

// send starts n requests of tenant at prio; name is what order records.
func (g *grants) send(ctx context.Context, tenant string, prio fairqueue.Priority, n int, name string) {
	for range n {
		g.wg.Go(func() {
			release, err := g.q.Acquire(ctx, tenant, prio)
			g.mu.Lock()
			if err != nil {
				g.errs = append(g.errs, err)
			} else {
				g.order = append(g.order, name)
			}
			g.mu.Unlock()
			if err == nil {
				release()
			}
		})
	}
}

func (g *grants) wait(t *testing.T) []string {
	t.Helper()
	g.wg.Wait()
	for _, err := range g.errs {
		t.Errorf("Acquire: %v", err)
	}
	return g.order
}

// TestStarvation: tenant a queues 1000 requests, then tenant b 10; with
// one slot, b's ten are all granted within the first 20 grants.
func TestStarvation(t *testing.T) {
	q := fairqueue.New(1, fairqueue.Options{})
	hold, err := q.Acquire(context.Background(), "x", fairqueue.Interactive)
	if err != nil {
		t.Fatal(err)
	}
	g := &grants{q: q}
	ctx := context.Background()
	g.send(ctx, "a", fairqueue.Interactive, 1000, "a")
	waitFor(t, func() bool { return q.Depth() == 1000 })
	g.send(ctx, "b", fairqueue.Interactive, 10, "b")
	waitFor(t, func() bool { return q.Depth() == 1010 })
	if d := q.TenantDepths(1); d["a"] != 1000 || d[fairqueue.OtherTenants] != 10 {
		t.Errorf("TenantDepths(1) = %v; want a:1000 and 10 for the others", d)
	}
	hold()
	order := g.wait(t)
	if len(order) != 1010 {
		t.Fatalf("%d grants; want 1010", len(order))
	}
	last := -1
	for i, name := range order {
		if name == "b" {
			last = i
		}
	}
	if last >= 20 {
		t.Errorf("b's last request was grant %d; want all ten within the first 20 (first 30 grants: %v)", last+1, order[:30])
	}
	if d, n := q.Depth(), q.InFlight(); d != 0 || n != 0 {
		t.Errorf("after all: Depth %d, InFlight %d; want 0, 0", d, n)
	}
}

// TestPriority: with one slot, interactive requests that arrive after
// batch ones are granted first, whatever their tenants.
func TestPriority(t *testing.T) {
	q := fairqueue.New(1, fairqueue.Options{})
	hold, err := q.Acquire(context.Background(), "x", fairqueue.Batch)
	if err != nil {
		t.Fatal(err)
	}
	g := &grants{q: q}
	ctx := context.Background()
	g.send(ctx, "a", fairqueue.Batch, 20, "batch")
	waitFor(t, func() bool { return q.Depth() == 20 })
	g.send(ctx, "b", fairqueue.Interactive, 5, "interactive")
	g.send(ctx, "a", fairqueue.Interactive, 5, "interactive")
	waitFor(t, func() bool { return q.Depth() == 30 })
	hold()
	order := g.wait(t)
	want := append(slicesRepeat("interactive", 10), slicesRepeat("batch", 20)...)
	if diff := cmp.Diff(want, order); diff != "" {
		t.Errorf("grant order (-want +got):\n%s", diff)
	}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestBounds: a request beyond a bound fails at once with the error that
// names it, and a request that leaves early leaves the queue as it was.
func TestBounds(t *testing.T) {
	tests := []struct {
		name   string
		queued []string // tenants of the requests already waiting
		tenant string   // of the request tried
		// leave, when set, ends the request's wait once it is queued.
		leave   func(clk *clocktesting.FakeClock, cancel context.CancelFunc)
		wantErr error
		wantMsg string
	}{
		{name: "tenant full", queued: []string{"a", "a", "b"}, tenant: "a", wantErr: fairqueue.ErrTenantQueueFull, wantMsg: `(2 queued for tenant "a")`},
		{name: "queue full", queued: []string{"a", "a", "b", "d"}, tenant: "c", wantErr: fairqueue.ErrQueueFull, wantMsg: "(4 queued)"},
		{
			// Alone: a step of the fake clock would time out every waiter.
			name: "timeout", tenant: "b",
			leave: func(clk *clocktesting.FakeClock, _ context.CancelFunc) {
				clk.Step(10 * time.Second)
			},
			wantErr: fairqueue.ErrTimeout, wantMsg: "after 10s",
		},
		{
			name: "client gives up", queued: []string{"a", "a", "b"}, tenant: "b",
			leave:   func(_ *clocktesting.FakeClock, cancel context.CancelFunc) { cancel() },
			wantErr: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(time.Now())
			q := fairqueue.New(0, fairqueue.Options{MaxQueue: 4, MaxQueuePerTenant: 2, Timeout: 10 * time.Second, Clock: clk})
			var wg sync.WaitGroup
			bg, stop := context.WithCancel(context.Background())
			defer wg.Wait()
			defer stop()
			want := map[string]int{}
			for _, tenant := range tt.queued {
				want[tenant]++
				wg.Go(func() { q.Acquire(bg, tenant, fairqueue.Batch) })
			}
			waitFor(t, func() bool { return q.Depth() == len(tt.queued) && clk.Waiters() == len(tt.queued) })

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := q.Acquire(ctx, tt.tenant, fairqueue.Interactive)
				done <- err
			}()
			if tt.leave != nil {
				waitFor(t, func() bool { return clk.Waiters() == len(tt.queued)+1 })
				if got := q.TenantDepth(tt.tenant); got != want[tt.tenant]+1 {
					t.Errorf("TenantDepth(%s) while queued = %d; want %d", tt.tenant, got, want[tt.tenant]+1)
				}
				tt.leave(clk, cancel)
			}
			err := <-done
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Acquire = %v; want %v with %q", err, tt.wantErr, tt.wantMsg)
			}
			if got := q.TenantDepths(10); !cmp.Equal(got, want) {
				t.Errorf("TenantDepths after = %v; want %v", got, want)
			}
			if d, n := q.Depth(), q.InFlight(); d != len(tt.queued) || n != 0 {
				t.Errorf("Depth %d, InFlight %d; want %d, 0", d, n, len(tt.queued))
			}
		})
	}
}

// TestSetCapacity: 0 holds every request, raising the capacity grants as
// many waiters as it frees, Unlimited grants all, and lowering it takes no
// slot back but delays the next grants.
func TestSetCapacity(t *testing.T) {
	q := fairqueue.New(0, fairqueue.Options{})
	var (
		mu       sync.Mutex
		releases []func()
		wg       sync.WaitGroup
	)
	ctx := context.Background()
	for range 6 {
		wg.Go(func() {
			release, err := q.Acquire(ctx, "t", fairqueue.Interactive)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			releases = append(releases, release)
			mu.Unlock()
		})
	}
	held := func() int { mu.Lock(); defer mu.Unlock(); return len(releases) }
	waitFor(t, func() bool { return q.Depth() == 6 })
	steps := []struct {
		capacity      int
		release       int // slots released after the capacity is set
		held, waiting int
	}{
		{capacity: 2, held: 2, waiting: 4},
		{capacity: 3, held: 3, waiting: 3},
		{capacity: 1, release: 1, held: 2, waiting: 3}, // 2 in flight, above the new capacity
		{capacity: 1, release: 1, held: 1, waiting: 3}, // 1 in flight: still no room
		{capacity: 1, release: 1, held: 1, waiting: 2}, // room for one
		{capacity: fairqueue.Unlimited, held: 3, waiting: 0},
	}
	released := 0
	for i, s := range steps {
		q.SetCapacity(s.capacity)
		for range s.release {
			mu.Lock()
			r := releases[released]
			mu.Unlock()
			r()
			released++
		}
		waitFor(t, func() bool { return held()-released == s.held && q.Depth() == s.waiting })
		if got := q.InFlight(); got != s.held {
			t.Errorf("step %d: InFlight = %d; want %d", i, got, s.held)
		}
		if got := q.Capacity(); got != s.capacity {
			t.Errorf("step %d: Capacity = %d; want %d", i, got, s.capacity)
		}
	}
	wg.Wait()
	for _, r := range releases[released:] {
		r()
	}
	if n := q.InFlight(); n != 0 {
		t.Errorf("InFlight after all released = %d; want 0", n)
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
