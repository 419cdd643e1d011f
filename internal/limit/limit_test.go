package limit

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/serving"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// newLimiter returns a Limiter enforcing limits whole.
func newLimiter(t testing.TB, limits ...serving.Limit) *Limiter {
	t.Helper()
	l := New(Options{})
	swap(t, l, 1, limits...)
	return l
}

func swap(t testing.TB, l *Limiter, fraction float64, limits ...serving.Limit) {
	t.Helper()
	tab, err := NewTable(limits, fraction)
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	l.Swap(tab)
}

// step is one request in a scripted test: at is after t0; want is ""
// for admitted, else the refusal's kind and the limit's key.
type step struct {
	at         time.Duration
	tenant     string
	deployment string
	want       string // "", or "rate acme/" style: kind, tenant/deployment of the refusing limit
	release    bool   // release the ticket at once
}

func (s step) run(t *testing.T, l *Limiter, i int) Ticket {
	t.Helper()
	tk, r, ok := l.Admit(s.tenant, s.deployment, t0.Add(s.at))
	got := ""
	if !ok {
		got = r.Kind + " " + r.Limit.Tenant + "/" + r.Limit.Deployment
	}
	if got != s.want {
		t.Errorf("step %d: Admit(%q, %q) at +%v = %q, want %q", i, s.tenant, s.deployment, s.at, got, s.want)
	}
	if s.release {
		tk.Release()
	}
	return tk
}

func TestAdmit(t *testing.T) {
	acme := serving.Limit{Tenant: "acme", Rate: 10, Burst: 2}
	tests := []struct {
		name   string
		limits []serving.Limit
		steps  []step
	}{
		{
			name:   "no limits",
			limits: nil,
			steps:  []step{{tenant: "acme", deployment: "d"}, {tenant: "", deployment: ""}},
		},
		{
			name:   "rate: a burst, then one per 1/rate",
			limits: []serving.Limit{acme},
			steps: []step{
				{tenant: "acme", deployment: "d"},
				{tenant: "acme", deployment: "e"},
				{tenant: "acme", deployment: "d", want: "rate acme/"},
				{at: 99 * time.Millisecond, tenant: "acme", deployment: "d", want: "rate acme/"},
				{at: 100 * time.Millisecond, tenant: "acme", deployment: "d"},
				{at: 100 * time.Millisecond, tenant: "other", deployment: "d"}, // no limit
				{at: time.Hour, tenant: "acme", deployment: "d"},
				{at: time.Hour, tenant: "acme", deployment: "d"},
				{at: time.Hour, tenant: "acme", deployment: "d", want: "rate acme/"}, // refilled to the burst, no more
			},
		},
		{
			name:   "time going back adds nothing",
			limits: []serving.Limit{{Tenant: "acme", Rate: 1, Burst: 1}},
			steps: []step{
				{at: time.Second, tenant: "acme"},
				{tenant: "acme", want: "rate acme/"},
				{at: 1500 * time.Millisecond, tenant: "acme", want: "rate acme/"},
				{at: 2 * time.Second, tenant: "acme"},
			},
		},
		{
			name:   "concurrency: places come back on release",
			limits: []serving.Limit{{Tenant: "acme", Concurrency: 2}},
			steps: []step{
				{tenant: "acme", deployment: "d"},
				{tenant: "acme", deployment: "e", release: true},
				{tenant: "acme", deployment: "e"},
				{tenant: "acme", deployment: "d", want: "concurrency acme/"},
			},
		},
		{
			name: "the default binds each tenant apart",
			limits: []serving.Limit{
				{Tenant: "*", Concurrency: 1},
				{Tenant: "big", Concurrency: 2},
				{Tenant: "free"}, // exempt from the default
			},
			steps: []step{
				{tenant: "a"}, {tenant: "a", want: "concurrency */"},
				{tenant: "b"}, {tenant: "b", want: "concurrency */"},
				{tenant: "big"}, {tenant: "big"}, {tenant: "big", want: "concurrency big/"},
				{tenant: "free"}, {tenant: "free"}, {tenant: "free"},
			},
		},
		{
			name: "a deployment's limit and the tenant-wide one both bind",
			limits: []serving.Limit{
				{Tenant: "acme", Concurrency: 3},
				{Tenant: "acme", Deployment: "d", Concurrency: 1},
				{Tenant: "*", Deployment: "e", Rate: 1, Burst: 1},
			},
			steps: []step{
				{tenant: "acme", deployment: "d"},
				{tenant: "acme", deployment: "d", want: "concurrency acme/d"}, // gives back its tenant-wide place
				{tenant: "acme", deployment: "e"},
				{tenant: "acme", deployment: "e", want: "rate */e"},
				{tenant: "acme", deployment: "f"},
				{tenant: "acme", deployment: "f", want: "concurrency acme/"},
				{tenant: "zed", deployment: "e"},
				{tenant: "zed", deployment: "e", want: "rate */e"},
				{tenant: "zed", deployment: "f"}, {tenant: "zed", deployment: "f"},
			},
		},
		{
			name: "a tenant's own limit on a deployment replaces the default's there only",
			limits: []serving.Limit{
				{Tenant: "*", Rate: 1, Burst: 1},
				{Tenant: "*", Deployment: "d", Rate: 1, Burst: 2},
				{Tenant: "acme", Deployment: "d", Rate: 0.1, Burst: 3},
			},
			steps: []step{
				{tenant: "acme", deployment: "d"},
				{tenant: "acme", deployment: "d", want: "rate */"}, // the tenant-wide default still binds
				{at: time.Second, tenant: "acme", deployment: "d"},
				{at: 2 * time.Second, tenant: "acme", deployment: "d"},
				{at: 3 * time.Second, tenant: "acme", deployment: "d", want: "rate acme/d"},
			},
		},
		{
			name: "a refusal at the deployment gives back the tenant-wide token",
			limits: []serving.Limit{
				{Tenant: "acme", Rate: 1, Burst: 2},
				{Tenant: "acme", Deployment: "d", Rate: 1, Burst: 1},
			},
			steps: []step{
				{tenant: "acme", deployment: "d"},
				{tenant: "acme", deployment: "d", want: "rate acme/d"},
				{tenant: "acme", deployment: "e"}, // the second tenant-wide token is still there
				{tenant: "acme", deployment: "e", want: "rate acme/"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(t, tt.limits...)
			for i, s := range tt.steps {
				s.run(t, l, i)
			}
		})
	}
}

func TestRefusal(t *testing.T) {
	tests := []struct {
		limit     serving.Limit
		kind      string
		wait      time.Duration
		code      string
		retry     int
		message   string
		forTenant string
	}{
		{serving.Limit{Tenant: "acme", Deployment: "diabetes", Rate: 10, Burst: 20}, KindRate, 100 * time.Millisecond, CodeRateLimited, 1,
			`tenant "acme" is over its rate limit of 10 requests/s (burst 20) for deployment "diabetes": retry after 1s`, "acme"},
		{serving.Limit{Tenant: "acme", Rate: 0.5, Burst: 1}, KindRate, 1500 * time.Millisecond, CodeRateLimited, 2,
			`tenant "acme" is over its rate limit of 0.5 requests/s (burst 1) across its deployments: retry after 2s`, "acme"},
		{serving.Limit{Tenant: "*", Deployment: "d", Concurrency: 5}, KindConcurrency, ConcurrencyRetryAfter, CodeConcurrencyLimited, 1,
			`tenant "team \"x\"" is over the default concurrency limit of 5 requests in flight for deployment "d": retry after 1s`, `team "x"`},
	}
	for _, tt := range tests {
		r := Refusal{Tenant: tt.forTenant, Limit: &tt.limit, Kind: tt.kind, RetryAfter: tt.wait}
		if r.Code() != tt.code || r.RetryAfterSeconds() != tt.retry || r.Message() != tt.message || r.Error() != tt.message {
			t.Errorf("Refusal %+v = code %q, retry %d, message\n%s\nwant %q, %d,\n%s", r, r.Code(), r.RetryAfterSeconds(), r.Message(), tt.code, tt.retry, tt.message)
		}
	}
}

// TestRetryAfter checks that a rate refusal's RetryAfter is when the
// bucket holds a token again, and that a request then passes.
func TestRetryAfter(t *testing.T) {
	l := newLimiter(t, serving.Limit{Tenant: "acme", Rate: 4, Burst: 1})
	now := t0
	if _, _, ok := l.Admit("acme", "d", now); !ok {
		t.Fatal("first request refused")
	}
	now = now.Add(100 * time.Millisecond)
	_, r, ok := l.Admit("acme", "d", now)
	if ok || r.RetryAfter != 150*time.Millisecond {
		t.Fatalf("second request: ok %v, RetryAfter %v; want refused, 150ms", ok, r.RetryAfter)
	}
	if _, _, ok := l.Admit("acme", "d", now.Add(r.RetryAfter-time.Millisecond)); ok {
		t.Errorf("admitted before RetryAfter")
	}
	if _, _, ok := l.Admit("acme", "d", now.Add(r.RetryAfter)); !ok {
		t.Errorf("refused at RetryAfter")
	}
}

// TestSwapKeepsState checks that buckets and counts in flight live on
// across swaps: unchanged, changed, and away and back.
func TestSwapKeepsState(t *testing.T) {
	rate := serving.Limit{Tenant: "acme", Rate: 1, Burst: 3}
	conc := serving.Limit{Tenant: "acme", Deployment: "d", Concurrency: 2}
	l := newLimiter(t, rate, conc)
	var held []Ticket
	for range 2 {
		tk, _, ok := l.Admit("acme", "d", t0)
		if !ok {
			t.Fatal("refused while under the limits")
		}
		held = append(held, tk)
	}
	// Unchanged limits, new table: one token left, both places taken.
	swap(t, l, 1, rate, conc)
	steps := []step{{tenant: "acme", deployment: "e"}, {tenant: "acme", deployment: "e", want: "rate acme/"}}
	for i, s := range steps {
		s.run(t, l, i)
	}
	// Bigger burst: the bucket keeps its level (empty) and refills.
	bigger := rate
	bigger.Burst = 10
	swap(t, l, 1, bigger, conc)
	if _, _, ok := l.Admit("acme", "e", t0.Add(100*time.Millisecond)); ok {
		t.Errorf("a bigger burst refilled the bucket at once")
	}
	if _, r, ok := l.Admit("acme", "d", t0.Add(10*time.Second)); ok || r.Kind != KindConcurrency {
		t.Errorf("after swaps: Admit = %v, %+v; want refused for concurrency: the places in flight are kept", ok, r)
	}
	// Limits gone and back: the counts in flight are still right.
	swap(t, l, 1)
	for _, tk := range held {
		tk.Release()
	}
	swap(t, l, 1, conc)
	for i, s := range []step{{tenant: "acme", deployment: "d"}, {tenant: "acme", deployment: "d"}, {tenant: "acme", deployment: "d", want: "concurrency acme/d"}} {
		s.run(t, l, i)
	}
}

func TestSweep(t *testing.T) {
	l := newLimiter(t, serving.Limit{Tenant: "*", Rate: 1, Burst: 2}, serving.Limit{Tenant: "*", Deployment: "d", Concurrency: 1})
	for _, tenant := range []string{"a", "b", "c"} {
		l.Admit(tenant, "x", t0) // a bucket with a token taken
	}
	held, _, _ := l.Admit("d", "d", t0) // a place in flight, and a token
	if kept := l.Sweep(t0); kept != 5 {
		t.Errorf("Sweep at once kept %d states, want 5", kept)
	}
	if kept := l.Sweep(t0.Add(time.Second)); kept != 1 {
		t.Errorf("Sweep once the buckets refilled kept %d states, want 1 (the one in flight)", kept)
	}
	held.Release()
	if kept := l.Sweep(t0.Add(time.Second)); kept != 0 {
		t.Errorf("Sweep after release kept %d states, want 0", kept)
	}
	// A state swept while a request held a pointer to it is made anew.
	s := l.state("a", "")
	l.Sweep(t0.Add(time.Hour))
	if _, _, dead := s.acquire(t0.UnixNano(), &rule{rate: 1, burst: 1}); !dead {
		t.Errorf("a swept state still takes requests")
	}
	if _, _, ok := l.Admit("a", "x", t0.Add(time.Hour)); !ok {
		t.Errorf("a tenant whose state was swept is refused")
	}
}

// TestConcurrentAdmit checks the bound in flight under contention: many
// goroutines, one tenant, a tenant-wide and a deployment's limit.
func TestConcurrentAdmit(t *testing.T) {
	l := newLimiter(t, serving.Limit{Tenant: "acme", Concurrency: 5}, serving.Limit{Tenant: "acme", Deployment: "d", Concurrency: 3})
	var inD, inAll, maxD, maxAll atomic.Int32
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			dep := "d"
			if g%2 == 1 {
				dep = "e"
			}
			for i := range 500 {
				tk, _, ok := l.Admit("acme", dep, t0)
				if !ok {
					continue
				}
				all := inAll.Add(1)
				maxOf(&maxAll, all)
				if dep == "d" {
					maxOf(&maxD, inD.Add(1))
				}
				if i%7 == 0 {
					l.Sweep(t0) // sweeping must not lose a state in use
				}
				if dep == "d" {
					inD.Add(-1)
				}
				inAll.Add(-1)
				tk.Release()
			}
		})
	}
	wg.Wait()
	if maxAll.Load() > 5 || maxD.Load() > 3 {
		t.Errorf("most in flight = %d (tenant), %d (deployment d); want at most 5 and 3", maxAll.Load(), maxD.Load())
	}
	if kept := l.Sweep(t0); kept != 0 {
		t.Errorf("%d states left in flight after every ticket was released", kept)
	}
}

func maxOf(m *atomic.Int32, v int32) {
	for {
		cur := m.Load()
		if v <= cur || m.CompareAndSwap(cur, v) {
			return
		}
	}
}

func TestWeight(t *testing.T) {
	l := newLimiter(t,
		serving.Limit{Tenant: "*", Share: 2},
		serving.Limit{Tenant: "acme", Share: 5, Rate: 1},
		serving.Limit{Tenant: "acme", Deployment: "d", Share: 7},
		serving.Limit{Tenant: "acme", Deployment: "e", Concurrency: 1}, // no share: the tenant-wide one's
	)
	tests := []struct {
		tenant, deployment string
		want               int32
	}{
		{"acme", "d", 7}, {"acme", "e", 5}, {"acme", "x", 5}, {"other", "d", 2},
	}
	for _, tt := range tests {
		if got := l.Weight(tt.tenant, tt.deployment); got != tt.want {
			t.Errorf("Weight(%q, %q) = %d, want %d", tt.tenant, tt.deployment, got, tt.want)
		}
	}
	if got := New(Options{}).Weight("acme", "d"); got != 1 {
		t.Errorf("Weight without limits = %d, want 1", got)
	}
}

func TestScale(t *testing.T) {
	in := serving.Limit{Tenant: "acme", Rate: 10, Burst: 20, Concurrency: 5, Share: 3}
	third := 1.0 / 3
	tests := []struct {
		fraction float64
		want     serving.Limit
	}{
		{1, in},
		{0, in}, // outside (0, 1]: whole
		{1.5, in},
		{0.5, serving.Limit{Tenant: "acme", Rate: 5, Burst: 10, Concurrency: 3, Share: 3}},
		{third, serving.Limit{Tenant: "acme", Rate: 10 * third, Burst: 7, Concurrency: 2, Share: 3}},
		{0.01, serving.Limit{Tenant: "acme", Rate: 0.1, Burst: 1, Concurrency: 1, Share: 3}}, // at least 1
	}
	for _, tt := range tests {
		got := Scale([]serving.Limit{in, {Tenant: "free"}}, tt.fraction)
		want := []serving.Limit{tt.want, {Tenant: "free"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Scale(%v) (-want +got):\n%s", tt.fraction, diff)
		}
	}
}

func TestNewTable(t *testing.T) {
	tab, err := NewTable([]serving.Limit{{Tenant: "b", Rate: 2}, {Tenant: "a", Deployment: "d", Concurrency: 1}, {Tenant: "a", Concurrency: 1}}, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	want := []serving.Limit{{Tenant: "a", Concurrency: 1}, {Tenant: "a", Deployment: "d", Concurrency: 1}, {Tenant: "b", Rate: 2, Burst: 2}}
	if diff := cmp.Diff(want, tab.Limits()); diff != "" || tab.Fraction() != 0.5 {
		t.Errorf("Limits (-want +got), as set, defaulted and sorted:\n%s\nFraction %v", diff, tab.Fraction())
	}
	_, err = NewTable([]serving.Limit{{Tenant: "a b", Rate: -1}, {Tenant: "c"}, {Tenant: "c"}}, 1)
	for _, w := range []string{`tenant "a b"`, "rate: is -1", `tenant "c" is given twice`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("NewTable(bad) error = %v, want it to say %q", err, w)
		}
	}
}

// TestAdmitAllocs checks that admitting costs no allocation once a
// tenant's state exists, and none at all for a tenant no limit binds.
func TestAdmitAllocs(t *testing.T) {
	l := newLimiter(t,
		serving.Limit{Tenant: "acme", Rate: 1e6, Burst: 1e6, Concurrency: 100},
		serving.Limit{Tenant: "acme", Deployment: "d", Concurrency: 100},
		serving.Limit{Tenant: "slow", Rate: slowRate, Burst: 1},
	)
	l.Admit("slow", "d", t0)
	tests := []struct {
		name, tenant string
	}{{"a tenant no limit binds", "nobody"}, {"a bound tenant", "acme"}, {"a refused tenant", "slow"}}
	for _, tt := range tests {
		now := t0
		allocs := testing.AllocsPerRun(1000, func() {
			now = now.Add(time.Microsecond)
			tk, _, _ := l.Admit(tt.tenant, "d", now)
			tk.Release()
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Admit, want 0", tt.name, allocs)
		}
	}
}

// slowRate is a rate so slow that its bucket never refills in a
// test.
const slowRate = serving.MinLimitRate
