package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/queue"
)

// TestAsyncPreferWait: a GET with "Prefer: wait=N" answers as soon as the
// result is stored: at once when this process's worker stores it (the
// Waiters wake it), within a recheck when something else does; with no
// result by then, the usual 202 after the wait. A wait another tenant
// asks for is a 404, as without it.
func TestAsyncPreferWait(t *testing.T) {
	waiters := &queue.Waiters{}
	f := newAsyncFixture(t, Async{Waiters: waiters, MaxWait: 3 * time.Second}, nil)
	get := func(id string, headers ...string) (*http.Response, string, time.Duration) {
		start := time.Now()
		resp, out := do(t, "GET", f.url+"/v2/async/"+id, "", append([]string{DefaultTenantHeader, "acme"}, headers...)...)
		return resp, out, time.Since(start)
	}

	// Nothing runs it: 202 after the wait, which is capped at MaxWait.
	id := f.submit(t, DefaultTenantHeader, "acme")
	resp, out, took := get(id, "Prefer", "wait=1")
	if resp.StatusCode != http.StatusAccepted || took < time.Second || resp.Header.Get("Preference-Applied") != "wait=1" {
		t.Errorf("wait=1 with no worker = %d %s after %v (Preference-Applied %q), want 202 after 1s with wait=1 applied",
			resp.StatusCode, out, took, resp.Header.Get("Preference-Applied"))
	}
	if n := waiters.Len(); n != 0 {
		t.Errorf("%d ids still have waiters after the GET ended", n)
	}
	if resp, out, _ = get(id, "Prefer", "wait=nope"); resp.StatusCode != http.StatusAccepted || resp.Header.Get("Preference-Applied") != "" {
		t.Errorf("malformed wait = %d %s (Preference-Applied %q), want an immediate 202 without it", resp.StatusCode, out, resp.Header.Get("Preference-Applied"))
	}
	if resp, _ = do(t, "GET", f.url+"/v2/async/"+id, "", DefaultTenantHeader, "globex", "Prefer", "wait=2"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another tenant's wait = %d, want 404", resp.StatusCode)
	}

	// This process's worker stores the result: the waiting GET answers
	// at once.
	w := queue.NewWorker(f.q, f.g, queue.WorkerOptions{Poll: time.Hour, Waiters: waiters})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	id2 := f.submit(t, DefaultTenantHeader, "acme")
	go func() { time.Sleep(300 * time.Millisecond); w.Wake() }()
	resp, out, took = get(id2, "Prefer", "wait=30")
	// 200, not 202: answered before MaxWait (3s) ran out.
	if resp.StatusCode != http.StatusOK || !strings.Contains(out, `"data":[1,2]`) {
		t.Errorf("wait=30 with the worker = %d %s after %v, want 200 with the answer before MaxWait (3s)", resp.StatusCode, out, took)
	}

	// A result stored by another process (here: straight into the queue,
	// as another gateway's worker would) is seen within a recheck.
	cancel()
	<-done
	id3 := f.submit(t, DefaultTenantHeader, "acme")
	go func() {
		time.Sleep(200 * time.Millisecond)
		rs, err := f.q.Claim(context.Background(), "m", 1, time.Minute)
		if err != nil || len(rs) != 1 {
			t.Errorf("Claim = %v, %v", rs, err)
			return
		}
		if _, err := f.q.Complete(context.Background(), rs[0].ID, rs[0].LeaseToken, queue.Result{Status: 200, ContentType: "application/json", Body: []byte(`{"elsewhere":true}`)}); err != nil {
			t.Error(err)
		}
	}()
	resp, out, took = get(id3, "Prefer", "wait=3")
	// 200, not 202: a recheck saw it before the 3 s ran out.
	if resp.StatusCode != http.StatusOK || !strings.Contains(out, "elsewhere") {
		t.Errorf("wait=3, stored elsewhere = %d %s after %v, want 200 from a recheck (every %v) before the wait ended", resp.StatusCode, out, took, asyncRecheck)
	}
}

// TestAsyncGetRemembered: a result this process's worker just stored is
// answered without reading the queue (here: down, so that a read would
// fail with 503), to its own tenant only: for another tenant it is any id
// not theirs, read from the queue (503 while it is down, 404 once up), as
// is a request the worker did not run here.
func TestAsyncGetRemembered(t *testing.T) {
	waiters := &queue.Waiters{}
	f := newAsyncFixture(t, Async{Waiters: waiters, MaxWait: 3 * time.Second}, nil)
	w := queue.NewWorker(f.q, f.g, queue.WorkerOptions{Poll: time.Hour, Waiters: waiters})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	id := f.submit(t, DefaultTenantHeader, "acme")
	w.Wake()
	resp, out := do(t, "GET", f.url+"/v2/async/"+id, "", DefaultTenantHeader, "acme", "Prefer", "wait=3")
	cancel()
	<-done
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET with the worker = %d %s, want 200", resp.StatusCode, out)
	}
	other := f.submit(t, DefaultTenantHeader, "acme") // never run here

	f.q.down.Store(true)
	defer f.q.down.Store(false)
	tests := []struct {
		name, id, tenant string
		status           int
		contains         string
	}{
		{"remembered, own tenant", id, "acme", http.StatusOK, `"data":[1,2]`},
		{"remembered, another tenant", id, "globex", http.StatusServiceUnavailable, "cannot be read now"},
		{"not run here", other, "acme", http.StatusServiceUnavailable, "cannot be read now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, out := do(t, "GET", f.url+"/v2/async/"+tt.id, "", DefaultTenantHeader, tt.tenant)
			if resp.StatusCode != tt.status || !strings.Contains(out, tt.contains) {
				t.Errorf("GET with the queue down = %d %s, want %d containing %q", resp.StatusCode, out, tt.status, tt.contains)
			}
		})
	}
	f.q.down.Store(false)
	if resp, out := do(t, "GET", f.url+"/v2/async/"+id, "", DefaultTenantHeader, "globex"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another tenant's GET with the queue up = %d %s, want 404", resp.StatusCode, out)
	}
}

// TestAsyncWaitAccepted: a GET that waits for a request this process
// accepted starts waiting without reading the queue (here: down, so that
// a read would answer 503 at once), and answers with the result this
// process's worker stores; a GET that does not wait reads the queue.
func TestAsyncWaitAccepted(t *testing.T) {
	waiters := &queue.Waiters{}
	f := newAsyncFixture(t, Async{Waiters: waiters, MaxWait: 3 * time.Second}, nil)
	id := f.submit(t, DefaultTenantHeader, "acme")
	f.q.down.Store(true)
	defer f.q.down.Store(false)
	if resp, out := do(t, "GET", f.url+"/v2/async/"+id, "", DefaultTenantHeader, "acme"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET without wait, the queue down = %d %s, want 503 (it reads the queue)", resp.StatusCode, out)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		r := &queue.Request{ID: id, Tenant: "acme", Deployment: "m", ResultTTL: time.Hour}
		waiters.Stored(r, &queue.Result{Status: 200, ContentType: "application/json", Body: []byte(`{"stored":"here"}`)})
	}()
	resp, out := do(t, "GET", f.url+"/v2/async/"+id, "", DefaultTenantHeader, "acme", "Prefer", "wait=3")
	if resp.StatusCode != http.StatusOK || !strings.Contains(out, `"stored":"here"`) {
		t.Errorf("GET with wait, the queue down = %d %s, want 200 with the result stored here", resp.StatusCode, out)
	}
	if resp, out := do(t, "GET", f.url+"/v2/async/"+id, "", DefaultTenantHeader, "globex", "Prefer", "wait=1"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("another tenant's GET with wait, the queue down = %d %s, want 503 (it reads the queue)", resp.StatusCode, out)
	}
}
