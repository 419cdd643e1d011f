package natsq_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

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
