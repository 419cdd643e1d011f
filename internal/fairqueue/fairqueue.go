// Package fairqueue admits a deployment's requests up to a concurrency
// capacity and queues the rest, and hands each freed slot to the next
// request in fair order: by strict priority level (Interactive before
// Batch) and, within a level, round robin over tenants (deficit round robin
// with a weight per tenant, 1 unless Options.Weight says otherwise). One
// tenant's burst therefore never starves another: a tenant with a request
// waiting is served after at most the sum of the other waiting tenants'
// weights in grants at its level, and a tenant that was idle joins the
// current round, ahead of the tenants that already used their turn in it
// (order.go). It is the fair queueing of Kubernetes
// API Priority and Fairness cut down to one queue per tenant and two
// levels.
//
// The contract:
//   - Acquire returns a release func once the request holds a slot; the
//     caller calls it exactly once, when the request is done.
//   - While a slot is free and nobody waits, Acquire takes it with atomics
//     alone: no lock and no allocation (BenchmarkAcquireFree).
//   - The capacity is set at runtime (SetCapacity): Unlimited (any
//     negative number) admits everything, 0 holds everything, and lowering
//     it revokes no slot, it only delays the next grants.
//
// The queue is bounded twice: at most Options.MaxQueue requests wait per
// Queue and at most Options.MaxQueuePerTenant per tenant. Beyond them
// Acquire fails at once with ErrQueueFull (the gateway's 503) or
// ErrTenantQueueFull (429). A waiter leaves when its context ends or after
// Options.Timeout (ErrTimeout, 503), whichever comes first, and never leaks
// a slot: a grant that races with its leaving goes to the next waiter.
//
// How it fits with the activator: internal/activator holds requests while
// a deployment has no ready replica (bounded per deployment and per
// tenant), wakes the autoscaler, and releases them all once a replica is
// routed. A deployment with spec.scaling.maxConcurrency then admits them
// through its Queue, whose capacity is routing.Route.Capacity
// (maxConcurrency per ready replica), in the order above. Depth counts the
// requests waiting here: demand, which the autoscaler should see as it sees
// the activator's held requests.
package fairqueue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// Unlimited is the capacity that admits every request at once.
const Unlimited = -1

// Defaults of Options, and the bound on a tenant's weight.
const (
	DefaultMaxQueue          = 10000
	DefaultMaxQueuePerTenant = 1000
	DefaultTimeout           = 60 * time.Second
	// MaxWeight is the largest weight, as large as the largest share a
	// tenant's limit may give (serving.MaxLimitShare).
	MaxWeight = 1000
)

// OtherTenants is the key under which TenantDepths sums the tenants it does
// not list one by one.
const OtherTenants = "(other)"

// Errors returned by Acquire, wrapped with the bound that was hit.
var (
	// ErrQueueFull means Options.MaxQueue requests already wait.
	ErrQueueFull = errors.New("too many requests queued for the deployment")
	// ErrTenantQueueFull means the request's tenant already has
	// Options.MaxQueuePerTenant requests waiting.
	ErrTenantQueueFull = errors.New("too many requests queued for the tenant")
	// ErrTimeout means no slot was granted within Options.Timeout.
	ErrTimeout = errors.New("timed out waiting for a free slot")
)

// Options bound how requests wait. Zero fields take the defaults above.
type Options struct {
	// MaxQueue is the most requests waiting in the Queue; default
	// DefaultMaxQueue.
	MaxQueue int
	// MaxQueuePerTenant is the most requests one tenant may have
	// waiting; default DefaultMaxQueuePerTenant.
	MaxQueuePerTenant int
	// Timeout is the longest a request waits; default DefaultTimeout.
	// The request's context may end the wait sooner.
	Timeout time.Duration
	// Weight, when set, gives a tenant's share of the grants at a level
	// relative to the others' (1..MaxWeight; values outside are clamped):
	// a tenant of weight w is granted up to w slots in a row when its
	// turn comes, so large weights make turns long. It is read, under the
	// Queue's lock, when a tenant starts waiting after having had nothing
	// queued: it must be quick and must not call the Queue. nil weighs
	// every tenant 1.
	Weight func(tenant string) int
	// Clock drives the timeout; default the real clock.
	Clock clock.Clock
}

func (o Options) withDefaults() Options {
	if o.MaxQueue <= 0 {
		o.MaxQueue = DefaultMaxQueue
	}
	if o.MaxQueuePerTenant <= 0 {
		o.MaxQueuePerTenant = DefaultMaxQueuePerTenant
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o
}

// Queue admits requests up to a capacity and queues the rest fairly; see
// the package doc. It is safe for concurrent use.
type Queue struct {
	// capacity, inflight and waiting are read without mu, by Acquire's
	// fast path and by release. waiting changes only under mu. A waiter
	// counts itself in waiting before it looks for a free slot, and
	// release frees its slot before it looks at waiting, so one of the
	// two always sees the other: no waiter sleeps beside a free slot.
	capacity atomic.Int64
	inflight atomic.Int64
	waiting  atomic.Int64

	release func() // releaseSlot, bound once so Acquire does not allocate
	opts    Options

	// mu guards tenants, turns and every waiter's place and grant.
	mu      sync.Mutex
	tenants map[string]*tenant // tenants with a request waiting
	turns   [levels]ring
}

// New returns a Queue that admits capacity requests at once (Unlimited
// for any negative capacity).
func New(capacity int, opts Options) *Queue {
	q := &Queue{opts: opts.withDefaults(), tenants: map[string]*tenant{}}
	q.capacity.Store(int64(max(capacity, Unlimited)))
	q.release = q.releaseSlot
	return q
}

// Acquire returns once the request holds a slot, with the func that frees
// it; the caller calls release exactly once. It waits in tenant's queue at
// level prio (a level above Batch counts as Batch) while no slot is free or
// others wait, and fails with ErrQueueFull, ErrTenantQueueFull, ErrTimeout
// or the context's cause. The fast path does not look at ctx: a request
// whose context already ended may get a free slot, and finds out at its
// next step.
func (q *Queue) Acquire(ctx context.Context, tenant string, prio Priority) (release func(), err error) {
	if q.waiting.Load() == 0 && q.take() {
		return q.release, nil
	}
	return q.wait(ctx, tenant, prio)
}

// take claims a free slot, if there is one.
func (q *Queue) take() bool {
	for {
		n := q.inflight.Load()
		if c := q.capacity.Load(); c >= 0 && n >= c {
			return false
		}
		if q.inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// wait queues the request and waits for its grant.
func (q *Queue) wait(ctx context.Context, tenant string, prio Priority) (func(), error) {
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	w := &waiter{ready: make(chan struct{})}
	q.mu.Lock()
	if err := q.pushLocked(w, tenant, min(prio, Batch)); err != nil {
		q.mu.Unlock()
		return nil, err
	}
	q.dispatchLocked()
	granted := w.granted
	q.mu.Unlock()
	if granted {
		return q.release, nil
	}

	timer := q.opts.Clock.NewTimer(q.opts.Timeout)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		return q.release, nil
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-timer.C():
		err = fmt.Errorf("%w after %s", ErrTimeout, q.opts.Timeout)
	}
	q.mu.Lock()
	granted = w.granted
	if !granted {
		q.removeLocked(w)
	}
	q.mu.Unlock()
	if granted {
		// Granted as it gave up: the slot goes to the next waiter.
		q.releaseSlot()
	}
	return nil, err
}

// releaseSlot frees a slot and grants it to the next waiter, if any.
func (q *Queue) releaseSlot() {
	if q.inflight.Add(-1) < 0 {
		panic("fairqueue: release called more often than Acquire succeeded")
	}
	if q.waiting.Load() > 0 {
		q.mu.Lock()
		q.dispatchLocked()
		q.mu.Unlock()
	}
}

// dispatchLocked grants free slots to waiters in fair order.
func (q *Queue) dispatchLocked() {
	for q.waiting.Load() > 0 && q.take() {
		w := q.nextLocked()
		w.granted = true
		close(w.ready)
	}
}

// SetCapacity sets how many requests hold a slot at once: Unlimited for
// any negative n, 0 to hold every new request. Raising it grants slots to
// waiters at once; lowering it takes no slot back.
func (q *Queue) SetCapacity(n int) {
	q.capacity.Store(int64(max(n, Unlimited)))
	if q.waiting.Load() > 0 {
		q.mu.Lock()
		q.dispatchLocked()
		q.mu.Unlock()
	}
}

// Capacity returns the capacity in force (Unlimited when unbounded).
func (q *Queue) Capacity() int { return int(q.capacity.Load()) }

// InFlight returns how many requests hold a slot.
func (q *Queue) InFlight() int { return int(q.inflight.Load()) }

// Depth returns how many requests wait, all tenants and levels together.
func (q *Queue) Depth() int { return int(q.waiting.Load()) }

// TenantDepth returns how many of tenant's requests wait.
func (q *Queue) TenantDepth(tenant string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if t := q.tenants[tenant]; t != nil {
		return t.queued
	}
	return 0
}

// TenantDepths returns the waiting requests of the limit tenants with the
// most waiting, and the sum for every other tenant under OtherTenants, so
// a metric labelled by its keys has at most limit+1 series. Tenants with
// nothing waiting are left out.
func (q *Queue) TenantDepths(limit int) map[string]int {
	type depth struct {
		name string
		n    int
	}
	q.mu.Lock()
	all := make([]depth, 0, len(q.tenants))
	for name, t := range q.tenants {
		all = append(all, depth{name, t.queued})
	}
	q.mu.Unlock()
	slices.SortFunc(all, func(a, b depth) int {
		return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.name, b.name))
	})
	out := make(map[string]int, min(len(all), max(limit, 0)+1))
	for i, d := range all {
		if i < limit {
			out[d.name] = d.n
		} else {
			out[OtherTenants] += d.n
		}
	}
	return out
}

func (q *Queue) weight(tenant string) int {
	if q.opts.Weight == nil {
		return 1
	}
	return min(max(q.opts.Weight(tenant), 1), MaxWeight)
}
