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
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
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
