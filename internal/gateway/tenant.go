package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/ebb-ml/ebb/internal/fairqueue"
	"github.com/ebb-ml/ebb/internal/limit"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Tenants: every inference request counts against a tenant, for tenant
// limits and fair queueing. With auth on it is the principal's
// (auth.Principal.Tenant: a token's tenant or name, an OIDC token's tenant
// claim or subject), and a header cannot change it. With auth off it is
// the value of Options.TenantHeader, which only a trusted proxy in front
// should set; a request without one is AnonymousTenant's.

// DefaultTenantHeader is the header that names a request's tenant when
// auth is off, unless Options.TenantHeader names another.
const DefaultTenantHeader = "Ebb-Tenant"

// AnonymousTenant is the tenant of a request that names none: auth off
// and no tenant header, or a principal without a tenant.
const AnonymousTenant = "anonymous"

// maxTenantHeader bounds a tenant header's value; a longer one is
// AnonymousTenant's, as auth.ValidateTenant would refuse it as a name.
const maxTenantHeader = auth.MaxTenantLen

// tenantOf returns the tenant of ctx's request made by p (auth on), or
// named by its tenant header (auth off). The string is the tenant's own,
// not the request's bytes: the limiter and the queues keep it.
func (g *Gateway) tenantOf(ctx *fasthttp.RequestCtx, p *auth.Principal) string {
	if p != nil {
		if p.Tenant != "" {
			return p.Tenant
		}
		return AnonymousTenant
	}
	h := ctx.Request.Header.Peek(g.opts.TenantHeader)
	if len(h) == 0 || len(h) > maxTenantHeader {
		return AnonymousTenant
	}
	return g.tenantNames.intern(h)
}

// maxInterned bounds the tenant names a gateway keeps; beyond it a
// request's tenant name is copied afresh.
const maxInterned = 10000

// names interns tenant names read from headers, so a known tenant costs a
// map lookup and no allocation.
type names struct {
	mu sync.RWMutex
	m  map[string]string
}

func (n *names) intern(b []byte) string {
	n.mu.RLock()
	s, ok := n.m[b2s(b)]
	n.mu.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = make(map[string]string)
	}
	if len(n.m) < maxInterned {
		n.m[s] = s
	}
	return s
}

// grpcTenant is tenantOf for a gRPC call: the principal that authUnary
// put in ctx (auth on), else the tenant metadata (the header's name,
// lowercase).
func (g *GRPC) grpcTenant(ctx context.Context) string {
	if g.opts.Auth != nil {
		if p, ok := auth.FromContext(ctx); ok && p.Tenant != "" {
			return p.Tenant
		}
		return AnonymousTenant
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := first(md.Get(strings.ToLower(g.opts.TenantHeader))); v != "" && len(v) <= maxTenantHeader {
		return v
	}
	return AnonymousTenant
}

// PriorityHeader names a request's priority level: "interactive" (the
// default) or "batch", which waits behind every interactive request of a
// capped deployment (fairqueue). Anyone may lower their own priority.
const PriorityHeader = "Ebb-Priority"

// priority reads ctx's priority header into x, answering 400 and
// reporting false for a value it does not know.
func priority(ctx *fasthttp.RequestCtx, x *exchange) bool {
	h := x.hdr.priority
	if len(h) == 0 {
		return true
	}
	p, err := fairqueue.ParsePriority(b2s(h))
	if err != nil {
		writeErrorCode(ctx, http.StatusBadRequest, codeBadPriority, fmt.Sprintf("header %s: %v", PriorityHeader, err))
		return false
	}
	x.prio = p
	return true
}

// admit waits for a slot of q, the admission queue of capped deployment
// name, for x's request; the slot is x's until x is released. It answers
// a refusal and reports false: 429 when the request's tenant has too many
// waiting, 503 when the deployment has, or no slot came in time.
func (g *Gateway) admit(ctx *fasthttp.RequestCtx, x *exchange, q *fairqueue.Queue, name string) (int, bool) {
	rel, err := q.Acquire(&x.ctx, x.tenant, x.prio)
	if err == nil {
		x.admitted = rel
		return 0, true
	}
	return g.queueError(ctx, x, name, err), false
}

// queueError turns an admission queue's error into a response.
func (g *Gateway) queueError(ctx *fasthttp.RequestCtx, x *exchange, name string, err error) int {
	switch {
	case x.ctx.Err() != nil:
		return writeError(ctx, http.StatusServiceUnavailable, "request cancelled by the client")
	case errors.Is(err, fairqueue.ErrTenantQueueFull):
		return tenantQueueFull(ctx, x.tenant, name, err)
	case errors.Is(err, fairqueue.ErrTimeout):
		return writeUnavailable(ctx, 5, fmt.Sprintf("deployment %q is at its concurrency limit (spec.scaling.maxConcurrency) and no slot freed in time: %v", name, err))
	default:
		return writeUnavailable(ctx, 1, fmt.Sprintf("deployment %q is at its concurrency limit (spec.scaling.maxConcurrency) with too many requests waiting: %v", name, err))
	}
}

// tenantQueueFull answers 429: tenant has as many requests waiting for
// deployment name as it may.
func tenantQueueFull(ctx *fasthttp.RequestCtx, tenant, name string, err error) int {
	ctx.Response.Header.Set("Retry-After", strconv.Itoa(1))
	return writeErrorCode(ctx, http.StatusTooManyRequests, codeTenantQueueFull,
		fmt.Sprintf("tenant %q has too many requests waiting for deployment %q: %v; retry after 1s", tenant, name, err))
}

// grpcPriority reads the call's "ebb-priority" metadata into a, or
// returns InvalidArgument for a value it does not know.
func grpcPriority(ctx context.Context, a *attempt) error {
	md, _ := metadata.FromIncomingContext(ctx)
	v := first(md.Get("ebb-priority"))
	if v == "" {
		return nil
	}
	p, err := fairqueue.ParsePriority(v)
	if err != nil {
		return status.Error(codes.InvalidArgument, codeBadPriority+": metadata ebb-priority: "+err.Error())
	}
	a.prio = p
	return nil
}

// queueError is Gateway.queueError for a gRPC call.
func (g *GRPC) queueError(ctx context.Context, tenant, name string, err error) error {
	switch {
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, fairqueue.ErrTenantQueueFull):
		return grpcTenantQueueFull(ctx, tenant, name, err)
	case errors.Is(err, fairqueue.ErrTimeout):
		return unavailable(ctx, 5, fmt.Sprintf("deployment %q is at its concurrency limit (spec.scaling.maxConcurrency) and no slot freed in time: %v", name, err))
	default:
		return unavailable(ctx, 1, fmt.Sprintf("deployment %q is at its concurrency limit (spec.scaling.maxConcurrency) with too many requests waiting: %v", name, err))
	}
}

// grpcTenantQueueFull is tenantQueueFull for a gRPC call:
// ResourceExhausted with a retry-after trailer.
func grpcTenantQueueFull(ctx context.Context, tenant, name string, err error) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", "1", "ebb-error-code", codeTenantQueueFull))
	return status.Errorf(codes.ResourceExhausted, "tenant %q has too many requests waiting for deployment %q: %v; retry in 1s", tenant, name, err)
}

// limitTenant admits x's request for deployment under its tenant's limits
// (Options.Limiter, set): x holds the ticket until it is released. Over a
// limit it answers 429 with Retry-After and the limit's code and message
// (an OpenAI error for an OpenAI request) and reports false.
func (g *Gateway) limitTenant(ctx *fasthttp.RequestCtx, x *exchange, deployment string, openAI bool) bool {
	tk, r, ok := g.opts.Limiter.Admit(x.tenant, deployment, g.opts.Clock.Now())
	if ok {
		x.ticket = tk
		return true
	}
	ctx.Response.Header.Set("Retry-After", strconv.Itoa(r.RetryAfterSeconds()))
	if openAI {
		writeOpenAIError(ctx, http.StatusTooManyRequests, "rate_limit_error", r.Code(), r.Message())
	} else {
		writeErrorCode(ctx, http.StatusTooManyRequests, r.Code(), r.Message())
	}
	return false
}

// grpcLimitTenant is limitTenant for a gRPC call: ResourceExhausted with
// retry-after and ebb-error-code trailers. The caller releases the ticket
// when the call ends.
func (g *GRPC) grpcLimitTenant(ctx context.Context, tenant, deployment string) (limit.Ticket, error) {
	if g.opts.Limiter == nil {
		return limit.Ticket{}, nil
	}
	tk, r, ok := g.opts.Limiter.Admit(tenant, deployment, g.opts.Clock.Now())
	if ok {
		return tk, nil
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", strconv.Itoa(r.RetryAfterSeconds()), "ebb-error-code", r.Code()))
	return limit.Ticket{}, status.Error(codes.ResourceExhausted, r.Code()+": "+r.Message())
}
