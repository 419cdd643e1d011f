// Package activator holds requests for a deployment that has no ready
// replica, wakes the autoscaler, and releases each request as soon as a
// replica is routed, so scaling to zero drops nothing. A deployment its
// owner pinned at zero (routing.Route.ScaledToZero) is the exception: its
// requests fail at once with ErrScaledToZero and nothing is woken.
//
// The hold is bounded three times: a per-deployment queue limit
// (Options.MaxQueue, ErrQueueFull), a per-tenant one within it
// (Options.MaxQueuePerTenant, ErrTenantQueueFull, for requests WaitTenant
// attributes to a tenant), and a deadline per request (the smaller of
// Options.Timeout and the request context's own, ErrTimeout). A request
// that hits one gets an error that the gateway turns into 503 with
// Retry-After (429 for the tenant's bound, which is the tenant's doing);
// it never hangs and is never silently dropped. One tenant's burst thus
// cannot fill a cold deployment's hold for everyone.
//
// The activator does not order what it holds: when a replica is routed it
// releases every held request at once. A deployment with a concurrency
// cap (spec.scaling.maxConcurrency, routing.Route.Capacity) then admits
// them through a fairqueue.Queue, which serves tenants fairly and
// interactive requests before batch ones; without a cap they all go
// through. The activator holds while cold and wakes the autoscaler; the
// fair queue orders admission while the deployment is saturated.
package activator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"k8s.io/utils/clock"
)

// Errors returned by Wait.
var (
	// ErrNotFound means the deployment does not exist (or was deleted while
	// the request waited).
	ErrNotFound = errors.New("deployment not found")
	// ErrQueueFull means too many requests already wait for the deployment.
	ErrQueueFull = errors.New("too many requests waiting for a replica")
	// ErrTenantQueueFull means the request's tenant already has
	// Options.MaxQueuePerTenant requests waiting for the deployment.
	ErrTenantQueueFull = errors.New("too many requests of the tenant waiting for a replica")
	// ErrTimeout means no replica became ready within the hold timeout.
	ErrTimeout = errors.New("timed out waiting for a replica")
	// ErrScaledToZero means the deployment's owner pinned it at zero
	// replicas (spec.replicas: 0): the request is refused at once and the
	// deployment is not woken.
	ErrScaledToZero = errors.New("deployment scaled to zero by its owner")
)

// FailedError means the deployment cannot start replicas; Reason says why.
type FailedError struct{ Reason string }

func (e *FailedError) Error() string { return "deployment cannot start: " + e.Reason }

// Routes is where the activator reads the current route of a deployment.
type Routes interface {
	Lookup(deployment string) *routing.Route
}

// Waker is told that a request waits for a deployment with no ready replica.
type Waker interface {
	Wake(deployment string)
}

// Options bound how requests are held.
type Options struct {
	// MaxQueue is the most requests held per deployment; default 10000.
	MaxQueue int
	// MaxQueuePerTenant is the most requests of one tenant held per
	// deployment; default 1000, a tenth of the default MaxQueue, so ten
	// tenants' bursts fit at once. Requests that name no tenant (Wait,
	// or WaitTenant with "") count against MaxQueue alone.
	MaxQueuePerTenant int
	// Timeout is the longest a request is held; default 60s.
	Timeout time.Duration
	// Clock drives the timeout; default the real clock.
	Clock clock.WithTicker
	// Registerer, when set, receives the ebb_activator_queue_depth gauge.
	Registerer prometheus.Registerer
	// Tracer, when set, records a telemetry.SpanHold for each held
	// request whose context carries a sampled span (trace.go); nil: no
	// tracing, and no cost.
	Tracer trace.Tracer
	// ColdStarts, when set with Tracer, gives the cold start a released
	// hold links to.
	ColdStarts ColdStarts
}

// Activator holds requests until their deployment has a ready endpoint.
type Activator struct {
	routes Routes
	waker  Waker
	opts   Options

	depth *prometheus.GaugeVec // nil without a Registerer

	// mu guards queued and tenants.
	mu      sync.Mutex
	queued  map[string]int // by deployment
	tenants map[holder]int // by deployment and tenant, for named tenants
}

// holder is a tenant holding requests for a deployment.
type holder struct{ deployment, tenant string }

// New returns an Activator that reads routes and wakes the autoscaler
// through waker.
func New(routes Routes, waker Waker, opts Options) *Activator {
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = 10000
	}
	if opts.MaxQueuePerTenant <= 0 {
		opts.MaxQueuePerTenant = 1000
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	a := &Activator{routes: routes, waker: waker, opts: opts, queued: map[string]int{}, tenants: map[holder]int{}}
	if opts.Registerer != nil {
		a.depth = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_activator_queue_depth",
			Help: "Requests held while their deployment has no ready replica.",
		}, []string{"deployment"})
		opts.Registerer.MustRegister(a.depth)
	}
	return a
}

// Timeout returns the hold timeout in force.
func (a *Activator) Timeout() time.Duration { return a.opts.Timeout }

// Wait returns the deployment's route once it has at least one endpoint. It
// returns at once when the route already has one (the warm path), and
// otherwise holds the caller as described in the package doc. It is
// WaitTenant for a request of no named tenant.
func (a *Activator) Wait(ctx context.Context, deployment string) (*routing.Route, error) {
	return a.WaitTenant(ctx, deployment, "")
}

// WaitTenant is Wait for a request of tenant, whose held requests for the
// deployment are bounded by Options.MaxQueuePerTenant ("" names no tenant:
// only MaxQueue applies). The warm path costs what Wait's does: a route
// lookup, no allocation.
func (a *Activator) WaitTenant(ctx context.Context, deployment, tenant string) (*routing.Route, error) {
	r := a.routes.Lookup(deployment)
	if r == nil {
		return nil, ErrNotFound
	}
	if len(r.Endpoints) > 0 {
		return r, nil
	}
	if r.ScaledToZero {
		return nil, ErrScaledToZero
	}
	if a.opts.Tracer != nil {
		return a.holdTraced(ctx, r, deployment, tenant) // trace.go
	}
	return a.hold(ctx, r, deployment, tenant, nil)
}

// hold holds a request for deployment, whose route r has no endpoint, as
// WaitTenant says; depth, when not nil, is set to the number of requests
// held for the deployment when this one joined them.
func (a *Activator) hold(ctx context.Context, r *routing.Route, deployment, tenant string, depth *int) (*routing.Route, error) {
	if err := a.enqueue(deployment, tenant, depth); err != nil {
		return nil, err
	}
	defer a.dequeue(deployment, tenant)

	timer := a.opts.Clock.NewTimer(a.opts.Timeout)
	defer timer.Stop()
	for {
		if r.Failure != "" {
			return nil, &FailedError{Reason: r.Failure}
		}
		if r.ScaledToZero {
			return nil, ErrScaledToZero
		}
		a.waker.Wake(deployment)
		select {
		case <-r.Changed():
		case <-timer.C():
			return nil, fmt.Errorf("%w after %s", ErrTimeout, a.opts.Timeout)
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		r = a.routes.Lookup(deployment)
		if r == nil {
			return nil, ErrNotFound
		}
		if len(r.Endpoints) > 0 {
			return r, nil
		}
	}
}

// QueueDepth returns how many requests wait for a deployment.
func (a *Activator) QueueDepth(deployment string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.queued[deployment]
}

// QueueDepths returns the number of held requests per deployment, omitting
// deployments with none.
func (a *Activator) QueueDepths() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.queued))
	for k, v := range a.queued {
		out[k] = v
	}
	return out
}

// TenantQueueDepth returns how many requests of tenant wait for a
// deployment.
func (a *Activator) TenantQueueDepth(deployment, tenant string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tenants[holder{deployment, tenant}]
}

// enqueue counts a held request, or says which bound forbids it; depth,
// when not nil, is set to the requests held before this one.
func (a *Activator) enqueue(deployment, tenant string, depth *int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if depth != nil {
		*depth = a.queued[deployment]
	}
	if a.queued[deployment] >= a.opts.MaxQueue {
		return fmt.Errorf("%w (%d held for %q)", ErrQueueFull, a.opts.MaxQueue, deployment)
	}
	if tenant != "" {
		h := holder{deployment, tenant}
		if a.tenants[h] >= a.opts.MaxQueuePerTenant {
			return fmt.Errorf("%w (%d held for %q of tenant %q)", ErrTenantQueueFull, a.opts.MaxQueuePerTenant, deployment, tenant)
		}
		a.tenants[h]++
	}
	a.queued[deployment]++
	a.setDepthLocked(deployment)
	return nil
}

func (a *Activator) dequeue(deployment, tenant string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.queued[deployment]--; a.queued[deployment] <= 0 {
		delete(a.queued, deployment)
	}
	if tenant != "" {
		h := holder{deployment, tenant}
		if a.tenants[h]--; a.tenants[h] <= 0 {
			delete(a.tenants, h)
		}
	}
	a.setDepthLocked(deployment)
}

func (a *Activator) setDepthLocked(deployment string) {
	if a.depth != nil {
		a.depth.WithLabelValues(deployment).Set(float64(a.queued[deployment]))
	}
}
