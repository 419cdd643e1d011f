package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/queue"
)

// TestAsyncCancel: DELETE /v2/async/{id} cancels the tenant's pending
// request, wakes a GET waiting for it, and answers 409 once it is
// finished; another tenant's id is the 404 of an unknown one.
func TestAsyncCancel(t *testing.T) {
	f := newAsyncFixture(t, Async{Waiters: &queue.Waiters{}}, nil)
	id := f.submit(t, DefaultTenantHeader, "acme")
	url := f.url + "/v2/async/" + id

	resp, other := do(t, "DELETE", url, "", DefaultTenantHeader, "globex")
	unknown := queue.NewID()
	_, missing := do(t, "DELETE", f.url+"/v2/async/"+unknown, "", DefaultTenantHeader, "globex")
	if resp.StatusCode != http.StatusNotFound || strings.ReplaceAll(other, id, "ID") != strings.ReplaceAll(missing, unknown, "ID") {
		t.Errorf("another tenant's DELETE = %d %s; an unknown id's: %s; want the same 404", resp.StatusCode, other, missing)
	}

	// A reader waiting for the result hears of the cancellation.
	waited := make(chan int, 1)
	go func() {
		resp, _ := do(t, "GET", url, "", DefaultTenantHeader, "acme", "Prefer", "wait=10")
		waited <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond) // the GET waits
	resp, out := do(t, "DELETE", url, "", DefaultTenantHeader, "acme")
	if resp.StatusCode != http.StatusOK || !strings.Contains(out, `"state":"cancelled"`) {
		t.Fatalf("DELETE = %d %s, want 200 cancelled", resp.StatusCode, out)
	}
	select {
	case code := <-waited:
		if code != http.StatusGone {
			t.Errorf("the waiting GET = %d, want 410", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the waiting GET did not answer")
	}
	if resp, out := do(t, "GET", url, "", DefaultTenantHeader, "acme"); resp.StatusCode != http.StatusGone {
		t.Errorf("GET after the cancel = %d %s, want 410", resp.StatusCode, out)
	}
	resp, out = do(t, "DELETE", url, "", DefaultTenantHeader, "acme")
	if resp.StatusCode != http.StatusConflict || !strings.Contains(out, codeAsyncFinished) || !strings.Contains(out, "already finished (cancelled)") {
		t.Errorf("second DELETE = %d %s, want 409 %s saying it was cancelled", resp.StatusCode, out, codeAsyncFinished)
	}
	// The request does not run.
	if rs, err := f.q.Claim(t.Context(), "m", 5, time.Minute); err != nil || len(rs) != 0 {
		t.Errorf("Claim after the cancel = %d requests, %v; want none", len(rs), err)
	}
	// The queue down: 503, not a guess.
	id2 := f.submit(t, DefaultTenantHeader, "acme")
	f.q.down.Store(true)
	if resp, out := do(t, "DELETE", f.url+"/v2/async/"+id2, "", DefaultTenantHeader, "acme"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("DELETE with the queue down = %d %s, want 503", resp.StatusCode, out)
	}
	if resp, out := do(t, "GET", f.url+"/v2/async", "", DefaultTenantHeader, "acme"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("list with the queue down = %d %s, want 503", resp.StatusCode, out)
	}
}

// TestAsyncList: GET /v2/async lists the caller's requests, newest first,
// filtered and bounded by its query; bad queries get 400.
func TestAsyncList(t *testing.T) {
	f := newAsyncFixture(t, Async{}, nil) // its queue holds 3 pending
	var ids []string
	for range 3 {
		ids = append(ids, f.submit(t, DefaultTenantHeader, "acme"))
		time.Sleep(2 * time.Millisecond) // distinct creation times
	}
	if resp, out := do(t, "DELETE", f.url+"/v2/async/"+ids[1], "", DefaultTenantHeader, "acme"); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE = %d %s", resp.StatusCode, out)
	}
	f.submit(t, DefaultTenantHeader, "globex")
	list := func(query, tenant string) (int, []string, []queue.State) {
		t.Helper()
		resp, out := do(t, "GET", f.url+"/v2/async"+query, "", DefaultTenantHeader, tenant)
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, nil, nil
		}
		var l queue.RecordList
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("GET /v2/async%s: %v: %s", query, err, out)
		}
		var got []string
		var states []queue.State
		for _, r := range l.Requests {
			got = append(got, r.ID)
			states = append(states, r.State)
			if r.Deployment != "m" || r.CreatedAt.IsZero() || r.ExpiresAt.IsZero() {
				t.Errorf("listed %+v, want deployment m and its times", r)
			}
		}
		return resp.StatusCode, got, states
	}
	for _, tc := range []struct {
		query, tenant string
		status        int
		want          []string
	}{
		{"", "acme", 200, []string{ids[2], ids[1], ids[0]}},
		{"/", "acme", 200, []string{ids[2], ids[1], ids[0]}},
		{"?state=pending", "acme", 200, []string{ids[2], ids[0]}},
		{"?state=cancelled", "acme", 200, []string{ids[1]}},
		{"?limit=1", "acme", 200, []string{ids[2]}},
		{"?deployment=other", "acme", 200, nil},
		{"?state=running", "acme", 400, nil},
		{"?limit=0", "acme", 400, nil},
		{"?limit=1001", "acme", 400, nil},
		{"?limit=x", "acme", 400, nil},
		{"", "initech", 200, nil},
	} {
		code, got, _ := list(tc.query, tc.tenant)
		if code != tc.status || !cmp.Equal(got, tc.want) {
			t.Errorf("GET /v2/async%s as %s = %d %v, want %d %v", tc.query, tc.tenant, code, got, tc.status, tc.want)
		}
	}
	if _, got, states := list("", "globex"); len(got) != 1 || states[0] != queue.Pending {
		t.Errorf("globex's list = %v %v, want its one pending request", got, states)
	}
}

// TestAsyncManageAuth: with auth on, listing and cancelling need a valid
// token, and show and touch only the tenant's requests of deployments the
// token may predict on.
func TestAsyncManageAuth(t *testing.T) {
	tokens := &tokenMap{m: map[string]auth.Token{}}
	v := auth.NewVerifier(tokens, 0, nil)
	acme, acmeOther := "Bearer "+tokens.addTenant(t, "acme", "predict:m"), "Bearer "+tokens.addTenant(t, "acme", "predict:other")
	f := newAsyncFixture(t, Async{}, v)
	id := f.submit(t, "Authorization", acme)
	if resp, out := do(t, "GET", f.url+"/v2/async", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("list without a token = %d %s, want 401", resp.StatusCode, out)
	}
	if resp, out := do(t, "GET", f.url+"/v2/async", "", "Authorization", acmeOther); resp.StatusCode != http.StatusOK || strings.Contains(out, id) {
		t.Errorf("list with a token that may not predict m = %d %s, want 200 without %s", resp.StatusCode, out, id)
	}
	if resp, out := do(t, "GET", f.url+"/v2/async", "", "Authorization", acme); resp.StatusCode != http.StatusOK || !strings.Contains(out, id) {
		t.Errorf("the owner's list = %d %s, want 200 with %s", resp.StatusCode, out, id)
	}
	if resp, out := do(t, "DELETE", f.url+"/v2/async/"+id, "", "Authorization", acmeOther); resp.StatusCode != http.StatusNotFound {
		t.Errorf("DELETE with a token that may not predict m = %d %s, want 404", resp.StatusCode, out)
	}
	if resp, out := do(t, "DELETE", f.url+"/v2/async/"+id, "", "Authorization", acme); resp.StatusCode != http.StatusOK {
		t.Errorf("the owner's DELETE = %d %s, want 200", resp.StatusCode, out)
	}
}
