package natsq_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/queue/natsq"
	"github.com/ebb-ml/ebb/internal/queue/queuetest"
)

// startServer runs a real nats-server in the test process, with JetStream
// on a temporary directory, on a random loopback port; it is shut down at
// cleanup.
func startServer(t *testing.T) *server.Server {
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

func connect(t *testing.T, s *server.Server) *nats.Conn {
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
