package queue_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/queue"
)

// TestWaiters: Done wakes every waiter of its id with the result it is
// given (or none), and no other id's; a withdrawn waiter is forgotten.
func TestWaiters(t *testing.T) {
	var ws queue.Waiters
	a1, stopA1 := ws.Wait("a")
	a2, stopA2 := ws.Wait("a")
	b, stopB := ws.Wait("b")
	c, stopC := ws.Wait("c")
	defer stopA1()
	defer stopA2()
	defer stopB()
	if ws.Len() != 3 {
		t.Fatalf("Len = %d, want 3 ids", ws.Len())
	}
	stopC()
	if ws.Len() != 2 {
		t.Fatalf("Len = %d after withdrawing c, want 2", ws.Len())
	}
	if a1.Result() != nil {
		t.Fatal("a result before Done")
	}
	res := &queue.Result{Status: 200, Body: []byte("ok")}
	ws.Done("a", res)
	for i, w := range []*queue.Waiter{a1, a2} {
		select {
		case <-w.Done():
		default:
			t.Fatalf("waiter %d of a not woken", i)
		}
		if w.Result() != res {
			t.Errorf("waiter %d of a got %v, want the result given", i, w.Result())
		}
	}
	select {
	case <-b.Done():
		t.Fatal("b woken by a's result")
	default:
	}
	ws.Done("b", nil) // stored elsewhere: read the queue
	<-b.Done()
	if b.Result() != nil {
		t.Errorf("b got %v from a Done without a result", b.Result())
	}
	select {
	case <-c.Done():
		t.Error("a withdrawn waiter was woken")
	default:
	}
	var none *queue.Waiter
	if none.Result() != nil {
		t.Error("a nil Waiter has a result")
	}
}

// TestWaitersKnown: Stored wakes a waiter as Done does and remembers the
// record for its own tenant only, until knownFor (10 s) passes or the
// record would expire, whichever is first; a result too large, one with
// no TTL, and the oldest beyond the entry bound are not remembered.
func TestWaitersKnown(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	req := func(id string, ttl time.Duration) *queue.Request {
		return &queue.Request{ID: id, Tenant: "acme", Deployment: "m", Version: "2", ResultTTL: ttl, CreatedAt: t0, Attempt: 1}
	}
	small := func() *queue.Result {
		return &queue.Result{Status: 200, ContentType: "application/json", Body: []byte(`{"ok":1}`)}
	}
	tests := []struct {
		name   string
		req    *queue.Request
		res    *queue.Result
		tenant string
		after  time.Duration
		want   bool
	}{
		{name: "own tenant", req: req("a", time.Hour), res: small(), tenant: "acme", want: true},
		{name: "another tenant", req: req("a", time.Hour), res: small(), tenant: "other"},
		{name: "just before knownFor", req: req("a", time.Hour), res: small(), tenant: "acme", after: 10*time.Second - time.Millisecond, want: true},
		{name: "knownFor passed", req: req("a", time.Hour), res: small(), tenant: "acme", after: 10 * time.Second},
		{name: "record expired first", req: req("a", 2*time.Second), res: small(), tenant: "acme", after: 2 * time.Second},
		{name: "no TTL", req: req("a", 0), res: small(), tenant: "acme"},
		{name: "large result", req: req("a", time.Hour), res: &queue.Result{Status: 200, Body: make([]byte, 1<<20)}, tenant: "acme"},
		{name: "spilled without its body", req: req("a", time.Hour), res: &queue.Result{Status: 200, BodyRef: "s3://b/k"}, tenant: "acme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := t0
			ws := queue.Waiters{Now: func() time.Time { return now }}
			w, stop := ws.Wait(tt.req.ID)
			defer stop()
			ws.Stored(tt.req, tt.res)
			if w.Result() != tt.res {
				t.Fatalf("the waiter got %v, want the stored result", w.Result())
			}
			now = now.Add(tt.after)
			rec, ok := ws.Known(tt.tenant, tt.req.ID)
			if ok != tt.want {
				t.Fatalf("Known = %v, want %v", ok, tt.want)
			}
			if !ok {
				return
			}
			want := queue.Record{ID: "a", Tenant: "acme", Deployment: "m", Version: "2", State: queue.Done, CreatedAt: t0,
				ExpiresAt: t0.Add(time.Hour), Attempts: 1, Result: tt.res}
			if diff := cmp.Diff(want, rec); diff != "" {
				t.Errorf("Known record (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("bounded", func(t *testing.T) {
		var ws queue.Waiters
		const n = 5000 // beyond the 4096 entries kept
		for i := range n {
			ws.Stored(req(strconv.Itoa(i), time.Hour), small())
		}
		if _, ok := ws.Known("acme", "0"); ok {
			t.Error("the oldest result is still remembered beyond the bound")
		}
		if _, ok := ws.Known("acme", strconv.Itoa(n-1)); !ok {
			t.Error("the newest result is not remembered")
		}
	})
}

// TestWaitersAccepted: a request Accepted is known pending to its tenant
// until its result replaces it, or a wake without a result forgets it;
// results are never replaced.
func TestWaitersAccepted(t *testing.T) {
	var w queue.Waiters
	r := &queue.Request{ID: queue.NewID(), Tenant: "acme", Deployment: "m", ResultTTL: time.Hour,
		CreatedAt: time.Now(), Deadline: time.Now().Add(time.Minute)}
	w.Accepted(r)
	if rec, ok := w.Known("acme", r.ID); !ok || rec.State != queue.Pending || rec.Deployment != "m" {
		t.Fatalf("Known after Accepted = %+v, %v; want pending", rec, ok)
	}
	if _, ok := w.Known("globex", r.ID); ok {
		t.Error("another tenant knows the request")
	}
	w.Stored(r, &queue.Result{Status: 200, Body: []byte("x")})
	if rec, ok := w.Known("acme", r.ID); !ok || rec.State != queue.Done || string(rec.Result.Body) != "x" {
		t.Errorf("Known after Stored = %+v, %v; want done with the result", rec, ok)
	}
	w.Accepted(r) // as a duplicate would: the result stays
	w.Done(r.ID, nil)
	if rec, ok := w.Known("acme", r.ID); !ok || rec.State != queue.Done {
		t.Errorf("Known after Accepted again and Done = %+v, %v; want the result kept", rec, ok)
	}

	// A wake without a result forgets a pending record.
	p := &queue.Request{ID: queue.NewID(), Tenant: "acme", ResultTTL: time.Hour, Deadline: time.Now().Add(time.Minute)}
	w.Accepted(p)
	w.Done(p.ID, nil)
	if _, ok := w.Known("acme", p.ID); ok {
		t.Error("a pending record is known after a wake without a result")
	}
	// No result TTL: nothing to remember.
	n := &queue.Request{ID: queue.NewID(), Tenant: "acme", Deadline: time.Now().Add(time.Minute)}
	w.Accepted(n)
	if _, ok := w.Known("acme", n.ID); ok {
		t.Error("a request without a result TTL is known")
	}
}
