package process_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/process"
)

// handleFor is a handle of a replica whose log is at path, as Start
// records it.
func handleFor(t *testing.T, id, path string) replica.Handle {
	t.Helper()
	st, err := json.Marshal(map[string]any{"pid": 1, "logPath": path})
	if err != nil {
		t.Fatal(err)
	}
	return replica.Handle{Spec: replica.Spec{ID: id}, Backend: process.Name, State: st}
}

func readAll(t *testing.T, rc io.ReadCloser) string {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read logs: %v", err)
	}
	return string(b)
}

func TestLogsTail(t *testing.T) {
	b, err := process.New(process.Options{LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// More than one 32 KiB chunk, so tails cross chunk boundaries.
	var long strings.Builder
	for i := range 3000 {
		long.WriteString(strings.Repeat("x", 20) + string(rune('a'+i%26)) + "\n")
	}
	tests := []struct {
		name    string
		content string
		tail    int64
		want    string
	}{
		{name: "whole log", content: "a\nb\nc\n", tail: 0, want: "a\nb\nc\n"},
		{name: "last two", content: "a\nb\nc\n", tail: 2, want: "b\nc\n"},
		{name: "more than there are", content: "a\nb\n", tail: 10, want: "a\nb\n"},
		{name: "unfinished last line", content: "a\nb\nc", tail: 2, want: "b\nc"},
		{name: "empty lines count", content: "a\n\n\nb\n", tail: 3, want: "\n\nb\n"},
		{name: "empty log", content: "", tail: 5, want: ""},
		{name: "across chunks", content: long.String(), tail: 2000, want: strings.Join(strings.SplitAfter(long.String(), "\n")[1000:], "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "r.log")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			rc, err := b.Logs(context.Background(), handleFor(t, "r", path), replica.LogOptions{TailLines: tt.tail})
			if err != nil {
				t.Fatalf("Logs: %v", err)
			}
			if diff := cmp.Diff(tt.want, readAll(t, rc)); diff != "" {
				t.Errorf("logs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogsNotFound(t *testing.T) {
	b, err := process.New(process.Options{LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]replica.Handle{
		"no state":      {Spec: replica.Spec{ID: "r"}},
		"log file gone": handleFor(t, "r", filepath.Join(t.TempDir(), "gone.log")),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := b.Logs(context.Background(), h, replica.LogOptions{})
			if !errors.Is(err, replica.ErrNotFound) {
				t.Errorf("Logs error = %v, want replica.ErrNotFound", err)
			}
		})
	}
}

// TestLogsFollow follows a real process: the stream gets what it writes
// while it runs and ends once it exits.
func TestLogsFollow(t *testing.T) {
	dir := t.TempDir()
	gate := filepath.Join(dir, "go-on")
	// The replica prints two lines, waits for the test, prints a third
	// and exits. The replica flags the backend appends land in $0...
	script := `echo one; echo two; while [ ! -e ` + gate + ` ]; do sleep 0.02; done; echo three`
	b, err := process.New(process.Options{Command: []string{"sh", "-c", script}, LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := b.Start(ctx, replica.Spec{ID: "follow-1", Deployment: "d", Model: "m", Engine: "echo"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = b.Stop(context.Background(), h) })

	rc, err := b.Logs(ctx, h, replica.LogOptions{Follow: true, TailLines: 1})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	defer rc.Close()
	// Until "two" is written, the tail may hold "one" or nothing; read
	// until "two" arrives.
	var got strings.Builder
	buf := make([]byte, 64)
	for !strings.Contains(got.String(), "two\n") {
		n, err := rc.Read(buf)
		if err != nil {
			t.Fatalf("read while following: %v (got %q)", err, got.String())
		}
		got.Write(buf[:n])
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rc) // ends once the process exited
	if err != nil {
		t.Fatalf("read to the end: %v", err)
	}
	if !strings.HasSuffix(got.String(), "two\n") || string(rest) != "three\n" {
		t.Errorf("followed %q then %q, want ...two\\n then three\\n", got.String(), rest)
	}
}

// TestLogsFollowCancel: a follow ends when its context does, although the
// replica still runs.
func TestLogsFollowCancel(t *testing.T) {
	b, err := process.New(process.Options{Command: []string{"sh", "-c", "echo up; exec sleep 60"}, LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h, err := b.Start(context.Background(), replica.Spec{ID: "cancel-1", Deployment: "d", Model: "m", Engine: "echo"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = b.Stop(ctx, h)
	})
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := b.Logs(ctx, h, replica.LogOptions{Follow: true})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	defer rc.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(rc)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("follow ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end after its context was cancelled")
	}
}
