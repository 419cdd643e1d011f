package hostile

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tenants through `ebb up` (issue 15): a tenant over its limit gets 429
// with Retry-After and the limit named, one limit type at a time; and one
// tenant cannot read another's async results, whether tenants come from a
// header (auth off for inference on loopback) or from tokens.

const (
	tenantHeader = "Ebb-Tenant"
	echoRequest  = `{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`
)

// infer sends an infer request to deployment dep as tenant (by header).
func (u *up) infer(dep, tenant string) (int, string, http.Header, error) {
	return u.tryHeader(req{path: "/v2/models/" + dep + "/infer", body: echoRequest, header: map[string]string{tenantHeader: tenant}})
}

// tryHeader is try that also returns the answer's header.
func (u *up) tryHeader(r req) (int, string, http.Header, error) {
	var h http.Header
	code, body, err := u.tryWith(r, func(resp *http.Response) { h = resp.Header })
	return code, body, h, err
}

// answer is one request's outcome.
type answer struct {
	code       int
	body       string
	retryAfter string
	err        error
}

// atOnce sends rs together, and late together after a pause while rs
// may still be waiting for their answers, and returns every answer, late's
// after rs's.
func atOnce(u *up, rs, late []req) []answer {
	out := make([]answer, len(rs)+len(late))
	var wg sync.WaitGroup
	send := func(i int, r req) {
		defer wg.Done()
		code, body, h, err := u.tryHeader(r)
		out[i] = answer{code: code, body: body, err: err}
		if h != nil {
			out[i].retryAfter = h.Get("Retry-After")
		}
	}
	for i, r := range rs {
		wg.Add(1)
		go send(i, r)
	}
	if len(late) > 0 {
		time.Sleep(300 * time.Millisecond)
	}
	for i, r := range late {
		wg.Add(1)
		go send(len(rs)+i, r)
	}
	wg.Wait()
	return out
}

// TestTenantLimits429: every kind of tenant limit, set through the API,
// refuses the request past it with 429, a Retry-After of at least 1 s and
// a body whose code and message name the limit, and binds only the
// tenant (and deployment) it is set for. The limits: a rate limit across
// a tenant's deployments, one on a deployment, the default ("*") rate
// limit, a concurrency limit, and the tenant's share of a capped
// deployment's queue (--max-queue-per-tenant).
func TestTenantLimits429(t *testing.T) {
	roots := t.TempDir()
	slow := echoModel(t, roots, 1000)
	u := startUp(t, roots, "--max-queue-per-tenant", "2")
	u.deploy(t, "fast", echoSpec("", 0))
	u.deploy(t, "fast2", echoSpec("", 0))
	u.deploy(t, "slow", echoSpec(slow, 0))
	u.deploy(t, "capped", echoSpec(slow, 1))

	infer := func(dep, tenant string) req {
		return req{path: "/v2/models/" + dep + "/infer", body: echoRequest, header: map[string]string{tenantHeader: tenant}}
	}
	tests := []struct {
		name string
		// limits are PUT (path under /v1/limits/, JSON) before, and
		// deleted after.
		limits map[string]string
		// sequential are sent one after another, then together at once,
		// and late at once a moment after (atOnce).
		sequential, together, late []req
		// want is the status of each answer: in order for sequential's,
		// as a set for the others' (which of them is refused depends on
		// the order they arrive in). A 429 must carry wantCode and a
		// message with each of wantMsg (which names the tenant).
		want     []int
		wantCode string
		wantMsg  []string
	}{
		{
			name:       "rate across deployments",
			limits:     map[string]string{"r1": `{"rate":1,"burst":2}`},
			sequential: []req{infer("fast", "r1"), infer("fast2", "r1"), infer("fast", "r1"), infer("fast", "someone-else")},
			want:       []int{200, 200, 429, 200},
			wantCode:   "tenant/rate_limited", wantMsg: []string{`tenant "r1"`, "rate limit of 1 requests/s (burst 2)", "across its deployments"},
		},
		{
			name:       "rate on a deployment",
			limits:     map[string]string{"r2/deployments/fast": `{"rate":1,"burst":1}`},
			sequential: []req{infer("fast", "r2"), infer("fast", "r2"), infer("fast2", "r2")},
			want:       []int{200, 429, 200},
			wantCode:   "tenant/rate_limited", wantMsg: []string{`tenant "r2"`, "rate limit of 1 requests/s (burst 1)", `for deployment "fast"`},
		},
		{
			name:       "default rate, each tenant its own",
			limits:     map[string]string{"*": `{"rate":1,"burst":1}`, "exempt": `{"rate":0}`},
			sequential: []req{infer("fast", "d1"), infer("fast", "d2"), infer("fast", "d1"), infer("fast", "exempt"), infer("fast", "exempt")},
			want:       []int{200, 200, 429, 200, 200},
			wantCode:   "tenant/rate_limited", wantMsg: []string{`tenant "d1"`, "the default rate limit of 1 requests/s"},
		},
		{
			// Two requests of a second each, sent together: whichever
			// comes second finds the first in flight. Another tenant
			// is not bound.
			name:     "concurrency",
			limits:   map[string]string{"c1": `{"concurrency":1}`},
			together: []req{infer("slow", "c1"), infer("slow", "c1"), infer("slow", "c2")},
			want:     []int{200, 429, 200},
			wantCode: "tenant/concurrency_limited", wantMsg: []string{`tenant "c1"`, "concurrency"},
		},
		{
			// capped admits one request at a time (maxConcurrency 1)
			// and queues the rest; q1 may have two waiting
			// (--max-queue-per-tenant 2), so of four sent together one
			// is refused; q2's, sent while q1's are waiting, waits in
			// a queue of its own.
			name:     "tenant queue full",
			together: []req{infer("capped", "q1"), infer("capped", "q1"), infer("capped", "q1"), infer("capped", "q1")},
			late:     []req{infer("capped", "q2")},
			want:     []int{200, 200, 200, 429, 200},
			wantCode: "tenant/queue_full", wantMsg: []string{`tenant "q1"`, `deployment "capped"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for path, body := range tt.limits {
				if code, out := u.do(t, req{method: http.MethodPut, path: "/v1/limits/" + path, token: u.admin, body: body}); code/100 != 2 {
					t.Fatalf("PUT /v1/limits/%s: %d %s", path, code, out)
				}
				t.Cleanup(func() { u.do(t, req{method: http.MethodDelete, path: "/v1/limits/" + path, token: u.admin}) })
			}
			var got []answer
			for _, r := range tt.sequential {
				got = append(got, atOnce(u, []req{r}, nil)...)
			}
			got = append(got, sortAnswers(atOnce(u, tt.together, tt.late))...)
			n := len(tt.sequential)
			want := append(slices.Clone(tt.want[:n]), slices.Sorted(slices.Values(tt.want[n:]))...)
			if len(got) != len(want) {
				t.Fatalf("%d answers, want %d", len(got), len(want))
			}
			for i, a := range got {
				if a.err != nil || a.code != want[i] {
					t.Errorf("request %d: %d %v %.300s; want %d", i, a.code, a.err, a.body, want[i])
					continue
				}
				if a.code != http.StatusTooManyRequests {
					continue
				}
				if n, err := strconv.Atoi(a.retryAfter); err != nil || n < 1 {
					t.Errorf("request %d: 429 with Retry-After %q; want whole seconds ≥ 1", i, a.retryAfter)
				}
				if code := gatewayErrorCode(a.body); code != tt.wantCode {
					t.Errorf("request %d: 429 with code %q; want %q: %s", i, code, tt.wantCode, a.body)
				}
				for _, w := range tt.wantMsg {
					if !strings.Contains(a.body, strings.ReplaceAll(w, `"`, `\"`)) {
						t.Errorf("request %d: 429 %s; want the message to say %s", i, a.body, w)
					}
				}
			}
		})
	}
}

// gatewayErrorCode returns the code of a data plane error body,
// {"error":"message","code":"..."}.
func gatewayErrorCode(body string) string {
	var e struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	return e.Code
}

// sortAnswers orders answers by status.
func sortAnswers(as []answer) []answer {
	slices.SortStableFunc(as, func(a, b answer) int { return a.code - b.code })
	return as
}

// submitAsync submits an async infer request to dep with header and
// returns its id.
func (u *up) submitAsync(t *testing.T, dep string, header map[string]string) string {
	t.Helper()
	h := map[string]string{"Prefer": "respond-async"}
	for k, v := range header {
		h[k] = v
	}
	code, body := u.do(t, req{path: "/v2/models/" + dep + "/infer", body: echoRequest, header: h})
	var st struct {
		ID string `json:"id"`
	}
	if code != http.StatusAccepted || json.Unmarshal([]byte(body), &st) != nil || st.ID == "" {
		t.Fatalf("async submit: %d %s; want 202 with an id", code, body)
	}
	return st.ID
}

// awaitResult polls id with header until it has a result, and returns it.
func (u *up) awaitResult(t *testing.T, id string, header map[string]string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := u.do(t, req{path: "/v2/async/" + id, header: header})
		switch {
		case code == http.StatusOK:
			return body
		case code != http.StatusAccepted:
			t.Fatalf("GET /v2/async/%s: %d %s", id, code, body)
		case time.Now().After(deadline):
			t.Fatalf("no result for %s within 30s", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createTenantToken makes a token of tenant with scopes and returns its
// secret.
func (u *up) createTenantToken(t *testing.T, name, tenant string, scopes ...string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"name": name, "tenant": tenant, "scopes": scopes})
	code, out := u.do(t, req{path: "/v1/tokens", token: u.admin, body: string(body)})
	var tok struct {
		Secret string `json:"secret"`
	}
	if code != http.StatusCreated || json.Unmarshal([]byte(out), &tok) != nil || tok.Secret == "" {
		t.Fatalf("create token %s of tenant %s: %d %s", name, tenant, code, out)
	}
	return tok.Secret
}

// TestAsyncResultsStayWithTheirTenant: a result is served only to its
// tenant; every other asker gets the very 404 of an id that does not
// exist (never 403), so an id tells nothing. With auth off for inference
// (loopback) tenants are named by the Ebb-Tenant header; with
// --inference-auth=on by tokens, and the header changes nothing.
func TestAsyncResultsStayWithTheirTenant(t *testing.T) {
	const unknown = "aaaaaaaaaaaaaaaaaaaaaaaaaa" // well formed, never issued
	tests := []struct {
		name  string
		flags []string
		// askers names each header set a GET is sent with, built once
		// ebb up runs: the owner's first.
		askers func(t *testing.T, u *up) (owner map[string]string, others map[string]map[string]string, unauthenticated int)
	}{
		{
			name: "tenants by header",
			askers: func(t *testing.T, u *up) (map[string]string, map[string]map[string]string, int) {
				return map[string]string{tenantHeader: "alice"}, map[string]map[string]string{
					"another tenant":                  {tenantHeader: "bob"},
					"no tenant":                       {},
					"a tenant's name in another case": {tenantHeader: "Alice"},
				}, http.StatusNotFound
			},
		},
		{
			name:  "tenants by token",
			flags: []string{"--inference-auth=on"},
			askers: func(t *testing.T, u *up) (map[string]string, map[string]map[string]string, int) {
				alice := u.createTenantToken(t, "alice", "alice", "predict:d")
				bob := u.createTenantToken(t, "bob", "bob", "predict:d")
				aliceElsewhere := u.createTenantToken(t, "alice-other", "alice", "predict:other")
				return map[string]string{"Authorization": "Bearer " + alice}, map[string]map[string]string{
					"another tenant's token":                     {"Authorization": "Bearer " + bob},
					"another tenant's token, owner's header":     {"Authorization": "Bearer " + bob, tenantHeader: "alice"},
					"the owner tenant's token for another model": {"Authorization": "Bearer " + aliceElsewhere},
				}, http.StatusUnauthorized
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := startUp(t, t.TempDir(), tt.flags...)
			u.deploy(t, "d", echoSpec("", 0))
			owner, others, anonymous := tt.askers(t, u)
			id := u.submitAsync(t, "d", owner)
			if body := u.awaitResult(t, id, owner); !strings.Contains(body, `"outputs"`) {
				t.Fatalf("the owner's result: %s", body)
			}
			_, missing := u.do(t, req{path: "/v2/async/" + unknown, header: owner})
			want := strings.ReplaceAll(missing, unknown, id)
			for name, h := range others {
				code, body := u.do(t, req{path: "/v2/async/" + id, header: h})
				if code != http.StatusNotFound || body != want {
					t.Errorf("%s: %d %s; want the 404 of an unknown id: %s", name, code, body, want)
				}
			}
			if code, body := u.do(t, req{path: "/v2/async/" + id}); code != anonymous {
				t.Errorf("no tenant, no token: %d %s; want %d", code, body, anonymous)
			}
			// The owner still reads it: nobody else's asking changed it.
			if code, body := u.do(t, req{path: "/v2/async/" + id, header: owner}); code != http.StatusOK {
				t.Errorf("the owner after the others: %d %s", code, body)
			}
		})
	}
}
