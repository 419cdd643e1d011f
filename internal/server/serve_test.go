package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/google/go-cmp/cmp"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// get answers path through the handler directly, which keeps working while
// Serve's listener is closed for draining.
func get(s *Server, path string) (int, string) {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

// waitFor polls cond; the deadline only guards against a hung test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestServeDrainsInFlightRequests(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	m := &fakeModel{width: 4}
	slow := &fakeModel{width: 4, predict: func(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
		close(entered)
		<-release
		return m.Predict(ctx, in)
	}}
	var readyAt time.Time
	s := New("iris", slow, Options{OnReady: func(at time.Time) { readyAt = at }})
	ln := listen(t)
	url := "http://" + ln.Addr().String()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()

	type result struct {
		status int
		body   string
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := http.Post(url+"/v2/models/iris/infer", "application/json", strings.NewReader(`{"id":"slow","inputs":[`+row4+`]}`))
		if err != nil {
			inflight <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- result{resp.StatusCode, string(b), err}
	}()
	<-entered
	if readyAt.IsZero() {
		t.Error("OnReady was not called before serving requests")
	}
	if code, _ := get(s, "/v2/health/ready"); code != 200 {
		t.Fatalf("ready before draining = %d, want 200", code)
	}

	cancel()
	waitFor(t, "readiness to flip", func() bool { code, _ := get(s, "/v2/health/ready"); return code == 503 })
	// The slow request is still held by the model: readiness flipped first.
	select {
	case r := <-inflight:
		t.Fatalf("in-flight request finished before it was released: %+v", r)
	case err := <-served:
		t.Fatalf("Serve returned %v with a request still in flight", err)
	default:
	}
	if code, body := get(s, "/v2/models/iris/ready"); code != 503 || body != `{"name":"iris","ready":false}` {
		t.Errorf("model ready while draining = %d %s, want 503 ready:false", code, body)
	}
	if code, _ := get(s, "/v2/health/live"); code != 200 {
		t.Errorf("live while draining = %d, want 200", code)
	}

	close(release)
	r := <-inflight
	if r.err != nil || r.status != 200 {
		t.Fatalf("in-flight request: status %d, err %v, body %s", r.status, r.err, r.body)
	}
	var resp oip.InferResponse
	if err := json.Unmarshal([]byte(r.body), &resp); err != nil || resp.ID != "slow" {
		t.Errorf("in-flight response %s (err %v), want id slow", r.body, err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after a clean drain = %v, want nil", err)
	}
	if _, err := http.Get(url + "/v2/health/live"); err == nil {
		t.Error("listener still accepts after Serve returned")
	}
}

func TestServeDrainTimeout(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	stuck := &fakeModel{width: 4, predict: func(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
		close(entered)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, errors.New("interrupted")
	}}
	s := New("iris", stuck, Options{DrainTimeout: 20 * time.Millisecond})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/v2/models/iris/infer", "application/json", strings.NewReader(`{"inputs":[`+row4+`]}`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	cancel()
	err := <-served
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not finish") {
		t.Errorf("Serve = %v, want a drain timeout error", err)
	}
}

func TestReplicaInfo(t *testing.T) {
	loaded := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ready := loaded.Add(3 * time.Millisecond)
	now := loaded
	s := New("iris", &fakeModel{width: 4}, Options{
		ReplicaID:     "iris-7f3a",
		ModelLoadedAt: loaded,
		Now:           func() time.Time { return now },
	})
	want := ReplicaInfo{ID: "iris-7f3a", Deployment: "iris", PID: os.Getpid(), ModelLoadedAt: loaded}
	check := func(want ReplicaInfo) {
		t.Helper()
		code, body := get(s, "/ebb/v1/replica")
		if code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
		var got ReplicaInfo
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("replica info (-want +got):\n%s", diff)
		}
	}
	check(want)
	if _, body := get(s, "/ebb/v1/replica"); strings.Contains(body, "readyAt") {
		t.Errorf("readyAt present before Serve: %s", body)
	}

	now = ready
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	onReady := make(chan time.Time, 1)
	s.opts.OnReady = func(at time.Time) { onReady <- at }
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	if got := <-onReady; !got.Equal(ready) {
		t.Errorf("OnReady(%v), want %v", got, ready)
	}
	want.ReadyAt = ready
	check(want)
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

func TestServeListenerFailure(t *testing.T) {
	ln := listen(t)
	ln.Close()
	s := New("iris", &fakeModel{width: 4}, Options{})
	err := s.Serve(context.Background(), ln)
	if err == nil || !strings.Contains(err.Error(), "serving on") {
		t.Fatalf("Serve on a closed listener = %v, want an error", err)
	}
	if s.Ready() {
		t.Error("Ready after the listener failed")
	}
}
