package kube_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/kube"
)

func readLogs(t *testing.T, b *kube.Backend, h replica.Handle, opts replica.LogOptions) string {
	t.Helper()
	rc, err := b.Logs(context.Background(), h, opts)
	if err != nil {
		t.Fatalf("Logs(%+v): %v", opts, err)
	}
	defer rc.Close()
	out, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read logs: %v", err)
	}
	return string(out)
}

// TestLogs reads a replica pod's log through the apiserver (pods/log,
// served by kwok's kubelet server from what the fake kubelet's process
// wrote): whole, tailed, and followed until the replica is stopped.
func TestLogs(t *testing.T) {
	c, ns := setup(t)
	b, err := kube.New(kube.Options{Client: c.Clientset(), Namespace: ns, Image: "ebb:test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := b.Start(ctx, replica.Spec{ID: "logs-1", Deployment: "diabetes", Model: diabetes(t), Engine: "trees"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := b.Ready(ctx, h); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	var all string
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(all, "logs-1") {
		if time.Now().After(deadline) {
			t.Fatalf("the replica's log does not name it: %q", all)
		}
		time.Sleep(50 * time.Millisecond)
		all = readLogs(t, b, h, replica.LogOptions{})
	}
	lines := strings.Split(strings.TrimSuffix(all, "\n"), "\n")
	if got := readLogs(t, b, h, replica.LogOptions{TailLines: 1}); strings.TrimSuffix(got, "\n") != lines[len(lines)-1] {
		t.Errorf("tail 1 = %q, want the last line %q", got, lines[len(lines)-1])
	}

	rc, err := b.Logs(ctx, h, replica.LogOptions{Follow: true, TailLines: 1})
	if err != nil {
		t.Fatalf("Logs follow: %v", err)
	}
	defer rc.Close()
	followed := make(chan string, 1)
	go func() {
		out, _ := io.ReadAll(rc)
		followed <- string(out)
	}()
	time.Sleep(200 * time.Millisecond)
	stopCtx, stopCancel := context.WithTimeout(ctx, 30*time.Second)
	defer stopCancel()
	if err := b.Stop(stopCtx, h); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case out := <-followed:
		// The tail, then what the replica wrote while it drained.
		if !strings.HasPrefix(out, lines[len(lines)-1]) || len(strings.Split(strings.TrimSpace(out), "\n")) < 2 {
			t.Errorf("followed %q; want the last line, then the replica's shutdown", out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a followed log did not end after its replica was stopped")
	}
	if _, err := b.Logs(ctx, h, replica.LogOptions{}); !errors.Is(err, replica.ErrNotFound) {
		t.Errorf("Logs of a stopped replica = %v, want replica.ErrNotFound", err)
	}
}
