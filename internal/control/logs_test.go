package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
)

// logBackend is fakeBackend with logs: each replica's output names it.
type logBackend struct {
	*fakeBackend
	opts []replica.LogOptions
}

func (b *logBackend) Logs(_ context.Context, h replica.Handle, opts replica.LogOptions) (io.ReadCloser, error) {
	if b.get(h.Spec.ID) == nil {
		return nil, replica.ErrNotFound
	}
	b.mu.Lock()
	b.opts = append(b.opts, opts)
	b.mu.Unlock()
	return io.NopCloser(strings.NewReader("output of " + h.Spec.ID + "\n")), nil
}

// tickUntil ticks until cond holds: a tick the loop's ticker was not yet
// made for is lost.
func (f *fixture) tickUntil(name, what string, cond func(serving.Status) bool) serving.Status {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(f.ctl.Status(name)) {
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: %s not reached; status %+v", name, what, f.ctl.Status(name))
		}
		f.tick()
		time.Sleep(5 * time.Millisecond)
	}
	return f.ctl.Status(name)
}

func TestLogs(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 1, MaxReplicas: 1}))
	f.stop()
	lb := &logBackend{fakeBackend: f.backend}
	f.ctl = New(f.store, lb, f.routes, Options{Clock: f.clock, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.ctl.Run(ctx) }()
	<-f.ctl.Loaded()
	id := f.tickUntil("m", "1 ready", ready(1)).ReplicaStatuses[0].ID

	rc, err := f.ctl.Logs(context.Background(), "m", id, replica.LogOptions{Follow: true, TailLines: 5})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "output of "+id+"\n" {
		t.Errorf("Logs read %q", b)
	}
	if want := (replica.LogOptions{Follow: true, TailLines: 5}); len(lb.opts) != 1 || lb.opts[0] != want {
		t.Errorf("backend got options %+v, want %+v", lb.opts, want)
	}
	for _, tt := range []struct{ deployment, id string }{
		{"m", "m-nope"},     // no such replica
		{"other", id},       // another deployment's replica
		{"missing", "m-xy"}, // no such deployment
	} {
		if _, err := f.ctl.Logs(context.Background(), tt.deployment, tt.id, replica.LogOptions{}); !errors.Is(err, replica.ErrNotFound) {
			t.Errorf("Logs(%s, %s) = %v, want replica.ErrNotFound", tt.deployment, tt.id, err)
		}
	}
}

func TestLogsUnsupported(t *testing.T) {
	f := newFixture(t) // fakeBackend is no replica.Logger
	if _, err := f.ctl.Logs(context.Background(), "m", "m-1", replica.LogOptions{}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Logs over a backend without logs = %v, want errors.ErrUnsupported", err)
	}
}
