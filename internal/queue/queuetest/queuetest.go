// Package queuetest is the conformance suite every queue.Queue passes:
// store/sqlstore's on SQLite and PostgreSQL, and queue/natsq on a real
// embedded nats-server. It checks the contract of package queue: stored
// before acknowledged, leases that expire and are claimed again, the first
// completion wins, other tenants see nothing, records expire, and a
// thousand requests worked by concurrent workers that crash end with
// exactly one result each.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ebb-ml/ebb/internal/queue"
)

// Harness is one new, empty queue under test.
type Harness struct {
	Queue queue.Queue
	// Down makes the queue's store unreachable for the rest of the test;
	// nil skips the check.
	Down func(t *testing.T)
}

// Options are how the suite wants a queue opened.
type Options struct {
	// Clock is the queue's clock.
	Clock *Clock
	// MaxDepth bounds the pending requests of one deployment; 0 leaves
	// the queue's default.
	MaxDepth int
}

// Clock is the suite's clock: real time plus an offset the suite advances
// to pass TTLs without waiting. Leases and retry delays run in real time,
// as a server that keeps them (NATS) keeps them.
type Clock struct{ off atomic.Int64 }

// Now returns the clock's time, in UTC to the microsecond.
func (c *Clock) Now() time.Time {
	return time.Now().Add(time.Duration(c.off.Load())).UTC().Truncate(time.Microsecond)
}

// Advance moves the clock d ahead.
func (c *Clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// Open returns a new harness as o says.
type Open func(t *testing.T, o Options) Harness

// fullDepth is the MaxDepth of the Full case.
const fullDepth = 5

// Run runs the suite, each case on a queue of its own.
func Run(t *testing.T, open Open) {
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness, c *Clock)
	}{
		{"EnqueueClaimComplete", testEnqueueClaimComplete},
		{"Priority", testPriority},
		{"LeaseExpires", testLeaseExpires},
		{"Release", testRelease},
		{"DoubleCompletion", testDoubleCompletion},
		{"LateCompletion", testLateCompletion},
		{"OtherTenant", testOtherTenant},
		{"TTL", testTTL},
		{"Cancel", testCancel},
		{"List", testList},
		{"Callbacks", testCallbacks},
		{"Full", testFull},
		{"CrashedWorkers", testCrashedWorkers},
		{"StoreDown", testStoreDown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Clock: &Clock{}}
			if tc.name == "Full" {
				o.MaxDepth = fullDepth
			}
			tc.fn(t, open(t, o), o.Clock)
		})
	}
}

// Request returns a request to deployment as the gateway stores one.
func Request(c *Clock, tenant, deployment string) queue.Request {
	now := c.Now()
	return queue.Request{
		ID: queue.NewID(), Tenant: tenant, Deployment: deployment, Version: "2",
		ContentType: "application/octet-stream", HeaderLength: 42,
		Header:    map[string]string{"X-Region": "eu"},
		Body:      []byte(`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}` + "\x00\x01binary"),
		CreatedAt: now, Deadline: now.Add(time.Hour), ResultTTL: 24 * time.Hour,
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func enqueue(t *testing.T, q queue.Queue, r queue.Request) {
	t.Helper()
	if err := q.Enqueue(ctx(t), r); err != nil {
		t.Fatalf("Enqueue(%s): %v", r.ID, err)
	}
}

func claim(t *testing.T, q queue.Queue, dep string, n int, lease time.Duration) []*queue.Request {
	t.Helper()
	rs, err := q.Claim(ctx(t), dep, n, lease)
	if err != nil {
		t.Fatalf("Claim(%s, %d): %v", dep, n, err)
	}
	return rs
}

// claimWithin claims until one request comes back or d passes.
func claimWithin(t *testing.T, q queue.Queue, dep string, lease, d time.Duration) *queue.Request {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if rs := claim(t, q, dep, 1, lease); len(rs) > 0 {
			return rs[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no request of %s could be claimed within %v", dep, d)
	return nil
}

func complete(t *testing.T, q queue.Queue, r *queue.Request, res queue.Result) bool {
	t.Helper()
	stored, err := q.Complete(ctx(t), r.ID, r.LeaseToken, res)
	if err != nil {
		t.Fatalf("Complete(%s): %v", r.ID, err)
	}
	return stored
}

func get(t *testing.T, q queue.Queue, tenant, id string) queue.Record {
	t.Helper()
	rec, err := q.Get(ctx(t), tenant, id)
	if err != nil {
		t.Fatalf("Get(%q, %s): %v", tenant, id, err)
	}
	return rec
}

func result(body string) queue.Result {
	return queue.Result{Status: 200, ContentType: "application/json", HeaderLength: 7, Body: []byte(body)}
}

var requestOpts = []cmp.Option{
	cmpopts.IgnoreFields(queue.Request{}, "Attempt", "LeaseToken"),
	cmpopts.EquateEmpty(),
}

var resultOpts = []cmp.Option{cmpopts.IgnoreFields(queue.Result{}, "CompletedAt"), cmpopts.EquateEmpty()}

func testEnqueueClaimComplete(t *testing.T, h Harness, c *Clock) {
	q := h.Queue
	r := Request(c, "acme", "iris")
	enqueue(t, q, r)
	rec := get(t, q, "acme", r.ID)
	if rec.State != queue.Pending || rec.Result != nil || rec.Deployment != "iris" || rec.Tenant != "acme" {
		t.Errorf("Get of a new request = %+v, want pending without a result", rec)
	}
	if n, err := q.Depth(ctx(t), "iris"); err != nil || n != 1 {
		t.Errorf("Depth(iris) = %d, %v; want 1", n, err)
	}
	if d, err := q.Depths(ctx(t)); err != nil || !cmp.Equal(d, map[string]int{"iris": 1}) {
		t.Errorf("Depths() = %v, %v; want iris: 1", d, err)
	}
	if rs := claim(t, q, "other", 5, time.Minute); len(rs) != 0 {
		t.Errorf("Claim(other) = %d requests, want none", len(rs))
	}
	rs := claim(t, q, "iris", 5, time.Minute)
	if len(rs) != 1 {
		t.Fatalf("Claim(iris) = %d requests, want 1", len(rs))
	}
	got := rs[0]
	if diff := cmp.Diff(r, *got, requestOpts...); diff != "" {
		t.Errorf("claimed request differs (-enqueued +claimed):\n%s", diff)
	}
	if got.Attempt != 1 || got.LeaseToken == "" {
		t.Errorf("claimed Attempt %d, LeaseToken %q; want 1 and a token", got.Attempt, got.LeaseToken)
	}
	if rs := claim(t, q, "iris", 5, time.Minute); len(rs) != 0 {
		t.Errorf("Claim(iris) while leased = %d requests, want none", len(rs))
	}
	if n, err := q.Depth(ctx(t), "iris"); err != nil || n != 1 {
		t.Errorf("Depth(iris) while leased = %d, %v; want 1", n, err)
	}
	want := result(`{"outputs":[]}`)
	if !complete(t, q, got, want) {
		t.Errorf("Complete = not stored, want stored")
	}
	rec = get(t, q, "acme", r.ID)
	if rec.State != queue.Done || rec.Result == nil {
		t.Fatalf("Get after Complete = %+v, want done with a result", rec)
	}
	if diff := cmp.Diff(want, *rec.Result, resultOpts...); diff != "" {
		t.Errorf("stored result differs (-completed +got):\n%s", diff)
	}
	if rec.Result.CompletedAt.IsZero() || rec.Attempts != 1 {
		t.Errorf("Get after Complete: CompletedAt %v, Attempts %d; want a time and 1", rec.Result.CompletedAt, rec.Attempts)
	}
	waitDepth(t, q, "iris", 0)
	if rs := claim(t, q, "iris", 5, time.Minute); len(rs) != 0 {
		t.Errorf("Claim(iris) after Complete = %d requests, want none", len(rs))
	}
	if _, err := q.Complete(ctx(t), queue.NewID(), "x", want); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Complete of an unknown id = %v, want ErrNotFound", err)
	}
}

// waitDepth waits a few seconds for the deployment's depth to be want
// (NATS drops a completed request's message when it is acknowledged).
func waitDepth(t *testing.T, q queue.Queue, dep string, want int) {
	t.Helper()
	var n int
	var err error
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if n, err = q.Depth(ctx(t), dep); err == nil && n == want {
			return
		}
	}
	t.Errorf("Depth(%s) = %d, %v; want %d", dep, n, err, want)
}

func testPriority(t *testing.T, h Harness, c *Clock) {
	q := h.Queue
	var ids []string
	for _, p := range []int{queue.PriorityBatch, queue.PriorityInteractive, queue.PriorityBatch, queue.PriorityInteractive} {
		r := Request(c, "", "iris")
		r.Priority = p
		enqueue(t, q, r)
		ids = append(ids, r.ID)
		time.Sleep(2 * time.Millisecond) // distinct creation order
	}
	var got []string
	for len(got) < 4 {
		rs := claim(t, q, "iris", 4-len(got), time.Minute)
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			got = append(got, r.ID)
		}
	}
	want := []string{ids[1], ids[3], ids[0], ids[2]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claim order (-want +got): interactive first, then oldest first:\n%s", diff)
	}
}

func testLeaseExpires(t *testing.T, h Harness, c *Clock) {
	q := h.Queue
	r := Request(c, "", "iris")
	enqueue(t, q, r)
	first := claimWithin(t, q, "iris", 300*time.Millisecond, time.Second)
	if rs := claim(t, q, "iris", 1, time.Minute); len(rs) != 0 {
		t.Fatalf("claimed again while the lease holds")
	}
	// The worker that held it "crashed": its lease expires.
	second := claimWithin(t, q, "iris", time.Minute, 10*time.Second)
	if second.ID != r.ID || second.Attempt != 2 || second.LeaseToken == first.LeaseToken {
		t.Errorf("reclaimed %s attempt %d token %q; want %s attempt 2 with a new token (first %q)",
			second.ID, second.Attempt, second.LeaseToken, r.ID, first.LeaseToken)
	}
	if !complete(t, q, second, result("ok")) {
		t.Errorf("Complete of the reclaimed request = not stored")
	}
	if rec := get(t, q, "", r.ID); rec.Attempts != 2 {
		t.Errorf("Get: Attempts = %d, want 2", rec.Attempts)
	}
}

func testRelease(t *testing.T, h Harness, c *Clock) {
	q := h.Queue
	r := Request(c, "", "iris")
	enqueue(t, q, r)
	first := claimWithin(t, q, "iris", time.Minute, time.Second)
	if err := q.Release(ctx(t), first.ID, first.LeaseToken, c.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if rs := claim(t, q, "iris", 1, time.Minute); len(rs) != 0 {
		t.Errorf("claimed before the release time")
	}
	second := claimWithin(t, q, "iris", time.Minute, 10*time.Second)
	if second.ID != r.ID || second.Attempt != 2 {
		t.Errorf("after Release claimed %s attempt %d, want %s attempt 2", second.ID, second.Attempt, r.ID)
	}
}

func testDoubleCompletion(t *testing.T, h Harness, c *Clock) {
	q := h.Queue
	r := Request(c, "", "iris")
	enqueue(t, q, r)
	got := claimWithin(t, q, "iris", time.Minute, time.Second)
	if !complete(t, q, got, result("first")) {
		t.Fatalf("first Complete = not stored")
	}
	if complete(t, q, got, result("second")) {
		t.Errorf("second Complete = stored, want a no-op")
	}
	if rec := get(t, q, "", r.ID); rec.Result == nil || string(rec.Result.Body) != "first" {
		t.Errorf("result after two completions = %+v, want the first", rec.Result)
	}
}

// testLateCompletion: a worker whose lease expired finishes after the
// worker that reclaimed the request; the first to finish wins.
func testLateCompletion(t *testing.T, h Harness, c *Clock) {
	q := h.Queue
	r := Request(c, "", "iris")
	enqueue(t, q, r)
	slow := claimWithin(t, q, "iris", 300*time.Millisecond, time.Second)
	fast := claimWithin(t, q, "iris", time.Minute, 10*time.Second)
	if !complete(t, q, fast, result("fast")) {
		t.Fatalf("Complete by the reclaiming worker = not stored")
	}
	if complete(t, q, slow, result("slow")) {
		t.Errorf("Complete by the worker whose lease expired, second = stored, want a no-op")
	}
	for range 3 {
		if rec := get(t, q, "", r.ID); rec.Result == nil || string(rec.Result.Body) != "fast" {
			t.Fatalf("result = %+v, want the first completion's", rec.Result)
		}
	}
}

func testOtherTenant(t *testing.T, h Harness, c *Clock) {
	q := h.Queue
	r := Request(c, "acme", "iris")
	enqueue(t, q, r)
	for _, tc := range []struct{ tenant, id string }{
		{"globex", r.ID}, {"", r.ID}, {"acme", queue.NewID()}, {"globex", queue.NewID()},
	} {
		if _, err := q.Get(ctx(t), tc.tenant, tc.id); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Get(%q, %s) = %v, want ErrNotFound", tc.tenant, tc.id, err)
		}
		if err := q.Cancel(ctx(t), tc.tenant, tc.id); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Cancel(%q, %s) = %v, want ErrNotFound", tc.tenant, tc.id, err)
		}
	}
	if l, err := q.List(ctx(t), "globex", queue.ListOptions{}); err != nil || len(l) != 0 {
		t.Errorf("List(globex) = %v, %v; want none", l, err)
	}
	get(t, q, "acme", r.ID) // still there for its tenant
}

func testTTL(t *testing.T, h Harness, c *Clock) {
	q := h.Queue
	done := Request(c, "", "iris")
	done.ResultTTL = time.Hour
	done.BodyRef, done.Body = "file:///blobs/request", nil
	enqueue(t, q, done)
	pending := Request(c, "", "iris")
	pending.Deadline, pending.ResultTTL = c.Now().Add(time.Hour), 2*time.Hour // expires in 3h
	enqueue(t, q, pending)
	got := claimWithin(t, q, "iris", time.Minute, time.Second)
	if got.ID != done.ID {
		t.Fatalf("claimed %s, want %s", got.ID, done.ID)
	}
	res := result("")
	res.Body, res.BodyRef = nil, "file:///blobs/result"
	complete(t, q, got, res)
	c.Advance(59 * time.Minute)
	get(t, q, "", done.ID)
	if sw, err := q.DeleteExpired(ctx(t), c.Now()); err != nil || sw.Records != 0 {
		t.Errorf("DeleteExpired before the TTL = %+v, %v; want nothing", sw, err)
	}
	c.Advance(2 * time.Minute)
	if _, err := q.Get(ctx(t), "", done.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Get past the result TTL = %v, want ErrNotFound", err)
	}
	sw, err := q.DeleteExpired(ctx(t), c.Now())
	if err != nil || sw.Records != 1 {
		t.Fatalf("DeleteExpired past the TTL = %+v, %v; want 1 record", sw, err)
	}
	if diff := cmp.Diff([]string{"file:///blobs/request", "file:///blobs/result"}, sw.Blobs, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("DeleteExpired blobs (-want +got):\n%s", diff)
	}
	get(t, q, "", pending.ID)
	c.Advance(3 * time.Hour)
	if _, err := q.Get(ctx(t), "", pending.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Get of a pending request past its deadline and TTL = %v, want ErrNotFound", err)
	}
	if sw, err := q.DeleteExpired(ctx(t), c.Now()); err != nil || sw.Records != 1 {
		t.Errorf("DeleteExpired of the pending request = %+v, %v; want 1 record", sw, err)
	}
}

func testCancel(t *testing.T, h Harness, c *Clock) {
	q := h.Queue
	r := Request(c, "acme", "iris")
	enqueue(t, q, r)
	if err := q.Cancel(ctx(t), "acme", r.ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if rec := get(t, q, "acme", r.ID); rec.State != queue.Cancelled || rec.Result != nil {
		t.Errorf("Get after Cancel = %+v, want cancelled without a result", rec)
	}
	if err := q.Cancel(ctx(t), "acme", r.ID); !errors.Is(err, queue.ErrFinished) {
		t.Errorf("second Cancel = %v, want ErrFinished", err)
	}
	if stored, err := q.Complete(ctx(t), r.ID, "", result("late")); err != nil || stored {
		t.Errorf("Complete of a cancelled request = %v, %v; want not stored", stored, err)
	}
	if rs := claim(t, q, "iris", 1, time.Minute); len(rs) != 0 {
		t.Errorf("claimed a cancelled request")
	}
	waitDepth(t, q, "iris", 0)
	d := Request(c, "acme", "iris")
	enqueue(t, q, d)
	complete(t, q, claimWithin(t, q, "iris", time.Minute, time.Second), result("x"))
	if err := q.Cancel(ctx(t), "acme", d.ID); !errors.Is(err, queue.ErrFinished) {
		t.Errorf("Cancel of a done request = %v, want ErrFinished", err)
	}
}

func testList(t *testing.T, h Harness, c *Clock) {
	q := h.Queue
	var ids []string
	for i, dep := range []string{"iris", "wine", "iris"} {
		r := Request(c, "acme", dep)
		r.CreatedAt = r.CreatedAt.Add(time.Duration(i) * time.Millisecond)
		enqueue(t, q, r)
		ids = append(ids, r.ID)
		time.Sleep(2 * time.Millisecond)
	}
	enqueue(t, q, Request(c, "globex", "iris"))
	complete(t, q, claimWithin(t, q, "wine", time.Minute, time.Second), result("w"))
	for _, tc := range []struct {
		opts queue.ListOptions
		want []string
	}{
		{queue.ListOptions{}, []string{ids[2], ids[1], ids[0]}},
		{queue.ListOptions{Limit: 2}, []string{ids[2], ids[1]}},
		{queue.ListOptions{Deployment: "iris"}, []string{ids[2], ids[0]}},
		{queue.ListOptions{State: queue.Done}, []string{ids[1]}},
		{queue.ListOptions{State: queue.Pending}, []string{ids[2], ids[0]}},
	} {
		l, err := q.List(ctx(t), "acme", tc.opts)
		if err != nil {
			t.Fatalf("List(%+v): %v", tc.opts, err)
		}
		var got []string
		for _, r := range l {
			got = append(got, r.ID)
			if r.Tenant != "acme" {
				t.Errorf("List(acme) returned %s of tenant %q", r.ID, r.Tenant)
			}
			if r.State == queue.Done && (r.Result == nil || r.Result.Status != 200) {
				t.Errorf("List: done %s has result %+v, want its status", r.ID, r.Result)
			}
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("List(%+v) (-want +got):\n%s", tc.opts, diff)
		}
	}
}

func testFull(t *testing.T, h Harness, c *Clock) {
	q := h.Queue
	for range fullDepth {
		enqueue(t, q, Request(c, "", "iris"))
	}
	if err := q.Enqueue(ctx(t), Request(c, "", "iris")); !errors.Is(err, queue.ErrFull) {
		t.Errorf("Enqueue beyond MaxDepth = %v, want ErrFull", err)
	}
	enqueue(t, q, Request(c, "", "wine")) // another deployment has room
	complete(t, q, claimWithin(t, q, "iris", time.Minute, time.Second), result("x"))
	waitDepth(t, q, "iris", fullDepth-1)
	enqueue(t, q, Request(c, "", "iris")) // room again
}

func testStoreDown(t *testing.T, h Harness, c *Clock) {
	if h.Down == nil {
		t.Skip("the harness cannot take its store down")
	}
	q := h.Queue
	enqueue(t, q, Request(c, "", "iris"))
	h.Down(t)
	start := time.Now()
	err := q.Enqueue(ctx(t), Request(c, "", "iris"))
	if !errors.Is(err, queue.ErrUnavailable) {
		t.Fatalf("Enqueue with the store down = %v, want ErrUnavailable", err)
	}
	t.Logf("Enqueue with the store down, after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

// check fails t with the first error of errs.
func check(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Errorf("%s: %w", what, err))
	}
}
