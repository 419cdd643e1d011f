package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/fairqueue"
	"github.com/ebb-ml/ebb/internal/limit"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// gatedReplica is a replica that answers one request per token sent on
// gate, recording the id of each request as it arrives (send makes it
// "tenant/priority").
type gatedReplica struct {
	gate chan struct{}
	mu   sync.Mutex
	seen []string
}

func newGatedReplica(t *testing.T) (*gatedReplica, *balance.Endpoint) {
	r := &gatedReplica{gate: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		var in struct{ ID string }
		json.NewDecoder(req.Body).Decode(&in)
		r.seen = append(r.seen, in.ID)
		r.mu.Unlock()
		select {
		case <-r.gate:
		case <-req.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"model_name":"m","outputs":[]}`))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(r.gate) })
	return r, balance.NewEndpoint("r1", srv.URL)
}

func (r *gatedReplica) arrived() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// cappedFixture serves deployment m, capped at one request in flight, on
// one gated replica.
func cappedFixture(t *testing.T, qopts fairqueue.Options) (*gatedReplica, *routing.Route, string) {
	rep, ep := newGatedReplica(t)
	tab := &routing.Table{QueueOptions: qopts}
	rt := tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{ep}, Stats: &stats.Recorder{}, MaxConcurrency: 1})
	act := activator.New(tab, &publisher{tab: tab}, activator.Options{Timeout: 5 * time.Second})
	g := New(tab, act, Options{Metrics: NewMetrics(prometheus.NewRegistry()), HoldTimeout: 5 * time.Second})
	t.Cleanup(g.Close)
	return rep, rt, serve(t, g)
}

type tenantAnswer struct {
	code int
	body string
	hdr  http.Header
}

// send posts an infer request as tenant with priority prio, in the
// background; its answer arrives on the returned channel.
func send(t *testing.T, url, tenant, prio string) <-chan tenantAnswer {
	out := make(chan tenantAnswer, 1)
	b := `{"id":"` + tenant + "/" + prio + `",` + body[1:]
	req, _ := http.NewRequest(http.MethodPost, url+"/v2/models/m/infer", strings.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(DefaultTenantHeader, tenant)
	if prio != "" {
		req.Header.Set(PriorityHeader, prio)
	}
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- tenantAnswer{code: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		out <- tenantAnswer{resp.StatusCode, b.String(), resp.Header}
	}()
	return out
}

// TestFairAdmission: a capped deployment serves the requests waiting for
// it by priority, then round robin over tenants, whatever order they came
// in; a tenant over its queue bound gets 429 and the others still get in.
func TestFairAdmission(t *testing.T) {
	rep, rt, url := cappedFixture(t, fairqueue.Options{MaxQueuePerTenant: 4})
	q := rt.Queue()
	var answers []<-chan tenantAnswer
	queue := func(tenant, prio string) {
		n := q.Depth()
		answers = append(answers, send(t, url, tenant, prio))
		waitFor(t, tenant+" queued", func() bool { return q.Depth() == n+1 })
	}
	answers = append(answers, send(t, url, "a", ""))
	waitFor(t, "the first request at the replica", func() bool { return len(rep.arrived()) == 1 })
	for range 4 {
		queue("a", "")
	}
	// a's fifth waiting request is over its bound: 429, at once.
	over := <-send(t, url, "a", "")
	if over.code != http.StatusTooManyRequests || over.hdr.Get("Retry-After") == "" || !strings.Contains(over.body, "tenant/queue_full") || !strings.Contains(over.body, `tenant \"a\"`) {
		t.Errorf("a's request over its queue bound: %d %s (Retry-After %q); want 429 tenant/queue_full naming the tenant, with Retry-After", over.code, over.body, over.hdr.Get("Retry-After"))
	}
	queue("b", "batch")
	queue("b", "")
	queue("c", "")
	for range len(answers) {
		rep.gate <- struct{}{}
	}
	for i, ch := range answers {
		if a := <-ch; a.code != http.StatusOK {
			t.Errorf("request %d: %d %s", i, a.code, a.body)
		}
	}
	want := []string{"a/", "a/", "b/", "c/", "a/", "a/", "a/", "b/batch"}
	if diff := cmp.Diff(want, rep.arrived()); diff != "" {
		t.Errorf("order at the replica (-want +got):\n%s", diff)
	}
	if q.InFlight() != 0 || q.Depth() != 0 {
		t.Errorf("after all answers: %d in flight, %d waiting; want 0, 0", q.InFlight(), q.Depth())
	}
}

func TestBadPriority(t *testing.T) {
	_, _, url := cappedFixture(t, fairqueue.Options{})
	a := <-send(t, url, "a", "urgent")
	if a.code != http.StatusBadRequest || !strings.Contains(a.body, "Ebb-Priority") {
		t.Errorf("priority urgent: %d %s; want 400 naming the header", a.code, a.body)
	}
}

// limitedFixture serves deployment m on one gated replica (uncapped) with
// tenant limits.
func limitedFixture(t *testing.T, limits ...serving.Limit) (*gatedReplica, string) {
	rep, ep := newGatedReplica(t)
	tab := &routing.Table{}
	tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{ep}, Stats: &stats.Recorder{}})
	act := activator.New(tab, &publisher{tab: tab}, activator.Options{Timeout: 5 * time.Second})
	lim := limit.New(limit.Options{})
	tt, err := limit.NewTable(limits, 1)
	if err != nil {
		t.Fatal(err)
	}
	lim.Swap(tt)
	g := New(tab, act, Options{Metrics: NewMetrics(prometheus.NewRegistry()), HoldTimeout: 5 * time.Second, Limiter: lim})
	t.Cleanup(g.Close)
	return rep, serve(t, g)
}

// TestTenantRateLimit: a tenant over its rate gets 429 with Retry-After
// and a body naming the limit, before anything reaches a replica; another
// tenant is not affected.
func TestTenantRateLimit(t *testing.T) {
	rep, url := limitedFixture(t, serving.Limit{Tenant: "a", Rate: 0.01, Burst: 1})
	go func() {
		for range 2 {
			rep.gate <- struct{}{}
		}
	}()
	if a := <-send(t, url, "a", ""); a.code != http.StatusOK {
		t.Fatalf("a's first request: %d %s", a.code, a.body)
	}
	a := <-send(t, url, "a", "")
	if a.code != http.StatusTooManyRequests || a.hdr.Get("Retry-After") == "" || !strings.Contains(a.body, "tenant/rate_limited") || !strings.Contains(a.body, "rate limit of") {
		t.Errorf("a's second request: %d %s (Retry-After %q); want 429 tenant/rate_limited naming the limit, with Retry-After", a.code, a.body, a.hdr.Get("Retry-After"))
	}
	if b := <-send(t, url, "b", ""); b.code != http.StatusOK {
		t.Errorf("b's request: %d %s; want 200", b.code, b.body)
	}
	if n := len(rep.arrived()); n != 2 {
		t.Errorf("%d requests reached the replica, want 2 (the refused one must not)", n)
	}
}

// TestTenantConcurrencyLimit: a tenant with as many requests in flight as
// its limit gets 429 for the next, and is admitted again once one ends.
func TestTenantConcurrencyLimit(t *testing.T) {
	rep, url := limitedFixture(t, serving.Limit{Tenant: "*", Concurrency: 1})
	first := send(t, url, "a", "")
	waitFor(t, "a's first request at the replica", func() bool { return len(rep.arrived()) == 1 })
	a := <-send(t, url, "a", "")
	if a.code != http.StatusTooManyRequests || !strings.Contains(a.body, "tenant/concurrency_limited") || !strings.Contains(a.body, "the default concurrency limit of 1") {
		t.Errorf("a's second request in flight: %d %s; want 429 tenant/concurrency_limited under the default limit", a.code, a.body)
	}
	other := send(t, url, "b", "") // b has its own place under the default
	waitFor(t, "b's request at the replica", func() bool { return len(rep.arrived()) == 2 })
	rep.gate <- struct{}{}
	rep.gate <- struct{}{}
	if a := <-first; a.code != http.StatusOK {
		t.Fatalf("a's first: %d %s", a.code, a.body)
	}
	if b := <-other; b.code != http.StatusOK {
		t.Fatalf("b's: %d %s", b.code, b.body)
	}
	again := send(t, url, "a", "")
	rep.gate <- struct{}{}
	if a := <-again; a.code != http.StatusOK {
		t.Errorf("a's request after its first ended: %d %s; want 200", a.code, a.body)
	}
}

// TestQueueCollector: the queue of a capped deployment shows its waiting
// requests by tenant, its slots in use and its capacity.
func TestQueueCollector(t *testing.T) {
	rep, rt, url := cappedFixture(t, fairqueue.Options{})
	q := rt.Queue()
	first := send(t, url, "a", "")
	waitFor(t, "the first request at the replica", func() bool { return len(rep.arrived()) == 1 })
	second := send(t, url, "b", "")
	waitFor(t, "b's request waiting", func() bool { return q.Depth() == 1 })
	tab := &routing.Table{}
	tab.Publish(routing.Route{Deployment: "uncapped"})
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewQueueCollector(routesOf{rt, tab.Lookup("uncapped")}))
	want := `
# HELP ebb_gateway_queue_capacity Slots of a capped deployment: spec.scaling.maxConcurrency per ready replica.
# TYPE ebb_gateway_queue_capacity gauge
ebb_gateway_queue_capacity{deployment="m"} 1
# HELP ebb_gateway_queue_depth Requests waiting for a slot of a deployment at its spec.scaling.maxConcurrency, by tenant (10 deepest; the rest as (other)).
# TYPE ebb_gateway_queue_depth gauge
ebb_gateway_queue_depth{deployment="m",tenant="b"} 1
# HELP ebb_gateway_queue_in_flight Requests holding a slot of a capped deployment.
# TYPE ebb_gateway_queue_in_flight gauge
ebb_gateway_queue_in_flight{deployment="m"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	rep.gate <- struct{}{}
	rep.gate <- struct{}{}
	<-first
	<-second
}

// routesOf lists fixed routes.
type routesOf []*routing.Route

func (r routesOf) All() []*routing.Route { return r }
