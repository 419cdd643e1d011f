package queue_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/queue/queuetest"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// forwarder is a hand-written Forwarder: answer decides each answer, and
// it counts calls and the most running at once per deployment.
type forwarder struct {
	answer func(r *queue.Request, call int) (int, string, []byte, error)

	mu      sync.Mutex
	calls   map[string]int
	running map[string]int
	peak    map[string]int
}

func (f *forwarder) Forward(ctx context.Context, r *queue.Request) (queue.Result, error) {
	status, ct, body, err := f.forward(ctx, r)
	return queue.Result{Status: status, ContentType: ct, Body: body}, err
}

func (f *forwarder) forward(ctx context.Context, r *queue.Request) (int, string, []byte, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls, f.running, f.peak = map[string]int{}, map[string]int{}, map[string]int{}
	}
	f.calls[r.ID]++
	call := f.calls[r.ID]
	f.running[r.Deployment]++
	f.peak[r.Deployment] = max(f.peak[r.Deployment], f.running[r.Deployment])
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running[r.Deployment]--
		f.mu.Unlock()
	}()
	return f.answer(r, call)
}

func (f *forwarder) callsOf(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[id]
}

func openQueue(t *testing.T) (*sqlstore.Queue, *queuetest.Clock) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := &queuetest.Clock{}
	s.Now = c.Now
	return s.Queue(sqlstore.QueueOptions{}), c
}

// runWorker runs w until the test ends.
func runWorker(t *testing.T, w *queue.Worker) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// await waits for request id to be done and returns its record.
func await(t *testing.T, q queue.Queue, tenant, id string, until func(queue.Record) bool) queue.Record {
	t.Helper()
	var rec queue.Record
	var err error
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if rec, err = q.Get(context.Background(), tenant, id); err == nil && until(rec) {
			return rec
		}
	}
	t.Fatalf("request %s: %+v, %v; not there in 10s", id, rec, err)
	return rec
}

func isDone(r queue.Record) bool { return r.State == queue.Done }

func TestWorker(t *testing.T) {
	echo := func(r *queue.Request, _ int) (int, string, []byte, error) {
		time.Sleep(20 * time.Millisecond)
		return 200, "application/json", append([]byte("echo "), r.Body...), nil
	}
	for _, tc := range []struct {
		name       string
		answer     func(r *queue.Request, call int) (int, string, []byte, error)
		deadline   time.Duration // from now; default an hour
		wantStatus int
		wantCalls  int
	}{
		{"answered", echo, 0, 200, 1},
		{"4xx is a result", func(*queue.Request, int) (int, string, []byte, error) {
			return 400, "application/json", []byte(`{"error":"bad input"}`), nil
		}, 0, 400, 1},
		{"model error is a result", func(*queue.Request, int) (int, string, []byte, error) {
			return 500, "application/json", []byte(`{"error":"engine"}`), nil
		}, 0, 500, 1},
		{"503 and 429 retried", func(r *queue.Request, call int) (int, string, []byte, error) {
			switch call {
			case 1:
				return 503, "application/json", nil, nil
			case 2:
				return 429, "application/json", nil, nil
			}
			return echo(r, call)
		}, 0, 200, 3},
		{"no answer retried", func(r *queue.Request, call int) (int, string, []byte, error) {
			if call == 1 {
				return 0, "", nil, errors.New("connection refused")
			}
			return echo(r, call)
		}, 0, 200, 2},
		{"past its deadline", echo, -time.Second, 504, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, c := openQueue(t)
			f := &forwarder{answer: tc.answer}
			w := queue.NewWorker(q, f, queue.WorkerOptions{Poll: 20 * time.Millisecond, RetryDelay: 10 * time.Millisecond})
			r := queuetest.Request(c, "acme", "iris")
			if tc.deadline != 0 {
				r.Deadline = c.Now().Add(tc.deadline)
			}
			if err := q.Enqueue(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			runWorker(t, w)
			w.Wake()
			rec := await(t, q, "acme", r.ID, isDone)
			if rec.Result.Status != tc.wantStatus {
				t.Errorf("result status %d (%s), want %d", rec.Result.Status, rec.Result.Body, tc.wantStatus)
			}
			if n := f.callsOf(r.ID); n != tc.wantCalls {
				t.Errorf("forwarded %d times, want %d", n, tc.wantCalls)
			}
		})
	}
}

// TestWorkerConcurrency: the worker runs no more of a deployment's
// requests at once than Concurrency says, and drains them all.
func TestWorkerConcurrency(t *testing.T) {
	q, c := openQueue(t)
	f := &forwarder{answer: func(r *queue.Request, _ int) (int, string, []byte, error) {
		time.Sleep(15 * time.Millisecond)
		return 200, "text/plain", r.Body, nil
	}}
	limits := map[string]int{"iris": 3, "wine": 1}
	w := queue.NewWorker(q, f, queue.WorkerOptions{Poll: 20 * time.Millisecond,
		Concurrency: func(dep string) int { return limits[dep] }})
	var ids []string
	for i := range 24 {
		dep := "iris"
		if i%3 == 0 {
			dep = "wine"
		}
		r := queuetest.Request(c, "", dep)
		if err := q.Enqueue(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	runWorker(t, w)
	for _, id := range ids {
		await(t, q, "", id, isDone)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for dep, limit := range limits {
		if f.peak[dep] > limit || f.peak[dep] == 0 {
			t.Errorf("%s: at most %d ran at once, want 1..%d", dep, f.peak[dep], limit)
		}
	}
}

// TestWorkerShutdown: a request interrupted by the worker's end is
// released at once for another worker, not left to its lease.
func TestWorkerShutdown(t *testing.T) {
	q, c := openQueue(t)
	started := make(chan struct{})
	f := &forwarder{answer: func(_ *queue.Request, _ int) (int, string, []byte, error) {
		close(started)
		time.Sleep(50 * time.Millisecond)
		return 0, "", nil, context.Canceled
	}}
	w := queue.NewWorker(q, f, queue.WorkerOptions{Poll: 20 * time.Millisecond, Lease: time.Hour})
	r := queuetest.Request(c, "", "iris")
	if err := q.Enqueue(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	<-started
	cancel()
	<-done
	rs, err := q.Claim(context.Background(), "iris", 1, time.Minute)
	if err != nil || len(rs) != 1 || rs[0].Attempt != 2 {
		t.Errorf("Claim after the worker stopped = %v, %v; want the request, attempt 2", rs, err)
	}
}

// receiver is a callback receiver that checks signatures and answers
// with the statuses given, in turn (then 200).
type receiver struct {
	secret   []byte
	statuses []int

	mu       sync.Mutex
	requests int
	bodies   []string
	errs     []error
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	status, _ := strconv.Atoi(r.Header.Get(queue.HeaderStatus))
	err := queue.Verify(rv.secret, r.Header.Get(queue.HeaderSignature), r.Header.Get(queue.HeaderID), status, body, time.Now(), 5*time.Minute)
	rv.mu.Lock()
	defer rv.mu.Unlock()
	rv.requests++
	rv.errs = append(rv.errs, err)
	if rv.requests <= len(rv.statuses) {
		w.WriteHeader(rv.statuses[rv.requests-1])
		return
	}
	rv.bodies = append(rv.bodies, r.Header.Get(queue.HeaderID)+" "+r.Header.Get(queue.HeaderStatus)+" "+string(body))
}

func TestWorkerCallbacks(t *testing.T) {
	secret := []byte("s3cret")
	for _, tc := range []struct {
		name      string
		statuses  []int
		allow     func(host string) []string
		maxTries  int
		wantState queue.CallbackState
		wantPosts int
	}{
		{"delivered after a failure", []int{500}, func(h string) []string { return []string{h} }, 0, queue.CallbackDelivered, 2},
		{"gives up at the bound", []int{500, 502, 503}, func(h string) []string { return []string{h} }, 3, queue.CallbackFailed, 3},
		{"host no longer allowed", nil, func(string) []string { return []string{"hooks.example"} }, 0, queue.CallbackFailed, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rv := &receiver{secret: secret, statuses: tc.statuses}
			srv := httptest.NewServer(rv)
			defer srv.Close()
			u, _ := url.Parse(srv.URL)
			q, c := openQueue(t)
			f := &forwarder{answer: func(r *queue.Request, _ int) (int, string, []byte, error) {
				return 200, "application/json", []byte(`{"outputs":[]}`), nil
			}}
			w := queue.NewWorker(q, f, queue.WorkerOptions{Poll: 10 * time.Millisecond, Callbacks: queue.CallbackOptions{
				Secret: secret, AllowedHosts: tc.allow(u.Host), BaseDelay: 10 * time.Millisecond, MaxAttempts: tc.maxTries,
			}})
			r := queuetest.Request(c, "acme", "iris")
			r.Callback = srv.URL + "/hook"
			if err := q.Enqueue(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			runWorker(t, w)
			rec := await(t, q, "acme", r.ID, func(r queue.Record) bool {
				return r.CallbackState == queue.CallbackDelivered || r.CallbackState == queue.CallbackFailed
			})
			if rec.CallbackState != tc.wantState {
				t.Errorf("callback state %q (%s), want %q", rec.CallbackState, rec.CallbackError, tc.wantState)
			}
			rv.mu.Lock()
			defer rv.mu.Unlock()
			if rv.requests != tc.wantPosts {
				t.Errorf("%d posts, want %d", rv.requests, tc.wantPosts)
			}
			for _, err := range rv.errs {
				if err != nil {
					t.Errorf("signature: %v", err)
				}
			}
			if tc.wantState == queue.CallbackDelivered {
				if want := r.ID + ` 200 {"outputs":[]}`; len(rv.bodies) != 1 || rv.bodies[0] != want {
					t.Errorf("delivered %q, want %q", rv.bodies, want)
				}
			}
		})
	}
}

// claimCounter records how many requests each Claim that found some
// returned, and counts the reads of every deployment's depth.
type claimCounter struct {
	*sqlstore.Queue
	mu     sync.Mutex
	claims []int
	depths int
}

func (q *claimCounter) Depths(ctx context.Context) (map[string]int, error) {
	q.mu.Lock()
	q.depths++
	q.mu.Unlock()
	return q.Queue.Depths(ctx)
}

func (q *claimCounter) Claim(ctx context.Context, dep string, n int, lease time.Duration) ([]*queue.Request, error) {
	rs, err := q.Queue.Claim(ctx, dep, n, lease)
	if len(rs) > 0 {
		q.mu.Lock()
		q.claims = append(q.claims, len(rs))
		q.mu.Unlock()
	}
	return rs, err
}

// TestWorkerClaimBatches: with a backlog deeper than its pace, the worker
// claims a quarter of the pace or more at a time, not one request per
// request finished; woken only by Enqueued and by its own requests
// finishing (the poll is an hour), it still drains every request, and
// reads the queue's depths only when it starts: a wake claims for the
// deployments it was told of.
func TestWorkerClaimBatches(t *testing.T) {
	sq, c := openQueue(t)
	q := &claimCounter{Queue: sq}
	f := &forwarder{answer: func(r *queue.Request, _ int) (int, string, []byte, error) {
		time.Sleep(3 * time.Millisecond)
		return 200, "text/plain", r.Body, nil
	}}
	const pace, n = 8, 60
	w := queue.NewWorker(q, f, queue.WorkerOptions{Poll: time.Hour, Concurrency: func(string) int { return pace }})
	// The backlog is there before the worker runs, so that it is deep
	// from the first claim on, however slowly the worker goes.
	var ids []string
	for range n {
		r := queuetest.Request(c, "", "iris")
		if err := q.Enqueue(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		w.Enqueued(r.Deployment)
		ids = append(ids, r.ID)
	}
	runWorker(t, w)
	for _, id := range ids {
		await(t, q, "", id, isDone)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.peak["iris"] > pace {
		t.Errorf("%d ran at once, want at most %d", f.peak["iris"], pace)
	}
	// The first claim takes the pace; then batches, until the backlog is
	// within the pace.
	small := 0
	for _, k := range q.claims {
		if k < pace/4 {
			small++
		}
	}
	if len(q.claims) > n/2 || small > pace {
		t.Errorf("claims took %v: %d claims, %d of them under %d requests; want at most %d claims, at most %d small",
			q.claims, len(q.claims), small, pace/4, n/2, pace)
	}
	if q.depths > 1 {
		t.Errorf("the depths were read %d times for %d requests; want once, when the worker started", q.depths, n)
	}
}
