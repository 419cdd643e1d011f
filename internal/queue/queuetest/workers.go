package queuetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/queue"
)

// testCrashedWorkers enqueues 1000 requests and works them with eight
// concurrent workers that crash: one claim in twenty is abandoned (its
// worker died holding the lease) and one in twenty finishes only after its
// lease expired, racing whoever reclaimed it. Every request must end with
// exactly one stored result, the one Get returns, and nothing claimable.
func testCrashedWorkers(t *testing.T, h Harness, c *Clock) {
	const total, workers, lease = 1000, 8, 500 * time.Millisecond
	q := h.Queue
	for i := range total {
		r := Request(c, "", "iris")
		r.Body = fmt.Appendf(nil, "%d", i)
		enqueue(t, q, r)
	}
	var mu sync.Mutex
	stored := map[string][]string{} // id → the bodies of completions reported stored
	var runs, abandoned, late int
	record := func(r *queue.Request, body string) {
		ok, err := q.Complete(context.Background(), r.ID, r.LeaseToken, result(body))
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			t.Errorf("Complete(%s): %v", r.ID, err)
			return
		}
		runs++
		if ok {
			stored[r.ID] = append(stored[r.ID], body)
		}
	}
	ctx, cancel := context.WithTimeout(ctx(t), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 15))
			for ctx.Err() == nil {
				rs, err := q.Claim(ctx, "iris", 8, lease)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("Claim: %v", err)
					}
					return
				}
				if len(rs) == 0 {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				for _, r := range rs {
					body := fmt.Sprintf("worker %d attempt %d of %s", w, r.Attempt, r.Body)
					switch p := rng.IntN(100); {
					case p < 5: // crashed holding the lease
						mu.Lock()
						abandoned++
						mu.Unlock()
					case p < 10: // hung past its lease, then finished
						mu.Lock()
						late++
						mu.Unlock()
						wg.Go(func() {
							time.Sleep(lease + 100*time.Millisecond)
							record(r, body)
						})
					default:
						record(r, body)
					}
				}
			}
		})
	}
	for ctx.Err() == nil {
		mu.Lock()
		n := len(stored)
		mu.Unlock()
		if n == total {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	t.Logf("%d completions, %d claims abandoned, %d finished after their lease", runs, abandoned, late)
	if len(stored) != total {
		t.Fatalf("%d of %d requests have a result after 90s", len(stored), total)
	}
	for id, bodies := range stored {
		if len(bodies) != 1 {
			t.Errorf("request %s: %d completions stored (%q), want 1", id, len(bodies), bodies)
			continue
		}
		rec := get(t, q, "", id)
		if rec.State != queue.Done || rec.Result == nil || string(rec.Result.Body) != bodies[0] {
			t.Errorf("request %s: Get = %+v, want the stored completion %q", id, rec.Result, bodies[0])
		}
	}
	if rs := claim(t, q, "iris", total, time.Minute); len(rs) != 0 {
		t.Errorf("%d requests claimable after all have results", len(rs))
	}
	waitDepth(t, q, "iris", 0)
}

// claimCallback claims callbacks until one comes back or d passes.
func claimCallback(t *testing.T, q queue.Queue, d time.Duration) queue.Callback {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		cbs, err := q.ClaimCallbacks(ctx(t), 1, time.Minute)
		check(t, "ClaimCallbacks", err)
		if len(cbs) > 0 {
			return cbs[0]
		}
	}
	t.Fatalf("no callback could be claimed within %v", d)
	return queue.Callback{}
}

func noCallbacks(t *testing.T, q queue.Queue, when string) {
	t.Helper()
	cbs, err := q.ClaimCallbacks(ctx(t), 10, time.Minute)
	check(t, "ClaimCallbacks", err)
	if len(cbs) != 0 {
		t.Errorf("ClaimCallbacks %s = %d callbacks, want none", when, len(cbs))
	}
}

func testCallbacks(t *testing.T, h Harness, c *Clock) {
	q := h.Queue
	r := Request(c, "acme", "iris")
	r.Callback = "https://hooks.example/ebb"
	enqueue(t, q, r)
	enqueue(t, q, Request(c, "acme", "iris")) // no callback
	if rec := get(t, q, "acme", r.ID); rec.Callback != r.Callback || rec.CallbackState != queue.CallbackWaiting {
		t.Errorf("Get before a result: callback %q state %q; want %q waiting", rec.Callback, rec.CallbackState, r.Callback)
	}
	noCallbacks(t, q, "before a result")
	for range 2 {
		complete(t, q, claimWithin(t, q, "iris", time.Minute, time.Second), result("answer"))
	}
	cb := claimCallback(t, q, 5*time.Second)
	if cb.ID != r.ID || cb.URL != r.Callback || cb.Tenant != "acme" || cb.Deployment != "iris" || cb.Attempt != 1 ||
		cb.LeaseToken == "" || cb.Result.Status != 200 || string(cb.Result.Body) != "answer" {
		t.Errorf("claimed callback = %+v, want %s's first attempt with its result", cb, r.ID)
	}
	noCallbacks(t, q, "while leased")
	check(t, "SettleCallback", q.SettleCallback(ctx(t), cb.ID, cb.LeaseToken,
		queue.CallbackOutcome{Retry: c.Now().Add(300 * time.Millisecond), Error: "receiver answered 503"}))
	rec := get(t, q, "acme", r.ID)
	if rec.CallbackState != queue.CallbackPending || rec.CallbackError != "receiver answered 503" {
		t.Errorf("Get after a failed attempt: state %q error %q; want pending with the error", rec.CallbackState, rec.CallbackError)
	}
	noCallbacks(t, q, "before the retry time")
	cb2 := claimCallback(t, q, 10*time.Second)
	if cb2.ID != r.ID || cb2.Attempt != 2 {
		t.Errorf("retried callback = %s attempt %d, want %s attempt 2", cb2.ID, cb2.Attempt, r.ID)
	}
	check(t, "SettleCallback", q.SettleCallback(ctx(t), cb2.ID, cb2.LeaseToken, queue.CallbackOutcome{Delivered: true}))
	if rec := get(t, q, "acme", r.ID); rec.CallbackState != queue.CallbackDelivered || rec.CallbackAttempts != 2 {
		t.Errorf("Get after delivery: state %q attempts %d; want delivered after 2", rec.CallbackState, rec.CallbackAttempts)
	}
	time.Sleep(400 * time.Millisecond)
	noCallbacks(t, q, "after delivery")

	g := Request(c, "acme", "iris")
	g.Callback = "https://hooks.example/gone"
	enqueue(t, q, g)
	complete(t, q, claimWithin(t, q, "iris", time.Minute, time.Second), result("answer"))
	cb3 := claimCallback(t, q, 5*time.Second)
	check(t, "SettleCallback", q.SettleCallback(ctx(t), cb3.ID, cb3.LeaseToken, queue.CallbackOutcome{Error: "gave up"}))
	if rec := get(t, q, "acme", g.ID); rec.CallbackState != queue.CallbackFailed {
		t.Errorf("Get after giving up: state %q, want failed", rec.CallbackState)
	}
	noCallbacks(t, q, "after giving up")
}
