package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// downQueue is the real SQLite queue that can be made to fail as a store
// that cannot be reached fails.
type downQueue struct {
	*sqlstore.Queue
	down atomic.Bool
	// tooLarge makes it refuse bodies as NATS does those over its
	// max_payload.
	tooLarge atomic.Bool
}

func (q *downQueue) Enqueue(ctx context.Context, r queue.Request) error {
	if q.down.Load() {
		return errDown
	}
	if q.tooLarge.Load() {
		return fmt.Errorf("natsq: enqueue %s: over the NATS server's max_payload: %w", r.ID, queue.ErrTooLarge)
	}
	return q.Queue.Enqueue(ctx, r)
}

var errDown = fmt.Errorf("SQLite at /data/ebb.db: disk I/O error: %w", queue.ErrUnavailable)

// Get, Cancel and List fail as Enqueue does while the queue is down.
func (q *downQueue) Get(ctx context.Context, tenant, id string) (queue.Record, error) {
	if q.down.Load() {
		return queue.Record{}, errDown
	}
	return q.Queue.Get(ctx, tenant, id)
}

func (q *downQueue) Cancel(ctx context.Context, tenant, id string) error {
	if q.down.Load() {
		return errDown
	}
	return q.Queue.Cancel(ctx, tenant, id)
}

func (q *downQueue) List(ctx context.Context, tenant string, opts queue.ListOptions) ([]queue.Record, error) {
	if q.down.Load() {
		return nil, errDown
	}
	return q.Queue.List(ctx, tenant, opts)
}

// asyncFixture is a gateway with async inference on a SQLite queue, in
// front of deployment m (a real echo replica).
type asyncFixture struct {
	q   *downQueue
	g   *Gateway
	url string
}

func newAsyncFixture(t *testing.T, a Async, authn Authenticator) *asyncFixture {
	t.Helper()
	s, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	q := &downQueue{Queue: s.Queue(sqlstore.QueueOptions{MaxDepth: 3})}
	a.Queue = q
	tab, rec := &routing.Table{}, &stats.Recorder{}
	tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(t, "r1")}, Stats: rec})
	act := activator.New(tab, &publisher{tab: tab, rec: rec}, activator.Options{Timeout: 300 * time.Millisecond})
	g := New(tab, act, Options{Metrics: NewMetrics(prometheus.NewRegistry()), HoldTimeout: 200 * time.Millisecond,
		MaxBodyBytes: 4096, Auth: authn, Async: &a})
	return &asyncFixture{q: q, g: g, url: serve(t, g)}
}

// do sends a request with headers (name, value pairs) and returns the
// answer with its body read.
func do(t *testing.T, method, url, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

// submit posts an async infer request and returns its id, failing t
// unless it was accepted.
func (f *asyncFixture) submit(t *testing.T, headers ...string) string {
	t.Helper()
	resp, out := do(t, "POST", f.url+"/v2/models/m/infer", body, append([]string{"Prefer", "respond-async"}, headers...)...)
	var st asyncStatus
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal([]byte(out), &st) != nil || !queue.ValidID(st.ID) {
		t.Fatalf("async submit = %d %s, want 202 with an id", resp.StatusCode, out)
	}
	if loc := resp.Header.Get("Location"); loc != "/v2/async/"+st.ID || st.Location != loc {
		t.Errorf("Location = %q (body %q), want /v2/async/%s", loc, st.Location, st.ID)
	}
	if p := resp.Header.Get("Preference-Applied"); p != "respond-async" {
		t.Errorf("Preference-Applied = %q, want respond-async", p)
	}
	return st.ID
}

func TestAsyncSubmitAndPoll(t *testing.T) {
	f := newAsyncFixture(t, Async{}, nil)
	// The whole body is the JSON header: the binary extension's form of a
	// request without binary data, which the worker must pass on as is.
	id := f.submit(t, DefaultTenantHeader, "acme", "Inference-Header-Content-Length", strconv.Itoa(len(body)))

	resp, out := do(t, "GET", f.url+"/v2/async/"+id, "", DefaultTenantHeader, "acme")
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Retry-After") != "1" || !strings.Contains(out, `"state":"pending"`) {
		t.Errorf("GET while pending = %d %s (Retry-After %q), want 202 pending with Retry-After 1", resp.StatusCode, out, resp.Header.Get("Retry-After"))
	}
	rec, err := f.q.Get(context.Background(), "acme", id)
	if err != nil || rec.Deployment != "m" || rec.Tenant != "acme" {
		t.Fatalf("stored record = %+v, %v; want deployment m, tenant acme", rec, err)
	}
	rs, err := f.q.Claim(context.Background(), "m", 1, time.Minute)
	if err != nil || len(rs) != 1 {
		t.Fatalf("Claim = %v, %v", rs, err)
	}
	if r := rs[0]; string(r.Body) != body || r.ContentType != "application/json" || r.HeaderLength != int64(len(body)) || r.Priority != queue.PriorityInteractive {
		t.Errorf("stored request: body %q, content type %q, header length %d, priority %d", r.Body, r.ContentType, r.HeaderLength, r.Priority)
	}
	if err := f.q.Release(context.Background(), rs[0].ID, rs[0].LeaseToken, time.Now()); err != nil {
		t.Fatal(err)
	}

	// A worker runs it through the gateway's chain, in process.
	w := queue.NewWorker(f.q, f.g, queue.WorkerOptions{Poll: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if resp, out = do(t, "GET", f.url+"/v2/async/"+id, "", DefaultTenantHeader, "acme"); resp.StatusCode != http.StatusAccepted {
			break
		}
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get(ResultStatusHeader) != "200" || !strings.Contains(out, `"data":[1,2]`) {
		t.Errorf("GET when done = %d %s (%s %q), want 200 with the echo answer and status 200", resp.StatusCode, out, ResultStatusHeader, resp.Header.Get(ResultStatusHeader))
	}
	// Another tenant's view of the same id is that of an unknown id.
	resp, other := do(t, "GET", f.url+"/v2/async/"+id, "", DefaultTenantHeader, "globex")
	unknown := queue.NewID()
	resp2, missing := do(t, "GET", f.url+"/v2/async/"+unknown, "", DefaultTenantHeader, "globex")
	if resp.StatusCode != http.StatusNotFound || resp2.StatusCode != http.StatusNotFound ||
		strings.ReplaceAll(other, id, "ID") != strings.ReplaceAll(missing, unknown, "ID") {
		t.Errorf("another tenant's id = %d %s; an unknown id = %d %s; want the same 404", resp.StatusCode, other, resp2.StatusCode, missing)
	}
}

func TestAsyncRefusals(t *testing.T) {
	f := newAsyncFixture(t, Async{MaxBodyBytes: 1024, CallbackHosts: []string{"hooks.example"}}, nil)
	big := strings.Repeat(" ", 2000) + body
	for _, tc := range []struct {
		name     string
		path     string
		body     string
		headers  []string
		down     bool
		status   int
		contains string
	}{
		{"unknown deployment", "/v2/models/nope/infer", body, nil, false, 404, `model \"nope\" not found`},
		{"unknown version", "/v2/models/m/versions/9/infer", body, nil, false, 404, "version"},
		{"over the async limit", "/v2/models/m/infer", big, nil, false, 413, "limit of 1024 bytes (" + AsyncMaxBodyFlag + ")"},
		{"callback not allowed", "/v2/models/m/infer", body, []string{CallbackHeader, "https://evil.example/x"}, false, 400, CallbackHostsFlag},
		{"callback not a URL", "/v2/models/m/infer", body, []string{CallbackHeader, "file:///etc/passwd"}, false, 400, CallbackHostsFlag},
		{"bad priority", "/v2/models/m/infer", body, []string{PriorityHeader, "urgent"}, false, 400, "urgent"},
		{"store down", "/v2/models/m/infer", body, nil, true, 503, "nothing was stored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.q.down.Store(tc.down)
			defer f.q.down.Store(false)
			before, _ := f.q.Depth(context.Background(), "m")
			resp, out := do(t, "POST", f.url+tc.path, tc.body, append([]string{"Prefer", "respond-async"}, tc.headers...)...)
			if resp.StatusCode != tc.status || !strings.Contains(out, tc.contains) {
				t.Errorf("= %d %s, want %d containing %q", resp.StatusCode, out, tc.status, tc.contains)
			}
			if after, _ := f.q.Depth(context.Background(), "m"); after != before {
				t.Errorf("depth %d → %d: a refused request was stored", before, after)
			}
		})
	}
	// Too large for the queue's store: 413 naming --async-payloads.
	f.q.tooLarge.Store(true)
	resp, out := do(t, "POST", f.url+"/v2/models/m/infer", body, "Prefer", "respond-async")
	f.q.tooLarge.Store(false)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(out, "async/too_large") || !strings.Contains(out, "--async-payloads") {
		t.Errorf("submit too large for the store = %d %s, want 413 async/too_large naming --async-payloads", resp.StatusCode, out)
	}
	// An allowed callback, a batch priority.
	id := f.submit(t, CallbackHeader, "https://hooks.example/ebb", PriorityHeader, "batch")
	rs, err := f.q.Claim(context.Background(), "m", 1, time.Minute)
	if err != nil || len(rs) != 1 || rs[0].ID != id || rs[0].Callback != "https://hooks.example/ebb" || rs[0].Priority != queue.PriorityBatch {
		t.Errorf("stored = %+v, %v; want %s with its callback at batch priority", rs, err, id)
	}
	// The queue is full (MaxDepth 3): 503, nothing stored.
	f.submit(t)
	f.submit(t)
	resp, out = do(t, "POST", f.url+"/v2/models/m/infer", body, "Prefer", "respond-async")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(out, "too many async requests") {
		t.Errorf("submit to a full queue = %d %s, want 503", resp.StatusCode, out)
	}
}

func TestAsyncGetRoute(t *testing.T) {
	f := newAsyncFixture(t, Async{}, nil)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/v2/async/" + queue.NewID(), 404},
		{"GET", "/v2/async/../../etc/passwd", 404},
		{"GET", "/v2/async/", 200}, // the list
		{"GET", "/v2/async", 200},
		{"POST", "/v2/async", 405},
		{"POST", "/v2/async/" + queue.NewID(), 405},
		{"PUT", "/v2/async/" + queue.NewID(), 405},
		{"DELETE", "/v2/async/" + queue.NewID(), 404},
		{"DELETE", "/v2/async/*", 404},
	} {
		if resp, out := do(t, tc.method, f.url+tc.path, ""); resp.StatusCode != tc.status {
			t.Errorf("%s %s = %d %s, want %d", tc.method, tc.path, resp.StatusCode, out, tc.status)
		}
	}
	// Without Async, the path is the gateway's 404 and Prefer is ignored.
	tab := &routing.Table{}
	tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(t, "r1")}, Stats: &stats.Recorder{}})
	act := activator.New(tab, &publisher{tab: tab}, activator.Options{Timeout: 300 * time.Millisecond})
	url := serve(t, New(tab, act, Options{Metrics: NewMetrics(prometheus.NewRegistry())}))
	if resp, out := do(t, "GET", url+"/v2/async/"+queue.NewID(), ""); resp.StatusCode != 404 {
		t.Errorf("GET /v2/async/ without Async = %d %s, want 404", resp.StatusCode, out)
	}
	if resp, out := do(t, "POST", url+"/v2/models/m/infer", body, "Prefer", "respond-async"); resp.StatusCode != 200 || !strings.Contains(out, `"data":[1,2]`) {
		t.Errorf("respond-async without Async = %d %s, want the synchronous answer", resp.StatusCode, out)
	}
}

func TestWantsAsync(t *testing.T) {
	g := &Gateway{opts: Options{Async: &Async{}}}
	for _, tc := range []struct {
		prefer []string
		want   bool
	}{
		{nil, false},
		{[]string{"respond-async"}, true},
		{[]string{"RESPOND-ASYNC"}, true},
		{[]string{"wait=5, respond-async"}, true},
		{[]string{"respond-async; x=1"}, true},
		{[]string{"handling=lenient", "respond-async"}, true},
		{[]string{"handling=lenient"}, false},
		{[]string{"respond-asynchronously"}, false},
		{[]string{"return=respond-async"}, false},
	} {
		var ctx fasthttp.RequestCtx
		for _, p := range tc.prefer {
			ctx.Request.Header.Add("Prefer", p)
		}
		if got := g.wantsAsync(&ctx); got != tc.want {
			t.Errorf("wantsAsync(Prefer: %q) = %v, want %v", tc.prefer, got, tc.want)
		}
	}
}

// addTenant adds a token of tenant with scope and returns its secret.
func (m *tokenMap) addTenant(t *testing.T, tenant, scope string) string {
	t.Helper()
	secret := m.add(t, scope)
	id, _, _ := auth.ParseToken(secret)
	tok := m.m[id]
	tok.Tenant = tenant
	m.m[id] = tok
	return secret
}

// TestAsyncAuth: with auth on, polling needs a valid token; another
// tenant's token, or one that may not predict the deployment, sees 404.
func TestAsyncAuth(t *testing.T) {
	tokens := &tokenMap{m: map[string]auth.Token{}}
	v := auth.NewVerifier(tokens, 0, nil)
	acme, globex, acmeOther := tokens.addTenant(t, "acme", "predict:m"), tokens.addTenant(t, "globex", "predict:m"), tokens.addTenant(t, "acme", "predict:other")
	f := newAsyncFixture(t, Async{}, v)
	id := f.submit(t, "Authorization", "Bearer "+acme)
	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"no token", "", 401},
		{"owner", acme, 202},
		{"another tenant", globex, 404},
		{"same tenant, no scope for the deployment", acmeOther, 404},
	} {
		var h []string
		if tc.token != "" {
			h = []string{"Authorization", "Bearer " + tc.token}
		}
		if resp, out := do(t, "GET", f.url+"/v2/async/"+id, "", h...); resp.StatusCode != tc.status {
			t.Errorf("%s: GET = %d %s, want %d", tc.name, resp.StatusCode, out, tc.status)
		}
	}
}
