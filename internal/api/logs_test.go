package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// fakeLogs serves canned logs, or for a followed replica a pipe the test
// writes to.
type fakeLogs struct {
	mu      sync.Mutex
	logs    map[string]string         // replica → its whole log
	pipes   map[string]*io.PipeWriter // replica → what a follow reads
	asked   []replica.LogOptions
	failAll error
}

func (f *fakeLogs) Logs(ctx context.Context, deployment, id string, opts replica.LogOptions) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAll != nil {
		return nil, f.failAll
	}
	f.asked = append(f.asked, opts)
	l, ok := f.logs[deployment+"/"+id]
	if !ok {
		return nil, fmt.Errorf("replica %s: %w", id, replica.ErrNotFound)
	}
	if opts.Follow {
		pr, pw := io.Pipe()
		f.pipes[id] = pw
		go func() { <-ctx.Done(); pr.CloseWithError(ctx.Err()) }()
		return pr, nil
	}
	return io.NopCloser(strings.NewReader(l)), nil
}

func (f *fakeLogs) pipe(id string) *io.PipeWriter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pipes[id]
}

func newLogsEnv(t *testing.T) (*env, *fakeLogs) {
	t.Helper()
	fl := &fakeLogs{
		logs: map[string]string{
			"diabetes/diabetes-a1": "loading model\nserving on :8080\n",
			"diabetes/diabetes-b2": "loading model\nunfinished",
		},
		pipes: map[string]*io.PipeWriter{},
	}
	e := newEnvWith(t, func(h *api.Handler, _ *sqlite.Store) { h.MountLogs(fl) })
	for _, doc := range []string{`{"name":"diabetes","spec":{"model":"m.json"}}`, `{"name":"cold","spec":{"model":"m.json"}}`} {
		if code, _, body := e.do(t, "POST", "/v1/deployments", "application/json", doc); code != http.StatusCreated {
			t.Fatalf("create: %d %s", code, body)
		}
	}
	e.ctl.mu.Lock()
	e.ctl.statuses["diabetes"] = serving.Status{ReplicaStatuses: []serving.ReplicaStatus{
		{ID: "diabetes-a1", State: serving.ReplicaReady},
		{ID: "diabetes-b2", State: serving.ReplicaReady},
		{ID: "diabetes-c3", State: serving.ReplicaStarting}, // no logs yet
	}}
	e.ctl.mu.Unlock()
	return e, fl
}

func TestLogs(t *testing.T) {
	e, fl := newLogsEnv(t)
	tests := []struct {
		name     string
		query    string
		want     string
		wantOpts []replica.LogOptions
	}{
		{
			name:     "one replica",
			query:    "?replica=diabetes-a1",
			want:     "loading model\nserving on :8080\n",
			wantOpts: []replica.LogOptions{{TailLines: 100}},
		},
		{
			name:     "whole log",
			query:    "?replica=diabetes-b2&tail=-1",
			want:     "loading model\nunfinished",
			wantOpts: []replica.LogOptions{{TailLines: 0}},
		},
		{
			name:  "every replica, prefixed",
			query: "?tail=7",
			want: "[diabetes-c3] (no logs yet: the replica is starting)\n" +
				"[diabetes-a1] loading model\n[diabetes-a1] serving on :8080\n" +
				"[diabetes-b2] loading model\n[diabetes-b2] unfinished\n",
			wantOpts: []replica.LogOptions{{TailLines: 7}, {TailLines: 7}, {TailLines: 7}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fl.mu.Lock()
			fl.asked = nil
			fl.mu.Unlock()
			code, hdr, body := e.do(t, "GET", "/v1/deployments/diabetes/logs"+tt.query, "", "")
			if code != http.StatusOK || hdr.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Fatalf("GET logs = %d %q %s", code, hdr.Get("Content-Type"), body)
			}
			if diff := cmp.Diff(tt.want, string(body)); diff != "" {
				t.Errorf("logs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantOpts, fl.asked); diff != "" {
				t.Errorf("options asked (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogsErrors(t *testing.T) {
	e, fl := newLogsEnv(t)
	tests := []struct {
		name, path  string
		code        int
		errCode     string
		msg         string
		unsupported bool
	}{
		{name: "no deployment", path: "/v1/deployments/nope/logs", code: 404, errCode: "deployment/not_found", msg: "ebb get deployments"},
		{name: "no replica", path: "/v1/deployments/diabetes/logs?replica=diabetes-zz", code: 404, errCode: "replica/not_found", msg: "ebb get deployment diabetes"},
		{name: "scaled to zero", path: "/v1/deployments/cold/logs", code: 404, errCode: "replica/not_found", msg: "scaled to zero"},
		{name: "bad tail", path: "/v1/deployments/diabetes/logs?tail=0", code: 400, errCode: "request/malformed", msg: "-1 for the whole log"},
		{name: "bad follow", path: "/v1/deployments/diabetes/logs?follow=often", code: 400, errCode: "request/malformed", msg: "true or false"},
		{name: "unsupported", path: "/v1/deployments/diabetes/logs", code: 501, errCode: "logs/unsupported", msg: "cannot read replica logs", unsupported: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fl.mu.Lock()
			fl.failAll = nil
			if tt.unsupported {
				fl.failAll = fmt.Errorf("the replica backend cannot: %w", errors.ErrUnsupported)
			}
			fl.mu.Unlock()
			code, _, body := e.do(t, "GET", tt.path, "", "")
			wantError(t, tt.name, code, body, tt.code, tt.errCode, tt.msg)
		})
	}
	code, _, body := e.do(t, "POST", "/v1/deployments/diabetes/logs", "", "")
	wantError(t, "POST logs", code, body, http.StatusMethodNotAllowed, "request/method_not_allowed", "GET")
}

// TestLogsFollow reads a followed stream as it is written: each line
// arrives before the next is written (the server flushes), lines of two
// replicas do not mix, and the stream ends when the replicas' streams do.
func TestLogsFollow(t *testing.T) {
	e, fl := newLogsEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/deployments/diabetes/logs?follow=true", nil)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("follow = %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	readLine := func() string {
		t.Helper()
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read a followed line: %v (got %q)", err, l)
		}
		return l
	}
	// The starting replica's note comes first.
	if l := readLine(); l != "[diabetes-c3] (no logs yet: the replica is starting)\n" {
		t.Errorf("first line %q", l)
	}
	for i, w := range []struct{ id, text string }{
		{"diabetes-a1", "request 1\n"},
		{"diabetes-b2", "request 2\n"},
		{"diabetes-a1", "request 3\n"},
	} {
		var pw *io.PipeWriter
		for pw == nil {
			pw = fl.pipe(w.id)
			time.Sleep(time.Millisecond)
		}
		if _, err := io.WriteString(pw, w.text); err != nil {
			t.Fatal(err)
		}
		if got, want := readLine(), "["+w.id+"] "+w.text; got != want {
			t.Errorf("line %d = %q, want %q", i, got, want)
		}
	}
	fl.pipe("diabetes-a1").Close()
	io.WriteString(fl.pipe("diabetes-b2"), "last words")
	fl.pipe("diabetes-b2").Close()
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read to the end: %v", err)
	}
	if string(rest) != "[diabetes-b2] last words\n" {
		t.Errorf("after the streams ended: %q", rest)
	}
}
