package natsq_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/queue/natsq"
	"github.com/ebb-ml/ebb/internal/queue/queuetest"
)

// startServer runs a real nats-server in the test process, with JetStream
// on a temporary directory, on a random loopback port; it is shut down at
// cleanup.
func startServer(t testing.TB) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func connect(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, o queuetest.Options) queuetest.Harness {
		s := startServer(t)
		q, err := natsq.Open(t.Context(), connect(t, s), natsq.Options{
			MaxDepth: o.MaxDepth, Now: o.Clock.Now, Timeout: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		return queuetest.Harness{Queue: q, Down: func(*testing.T) { s.Shutdown() }}
	})
}

// TestEnqueueTooLarge: a body over the server's max_payload is refused
// with queue.ErrTooLarge (the gateway's 413, which names --async-payloads),
// and nothing is left of it.
func TestEnqueueTooLarge(t *testing.T) {
	s := startServer(t)
	q, err := natsq.Open(t.Context(), connect(t, s), natsq.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := queue.Request{ID: queue.NewID(), Tenant: "t", Deployment: "d", Body: make([]byte, 2<<20),
		Deadline: time.Now().Add(time.Hour), ResultTTL: time.Hour}
	err = q.Enqueue(t.Context(), r)
	if !errors.Is(err, queue.ErrTooLarge) {
		t.Fatalf("enqueue of a 2 MiB body: %v, want queue.ErrTooLarge", err)
	}
	if _, err := q.Get(t.Context(), "t", r.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("the refused request's record: %v, want not found", err)
	}
}

// queueWithOne opens a queue on a new server and enqueues one request of
// tenant acme to deployment iris.
func queueWithOne(t *testing.T) (*natsq.Queue, queue.Request) {
	t.Helper()
	q, err := natsq.Open(t.Context(), connect(t, startServer(t)), natsq.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := queue.Request{ID: queue.NewID(), Tenant: "acme", Deployment: "iris", Body: []byte("x"),
		Deadline: time.Now().Add(time.Hour), ResultTTL: time.Hour}
	if err := q.Enqueue(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	return q, r
}

// TestWildcardIDs: an id is a subject token in the request stream; one
// with NATS's wildcards or separators names no request, and leaves the
// tenant's requests as they were.
func TestWildcardIDs(t *testing.T) {
	q, r := queueWithOne(t)
	for _, id := range []string{"*", ">", "a.b", r.ID[:4] + "*", "", "a b"} {
		if _, err := q.Get(t.Context(), "acme", id); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Get(acme, %q) = %v, want ErrNotFound", id, err)
		}
		if err := q.Cancel(t.Context(), "acme", id); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Cancel(acme, %q) = %v, want ErrNotFound", id, err)
		}
		if _, err := q.Complete(t.Context(), id, "", queue.Result{Status: 200}); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("Complete(%q) = %v, want ErrNotFound", id, err)
		}
		if err := q.Enqueue(t.Context(), queue.Request{ID: id, Tenant: "acme", Deployment: "iris"}); err == nil {
			t.Errorf("Enqueue of id %q: stored, want an error", id)
		}
	}
	rec, err := q.Get(t.Context(), "acme", r.ID)
	if err != nil || rec.State != queue.Pending {
		t.Errorf("the request after those: %+v, %v; want pending", rec, err)
	}
	if n, err := q.Depth(t.Context(), "iris"); err != nil || n != 1 {
		t.Errorf("Depth(iris) = %d, %v; want 1", n, err)
	}
}

// TestRedeliveryOfFinished: a completion whose acknowledgement never
// reached the server (its process died right after storing the result)
// leaves the message to be delivered again; Get answers with the result
// meanwhile, and that delivery finds the result and is acknowledged, not
// run.
func TestRedeliveryOfFinished(t *testing.T) {
	q, r := queueWithOne(t)
	rs, err := q.Claim(t.Context(), "iris", 1, 300*time.Millisecond)
	if err != nil || len(rs) != 1 {
		t.Fatalf("Claim = %d, %v; want 1", len(rs), err)
	}
	// The lease token without its ack subject: Complete stores the result
	// and sends no acknowledgement.
	k, attempt, _ := strings.Cut(rs[0].LeaseToken, " ")
	attempt, _, _ = strings.Cut(attempt, " ")
	stored, err := q.Complete(t.Context(), r.ID, k+" "+attempt+" ", queue.Result{Status: 200, Body: []byte("first")})
	if err != nil || !stored {
		t.Fatalf("Complete = %v, %v; want stored", stored, err)
	}
	// Its message is still in the stream, unacknowledged; a read finds
	// the result all the same, from the first.
	if n, err := q.Depth(t.Context(), "iris"); err != nil || n != 1 {
		t.Fatalf("Depth before the redelivery = %d, %v; want 1 (the message left)", n, err)
	}
	if rec, err := q.Get(t.Context(), "acme", r.ID); err != nil || rec.State != queue.Done || string(rec.Result.Body) != "first" {
		t.Fatalf("Get before the redelivery = %+v, %v; want the first result", rec, err)
	}
	time.Sleep(500 * time.Millisecond) // the lease expires
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		rs, err := q.Claim(t.Context(), "iris", 1, time.Minute)
		if err != nil || len(rs) != 0 {
			t.Fatalf("Claim after the lease = %d requests, %v; want none (it has its result)", len(rs), err)
		}
		if n, err := q.Depth(t.Context(), "iris"); err == nil && n == 0 {
			rec, err := q.Get(t.Context(), "acme", r.ID)
			if err != nil || rec.State != queue.Done || string(rec.Result.Body) != "first" {
				t.Fatalf("Get = %+v, %v; want the first result", rec, err)
			}
			return
		}
	}
	t.Fatal("the message of the finished request was not acknowledged")
}

// TestGetCompletedBetweenReads: a request completed, and its message
// acknowledged and removed, after Get found no outcome but before it read
// the message is answered with its result, not "not found".
func TestGetCompletedBetweenReads(t *testing.T) {
	q, r := queueWithOne(t)
	rs, err := q.Claim(t.Context(), "iris", 1, time.Minute)
	if err != nil || len(rs) != 1 {
		t.Fatalf("Claim = %d, %v; want 1", len(rs), err)
	}
	natsq.SetBetweenReads(func() {
		natsq.SetBetweenReads(nil)
		if stored, err := q.Complete(t.Context(), r.ID, rs[0].LeaseToken, queue.Result{Status: 200, Body: []byte("done")}); err != nil || !stored {
			t.Errorf("Complete = %v, %v; want stored", stored, err)
		}
		// The acknowledgement is not waited for: wait until the
		// message is gone, as it is when the race bites.
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if n, err := q.Depth(t.Context(), "iris"); err == nil && n == 0 {
				return
			}
		}
		t.Error("the completed request's message was not removed")
	})
	t.Cleanup(func() { natsq.SetBetweenReads(nil) })
	rec, err := q.Get(t.Context(), "acme", r.ID)
	if err != nil || rec.State != queue.Done || string(rec.Result.Body) != "done" {
		t.Fatalf("Get = %+v, %v; want the result stored between its reads", rec, err)
	}
}

// TestOlderLayout: a request stream of an earlier layout that still holds
// requests is refused with what to do, not updated (which would delete
// all but one request of each deployment).
func TestOlderLayout(t *testing.T) {
	s := startServer(t)
	nc := connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "EBB_ASYNC", Subjects: []string{"ebb.async.q.>"},
		Retention: jetstream.WorkQueuePolicy, MaxMsgsPerSubject: 100_000}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := js.Publish(t.Context(), "ebb.async.q.iris.1", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	_, err = natsq.Open(t.Context(), nc, natsq.Options{Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "2 async requests in an older layout") {
		t.Fatalf("Open over an older stream with requests = %v, want refused", err)
	}
	info, err := js.Stream(t.Context(), "EBB_ASYNC")
	if err != nil || info.CachedInfo().State.Msgs != 2 {
		t.Errorf("the older stream after Open: %v, want its 2 requests kept", err)
	}
}
