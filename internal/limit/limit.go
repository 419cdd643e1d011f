// Package limit enforces tenant limits on the request path: per tenant,
// and per tenant × deployment, a token bucket (rate per second, burst) and
// a bound on requests in flight (serving.Limit). A request must pass
// every limit that binds it; one it fails is refused with a Refusal that
// names the limit, its value and when to retry, which the gateway answers
// with 429, Retry-After and {"error":{"code":"tenant/rate_limited",...}}.
//
// Which limits bind. For tenant T calling deployment D, at each of two
// levels (all of T's deployments; D alone), T's own limit applies, else
// the default's (tenant "*"), else none. A default binds each tenant
// separately: every tenant gets a bucket of the default's size, not a
// share of one. A limit that bounds nothing exempts its tenant from the
// default at its level.
//
// Cost. A Limiter reads an immutable Table through an atomic pointer;
// Swap replaces it without stopping requests. A tenant that no limit
// binds costs one map lookup (none when no limit is set at all). A bound
// tenant costs a lookup in a sharded map of per-(tenant, deployment)
// states and one short critical section on its own state; nothing is
// allocated except a state the first time a tenant is seen. The time is
// passed in, so tests drive a bucket with a simulated clock.
//
// State across swaps. Bucket levels and counts in flight live in the
// Limiter, keyed by tenant and deployment, not in the Table: a swap keeps
// them, whatever changed. A bucket whose rate or burst changed refills at
// the new rate from its level, cut to the new burst. Sweep drops the
// states that are indistinguishable from new ones (full bucket, nothing
// in flight), so tenants seen once cost no memory for ever.
//
// The cluster split. In a cluster each of N ready gateways enforces a
// share (NewTable's fraction, 1/N) of every limit: rate × 1/N, burst and
// concurrency × 1/N rounded, at least 1 (Scale). The limits hold across
// gateways without a shared counter, on two assumptions that are only
// approximately true: each tenant's requests spread evenly over the
// gateways, and N is known. When a tenant's traffic lands unevenly, the
// busier gateway refuses while the quieter one has budget left: a tenant
// sending exactly its rate, 70/30 over two gateways, is admitted about 80%
// of it (TestSplitError measures this; docs/limits.md gives the figures).
// The error is one-sided for rate: a split never admits more than the
// limit over time, only bursts of up to N × the rounded per-gateway burst.
// Concurrency rounds up to 1 per gateway, so a concurrency limit below N
// admits up to N at once.
package limit

import (
	"fmt"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Kinds of refusal, the label "limit" of ebb_tenant_limited_total.
const (
	KindRate        = "rate"
	KindConcurrency = "concurrency"
)

// Error codes of a refusal, as the gateway answers them.
const (
	CodeRateLimited        = "tenant/rate_limited"
	CodeConcurrencyLimited = "tenant/concurrency_limited"
)

// ConcurrencyRetryAfter is the Retry-After of a refusal for concurrency:
// no refill says when a request in flight ends.
const ConcurrencyRetryAfter = time.Second

// Refusal says which limit refused a request and when to retry.
type Refusal struct {
	// Tenant is the request's tenant.
	Tenant string
	// Limit is the limit that refused, as set (before the cluster split):
	// its Tenant is "*" when the default refused.
	Limit *serving.Limit
	// Kind is KindRate or KindConcurrency.
	Kind string
	// RetryAfter is when the bucket will hold a token again (rate), or
	// ConcurrencyRetryAfter.
	RetryAfter time.Duration
}

// Code is the error code the gateway answers with.
func (r Refusal) Code() string {
	if r.Kind == KindConcurrency {
		return CodeConcurrencyLimited
	}
	return CodeRateLimited
}

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up, at least
// 1: the value of the Retry-After header.
func (r Refusal) RetryAfterSeconds() int {
	return max(1, int(math.Ceil(r.RetryAfter.Seconds())))
}

// Message says, for the client, which limit refused and when to retry:
// `tenant "acme" is over its rate limit of 10 requests/s (burst 20) for
// deployment "diabetes": retry after 1s`.
func (r Refusal) Message() string {
	whose := "its"
	if r.Limit.Tenant == serving.DefaultTenant {
		whose = "the default"
	}
	var what string
	if r.Kind == KindConcurrency {
		what = fmt.Sprintf("concurrency limit of %d requests in flight", r.Limit.Concurrency)
	} else {
		what = fmt.Sprintf("rate limit of %s requests/s (burst %d)", serving.FormatRate(r.Limit.Rate), r.Limit.Burst)
	}
	where := " across its deployments"
	if r.Limit.Deployment != "" {
		where = " for deployment " + strconv.Quote(r.Limit.Deployment)
	}
	return fmt.Sprintf("tenant %s is over %s %s%s: retry after %ds", strconv.Quote(r.Tenant), whose, what, where, r.RetryAfterSeconds())
}

// Error is Message, so that a Refusal can travel as an error.
func (r Refusal) Error() string { return r.Message() }

// Ticket is an admitted request's hold on the concurrency limits that
// bind it. Release it once, when the request ends; the zero Ticket holds
// nothing.
type Ticket struct {
	all, dep *state
}

// Release gives back the ticket's places in flight.
func (t Ticket) Release() {
	if t.all != nil {
		t.all.release()
	}
	if t.dep != nil {
		t.dep.release()
	}
}

// Options configure a Limiter.
type Options struct {
	// Metrics, when set, counts refusals (ebb_tenant_limited_total).
	Metrics *Metrics
}

// Limiter enforces the limits of its current Table. It is safe for
// concurrent use; the zero Limiter is not: use New.
type Limiter struct {
	table   atomic.Pointer[Table]
	metrics *Metrics
	seed    maphash.Seed
	shards  [numShards]shard
}

// numShards is how many locks the states are spread over.
const numShards = 64

// shard holds some of the states; mu guards m.
type shard struct {
	mu sync.RWMutex
	m  map[stateKey]*state
	_  [64]byte // a cache line between shards' fields: no false sharing
}

type stateKey struct {
	tenant, deployment string
}

// New returns a Limiter that admits everything until Swap gives it limits.
func New(opts Options) *Limiter {
	l := &Limiter{metrics: opts.Metrics, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = make(map[stateKey]*state)
	}
	l.table.Store(emptyTable)
	return l
}

// Swap makes t the table of limits that the next requests meet; nil is
// the empty table. Requests in flight keep their tickets, and every
// bucket keeps its level.
func (l *Limiter) Swap(t *Table) {
	if t == nil {
		t = emptyTable
	}
	l.table.Store(t)
}

// Table returns the current table.
func (l *Limiter) Table() *Table { return l.table.Load() }

// Admit decides whether a request of tenant to deployment may proceed at
// now. When ok, the request holds the returned Ticket until it ends; when
// not, Refusal names the limit it failed, and nothing is held.
func (l *Limiter) Admit(tenant, deployment string, now time.Time) (t Ticket, r Refusal, ok bool) {
	tab := l.table.Load()
	if tab.none {
		return Ticket{}, Refusal{}, true
	}
	all, dep := tab.rules(tenant, deployment)
	if all != nil && !all.bounds {
		all = nil // an exemption from the default
	}
	if dep != nil && !dep.bounds {
		dep = nil
	}
	if all == nil && dep == nil {
		return Ticket{}, Refusal{}, true
	}
	nanos := now.UnixNano()
	var allState *state
	var allConc bool
	if all != nil {
		var kind string
		var wait time.Duration
		allState, kind, wait = l.acquire(tenant, "", nanos, all)
		if kind != "" {
			return Ticket{}, l.refuse(tenant, all, kind, wait), false
		}
		allConc = all.conc > 0
	}
	if dep != nil {
		s, kind, wait := l.acquire(tenant, deployment, nanos, dep)
		if kind != "" {
			if allState != nil {
				allState.undo(all)
			}
			return Ticket{}, l.refuse(tenant, dep, kind, wait), false
		}
		if dep.conc > 0 {
			t.dep = s
		}
	}
	if allConc {
		t.all = allState
	}
	return t, Refusal{}, true
}

func (l *Limiter) refuse(tenant string, ru *rule, kind string, wait time.Duration) Refusal {
	r := Refusal{Tenant: tenant, Limit: &ru.set, Kind: kind, RetryAfter: wait}
	l.metrics.refused(r)
	return r
}

// Weight returns tenant's share in fair queueing on deployment: the Share
// of the limit that binds it on deployment, else of its tenant-wide one,
// else 1.
func (l *Limiter) Weight(tenant, deployment string) int32 {
	all, dep := l.table.Load().rules(tenant, deployment)
	for _, r := range []*rule{dep, all} {
		if r != nil && r.set.Share > 0 {
			return r.set.Share
		}
	}
	return 1
}

// acquire takes what ru asks of the state of (tenant, deployment): a place
// in flight and a token. It returns the state, or the kind of refusal and
// when to retry.
func (l *Limiter) acquire(tenant, deployment string, nanos int64, ru *rule) (*state, string, time.Duration) {
	for {
		s := l.state(tenant, deployment)
		kind, wait, dead := s.acquire(nanos, ru)
		if !dead {
			return s, kind, wait
		}
	}
}

// state returns the state of (tenant, deployment), made on first use.
func (l *Limiter) state(tenant, deployment string) *state {
	k := stateKey{tenant, deployment}
	sh := &l.shards[maphash.String(l.seed, tenant)%numShards]
	sh.mu.RLock()
	s := sh.m[k]
	sh.mu.RUnlock()
	if s != nil {
		return s
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s = sh.m[k]; s == nil {
		s = &state{}
		sh.m[k] = s
	}
	return s
}

// Sweep forgets the states that a new one would equal at now: a full
// bucket and nothing in flight. It returns how many it kept. Call it now
// and then (Source.Run does, every poll); a state swept while a request
// is being admitted is found dead and made anew.
func (l *Limiter) Sweep(now time.Time) (kept int) {
	nanos := now.UnixNano()
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, s := range sh.m {
			if s.idle(nanos) {
				delete(sh.m, k)
			}
		}
		kept += len(sh.m)
		sh.mu.Unlock()
	}
	return kept
}
