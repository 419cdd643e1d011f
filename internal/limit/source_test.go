package limit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/limit"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

var _ limit.Lister = (*apiclient.Client)(nil)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// limitsServer is the admin API's limit routes over a real SQLite store;
// it counts the answers to GET /v1/limits by status.
type limitsServer struct {
	srv *httptest.Server
	c   *apiclient.Client

	mu       sync.Mutex
	statuses map[int]int
}

func newLimitsServer(t *testing.T) *limitsServer {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := api.New(st, nil, nil)
	h.MountLimits(st, nil)
	ls := &limitsServer{statuses: map[int]int{}}
	ls.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if r.Method == http.MethodGet && r.URL.Path == "/v1/limits" {
			ls.mu.Lock()
			ls.statuses[rec.status]++
			ls.mu.Unlock()
		}
	}))
	t.Cleanup(ls.srv.Close)
	ls.c = apiclient.New(ls.srv.URL, nil)
	return ls
}

func (ls *limitsServer) count(status int) int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.statuses[status]
}

func (ls *limitsServer) put(t *testing.T, l serving.Limit) {
	t.Helper()
	if _, _, err := ls.c.PutLimit(context.Background(), l); err != nil {
		t.Fatalf("PutLimit(%s): %v", l.Key(), err)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// admitted counts how many of n requests of tenant to deployment d pass
// at now, holding each.
func admitted(lim *limit.Limiter, tenant string, n int, now time.Time) int {
	ok := 0
	for range n {
		if _, _, pass := lim.Admit(tenant, "d", now); pass {
			ok++
		}
	}
	return ok
}

func TestSourcePoll(t *testing.T) {
	ctx := context.Background()
	ls := newLimitsServer(t)
	lim := limit.New(limit.Options{})
	var fraction atomic.Value
	fraction.Store(1.0)
	src := limit.NewSource(ls.c, lim, limit.SourceOptions{Fraction: func() float64 { return fraction.Load().(float64) }})

	if err := src.Poll(ctx); err != nil {
		t.Fatalf("Poll of no limits: %v", err)
	}
	if got := admitted(lim, "acme", 5, t0); got != 5 {
		t.Errorf("no limits: %d of 5 admitted", got)
	}

	ls.put(t, serving.Limit{Tenant: "acme", Concurrency: 4})
	if err := src.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := admitted(lim, "acme", 5, t0); got != 4 {
		t.Errorf("concurrency 4: %d of 5 admitted", got)
	}

	// Unchanged: a 304, the same table.
	before, ok200 := lim.Table(), ls.count(http.StatusOK)
	if err := src.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if lim.Table() != before || ls.count(http.StatusNotModified) != 1 || ls.count(http.StatusOK) != ok200 {
		t.Errorf("an unchanged poll: table replaced %v, answers %v; want the same table and one 304", lim.Table() != before, ls.statuses)
	}

	// One of two gateways: half of every limit, without a new fetch.
	fraction.Store(0.5)
	ls.put(t, serving.Limit{Tenant: "beta", Rate: 10, Burst: 10})
	if err := src.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := admitted(lim, "beta", 10, t0); got != 5 || lim.Table().Fraction() != 0.5 {
		t.Errorf("burst 10 at fraction %v: %d of 10 admitted, want 5", lim.Table().Fraction(), got)
	}
	fraction.Store(1.0)
	n304 := ls.count(http.StatusNotModified)
	if err := src.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if lim.Table().Fraction() != 1 || ls.count(http.StatusNotModified) != n304+1 {
		t.Errorf("rescaled to fraction %v after %d 304s, want 1 from the limits already read", lim.Table().Fraction(), ls.count(http.StatusNotModified)-n304)
	}

	// A deleted limit goes; the server down keeps what was read.
	if err := ls.c.DeleteLimit(ctx, "beta", ""); err != nil {
		t.Fatal(err)
	}
	if err := src.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(lim.Table().Limits()); got != 1 {
		t.Errorf("%d limits after a delete, want 1", got)
	}
	ls.srv.Close()
	kept := lim.Table()
	if err := src.Poll(ctx); err == nil {
		t.Errorf("Poll with the server down succeeded")
	}
	if lim.Table() != kept {
		t.Errorf("a failed poll replaced the table")
	}
}

func TestSourceRun(t *testing.T) {
	ls := newLimitsServer(t)
	lim := limit.New(limit.Options{})
	fc := clocktesting.NewFakeClock(t0)
	src := limit.NewSource(ls.c, lim, limit.SourceOptions{Clock: fc, Every: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()

	waitFor(t, "the first poll", func() bool { return ls.count(http.StatusOK) == 1 })
	ls.put(t, serving.Limit{Tenant: "acme", Concurrency: 1})
	waitFor(t, "Run to wait on its ticker", fc.HasWaiters)
	fc.Step(2 * time.Second)
	waitFor(t, "the limit", func() bool { return len(lim.Table().Limits()) == 1 })
	fc.Step(2 * time.Second)
	waitFor(t, "an unchanged poll", func() bool { return ls.count(http.StatusNotModified) >= 1 })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil once its context is done", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// waitFor waits, on the real clock, up to 5s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
