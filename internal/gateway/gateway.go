// Package gateway is ebb's data plane: it answers the Open Inference Protocol
// v2 for every deployment, and the OpenAI API for deployments whose server
// speaks it (openai.go), holding requests for cold deployments in the
// activator and forwarding each request to a replica picked by
// power-of-two-choices on least outstanding requests.
//
// A request that fails before any replica answered it (the replica died or
// was stopped between pick and send) is retried on another replica, so a
// crashing replica costs latency, not errors. The gateway never blocks on the
// control plane: it reads the routing table and reports demand, nothing else.
//
// REST runs on fasthttp, for throughput (issue 12 measured net/http's server
// and client at about half of nginx's requests per second on one core):
// Gateway.Handler serves the routes (routes.go), Server (server.go) is the
// whole HTTP/1.1 front of ebb up and ebb gateway, passing every other path
// to net/http handlers, and a fasthttp.HostClient per replica carries
// requests on (upstream.go). A request's state lives in a pooled exchange
// (exchange.go): no per-request allocation of headers or buffers. gRPC
// stays on grpc-go (grpc.go).
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/limit"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
	"k8s.io/utils/clock"
)

// Routes is where the gateway finds deployments.
type Routes interface {
	Lookup(deployment string) *routing.Route
}

// Holder holds a request of tenant until its deployment has a ready
// replica; *activator.Activator is one.
type Holder interface {
	WaitTenant(ctx context.Context, deployment, tenant string) (*routing.Route, error)
}

// Options tune the gateway; zero values take the defaults shown.
type Options struct {
	// MaxBodyBytes limits an inference request body (413 beyond it) and a
	// gRPC request message (ResourceExhausted); default
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxBufferedBytes caps the body bytes held across all requests in
	// flight; beyond it requests get 503 with Retry-After. Default
	// DefaultMaxBufferedBytes (see limits.go).
	MaxBufferedBytes int64
	// Budget counts the held bytes against MaxBufferedBytes; give the same
	// one to the REST Gateway and the GRPC server so that one cap bounds
	// both. Default: a budget of its own.
	Budget *BodyBudget
	// Limits bound the gateway's connections (package connlimit): the
	// timeouts of Server (the REST front), the body timeout of inference
	// requests, keepalive in GRPC.Serve, and the connection cap of Listener.
	Limits connlimit.Limits
	// Attempts bounds how many replicas one request is tried on; default 4.
	Attempts int
	// HoldTimeout bounds the wait for a replica after all tried ones
	// failed; default 60s. A request also waits up to it for a connection
	// to its replica when MaxConnsPerReplica are busy.
	HoldTimeout time.Duration
	// MaxConnsPerReplica bounds the REST connections to one replica;
	// default DefaultMaxConnsPerReplica.
	MaxConnsPerReplica int
	// Ready reports whether the gateway should answer ready; default
	// always.
	Ready func() bool
	// Clock times requests; default the real clock.
	Clock clock.PassiveClock
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Metrics, when set, receives request counts and latencies.
	Metrics *Metrics
	// Version is reported in server metadata.
	Version string
	// Auth, when set, makes requests that name a model need a token with
	// scope predict:NAME (see authorize); nil leaves inference open.
	Auth Authenticator
	// TLS, when set, makes GRPC.Serve serve over TLS with it (a reloading
	// config from package certs); the REST server's TLS is its listener's.
	TLS *tls.Config
	// ReplicaTLS, when set, is the client configuration for replicas whose
	// endpoints are https URLs (mutual TLS: it presents the gateway's
	// certificate): the REST clients (HTTP/1.1 only) and the gRPC
	// connections use it. Plain http endpoints never touch it.
	ReplicaTLS *tls.Config
	// Shards, when set, are the route objects: a name that is no
	// deployment but a route resolves per request to the deployment its
	// rules pick (shardroute.go).
	Shards *routing.Shards
	// Limiter, when set, enforces tenant limits (package limit): a
	// request over its tenant's rate or concurrency gets 429 before its
	// body is read.
	Limiter *limit.Limiter
	// TenantHeader names the header that gives a request's tenant when
	// Auth is nil (tenant.go); default DefaultTenantHeader. With Auth the
	// principal's tenant counts and the header is ignored.
	TenantHeader string
	// Async, when set, serves async inference (async.go): an infer request
	// with "Prefer: respond-async" is stored and answered 202, and
	// GET /v2/async/{id} returns its result.
	Async *Async
	// Tracer, when set, traces inference requests (trace.go); nil: no
	// spans, and an incoming traceparent passes to the replica as it came.
	Tracer trace.Tracer
	// Predictions, when set, logs a sampled share of inference requests
	// with their answers (predlog.go); nil: none.
	Predictions PredictionLog
}

// Gateway is the OIP v2 (and OpenAI API) REST data plane.
type Gateway struct {
	routes   Routes
	holder   Holder
	peek     *peek // the Holder of metadata requests: never holds or wakes
	opts     Options
	balancer balance.PowerOfTwo
	ups      *upstreams
	budget   *BodyBudget // body bytes held, against MaxBufferedBytes
	meta     metaCache
	mirrors  mirrors // shadow mirrors in flight (shadow.go)
	// realClock is set when opts.Clock is the real clock (see now).
	realClock bool
	// tenantNames interns tenant names from headers (tenant.go).
	tenantNames names
}

// New returns a Gateway. It starts nothing: connections to replicas open on
// first use; Close closes them.
func New(routes Routes, holder Holder, opts Options) *Gateway {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxBufferedBytes <= 0 {
		opts.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if opts.Budget == nil {
		opts.Budget = &BodyBudget{}
	}
	opts.Limits = opts.Limits.WithDefaults()
	if opts.Limits.OnLimit == nil {
		opts.Limits.OnLimit = opts.Metrics.ConnLimited()
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 4
	}
	if opts.HoldTimeout <= 0 {
		opts.HoldTimeout = 60 * time.Second
	}
	if opts.MaxConnsPerReplica <= 0 {
		opts.MaxConnsPerReplica = DefaultMaxConnsPerReplica
	}
	if opts.TenantHeader == "" {
		opts.TenantHeader = DefaultTenantHeader
	}
	if opts.Ready == nil {
		opts.Ready = func() bool { return true }
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	_, real := opts.Clock.(clock.RealClock)
	return &Gateway{routes: routes, holder: holder, peek: &peek{routes}, opts: opts, budget: opts.Budget, realClock: real,
		ups: newUpstreams(routes, opts.ReplicaTLS, opts.MaxConnsPerReplica, opts.HoldTimeout)}
}

// Close ends the gateway's shadow mirrors in flight (shadow.go), closes its
// idle connections to replicas and stops following their routes; requests
// in flight finish. Server.Shutdown calls it.
func (g *Gateway) Close() {
	g.mirrors.close()
	g.ups.close()
}

func (g *Gateway) serverReady(ctx *fasthttp.RequestCtx) {
	if !g.opts.Ready() {
		writeError(ctx, http.StatusServiceUnavailable, "ebb is starting or shutting down")
		return
	}
	ctx.SetStatusCode(http.StatusOK)
}

func (g *Gateway) serverMetadata(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, http.StatusOK, oip.ServerMetadata{Name: "ebb", Version: g.opts.Version, Extensions: []string{}})
}

func notFound(name string) string {
	return fmt.Sprintf("model %q not found: list deployments with `ebb get deployments`, or create one with `ebb deploy -f spec.yaml`", name)
}

// infer sends an infer request to a ready replica of its deployment (of
// version, if any), holding it while the deployment is cold and retrying on
// another replica when one fails before answering.
func (g *Gateway) infer(ctx *fasthttp.RequestCtx, name, version []byte, tenant string) {
	start := g.arrival(ctx)
	rt := g.routes.Lookup(b2s(name))
	var x *exchange // set when a route object read the body to pick the deployment
	if rt == nil {
		// Not a deployment: a route object may pick one (shardroute.go).
		var held int64
		if rt, version, x, held = g.shardInfer(ctx, name, version); rt == nil {
			return
		}
		if x != nil {
			defer x.release()
			defer g.budget.release(held)
		}
	}
	if rt.Protocol != "" {
		g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		writeError(ctx, http.StatusNotFound, notOIP(rt.Deployment))
		return
	}
	// The deployment's metrics: a string of its own (name is the
	// request's bytes), which a split's tracks count under, by version.
	s := g.opts.Metrics.start(rt.Deployment)
	v, tag, named := b2s(version), "", rt.Deployment
	if rt.Split != nil {
		tr, tv, t := g.track(ctx, rt, version)
		if tr == nil {
			s.end(http.StatusNotFound, "", g.opts.Clock.Since(start))
			return
		}
		rt, v, tag = tr, tv, t.Tag
	}
	dep := rt.Deployment // the track's, for a split
	var code int
	fresh := x == nil // else a route object read the body
	if fresh {
		x = g.acquire(ctx)
		defer x.release()
	}
	if g.opts.Tracer != nil {
		g.traceRequest(ctx, x, dep, v, tenant, start) // trace.go; x.release ends the span
	}
	if x.tenant = tenant; !priority(ctx, x) {
		s.end(http.StatusBadRequest, versionLabel(rt, nil, tag), g.opts.Clock.Since(start))
		return
	}
	if g.opts.Limiter != nil && !g.limitTenant(ctx, x, named, false) { // tenant.go
		s.end(http.StatusTooManyRequests, versionLabel(rt, nil, tag), g.opts.Clock.Since(start))
		return
	}
	if fresh {
		var held int64
		if held, code = g.readBody(ctx, x); code != 0 {
			s.end(code, versionLabel(rt, nil, tag), g.opts.Clock.Since(start))
			return
		}
		defer g.budget.release(held)
	}
	if rt.Routing != nil && !g.keyRequired(ctx, x, rt) { // affinity.go
		s.end(http.StatusBadRequest, versionLabel(rt, nil, tag), g.opts.Clock.Since(start))
		return
	}
	if rt.Scatter != nil && g.scatter(ctx, x, rt, v, s, tag, start) { // scatter.go
		if g.opts.Predictions != nil {
			g.logREST(ctx, x, named, versionLabel(rt, nil, tag), start, g.now(start)) // predlog.go
		}
		return
	}
	// Demand counts once the body is in: a body trickling in is not load
	// for the autoscaler (a hundred of them once panic-scaled a
	// deployment to maxReplicas).
	if rt.Stats != nil {
		rt.Stats.Begin(g.now(start))
	}
	x.meter = rt.Meter
	if rt.Shadow != nil { // the only cost of shadows to a deployment without one
		code = g.forwardMirrored(ctx, x, rt, dep, v) // shadow.go
	} else {
		code = g.forwardTo(ctx, x, rt, dep, v, modeInfer, ctx.Path())
	}
	end := g.now(start)
	if rt.Stats != nil {
		rt.Stats.End(end)
	}
	if x.meter != nil {
		x.observe(end, code)
	}
	s.end(code, versionLabel(rt, x.last(), tag), end.Sub(start))
	if g.opts.Predictions != nil {
		g.logREST(ctx, x, named, versionLabel(rt, x.last(), tag), start, end) // predlog.go
	}
}

// observe counts x's request, which ended at end with status code, in the
// Meter of the track that served it (x.meter, set). Its latency runs from
// when a replica was first picked for it to end: the time its track was
// held cold by the activator, and the time its body took to arrive, are
// not the track's, and a rollout must not judge a canary by them. A
// request that failed before any replica was picked (its track could not
// start, or did not in time) counts with a latency of 0. It failed when
// the answer is a 5xx (an engine error, or the gateway's for the track),
// unless the client went away; a 4xx is the client's fault.
func (x *exchange) observe(end time.Time, code int) {
	var latency time.Duration
	if !x.picked.IsZero() {
		latency = end.Sub(x.picked)
	}
	x.meter.Observe(end, latency, code >= http.StatusInternalServerError && x.ctx.Err() == nil)
}

// arrival returns when ctx's request arrived: with the real clock, the
// server's own time of it (read once per request anyway), else the
// injected clock's now.
func (g *Gateway) arrival(ctx *fasthttp.RequestCtx) time.Time {
	if g.realClock && !ctx.Time().IsZero() {
		return ctx.Time()
	}
	return g.opts.Clock.Now()
}

// now returns the clock's now, given a time of the same request: with the
// real clock it reads only the monotonic clock, half the cost of
// time.Now on the request path.
func (g *Gateway) now(start time.Time) time.Time {
	if g.realClock {
		return start.Add(time.Since(start))
	}
	return g.opts.Clock.Now()
}

// mode is what a forwarded request is, which decides how its answer is
// passed on.
type mode int

const (
	modeInfer  mode = iota // OIP v2 infer: the answer is buffered and passed on
	modeMeta               // model metadata: never held; the answer is cached
	modeOpenAI             // the OpenAI API: the answer streams (openai.go)
)

// forwardTo sends ctx's request, to path, to a replica of deployment name
// that serves version (any replica when version is ""), held by the
// activator while there is none. A metadata request (modeMeta) is never
// held: a deployment without a ready replica is answered by
// metadataAtZero, and a replica's answer is cached for then. The request
// body is x's, already read (none for GET).
//
// rt, when not nil, is the deployment's route as just looked up: with a
// ready replica it serves the first try without asking the holder.
func (g *Gateway) forwardTo(ctx *fasthttp.RequestCtx, x *exchange, rt *routing.Route, name, version string, m mode, path []byte) int {
	holder := g.holder
	if m == modeMeta {
		holder = g.peek
	}
	if version != "" {
		// A version that no replica and no future replica serves is
		// refused before anything is held or woken.
		if rt := g.routes.Lookup(name); rt != nil && rt.Version != version && !rt.Serves(version) {
			return writeVersionNotFound(ctx, rt, version)
		}
	}
	x.version = version
	var lastErr error
	for first := true; len(x.tried) < g.opts.Attempts; first = false {
		var err error
		if !first || rt == nil || len(rt.Endpoints) == 0 {
			rt, err = holder.WaitTenant(&x.ctx, name, x.tenant)
		}
		if m == modeMeta && errors.Is(err, errCold) {
			return g.metadataAtZero(ctx, name, version)
		}
		if err != nil {
			return g.holdError(ctx, x, name, err)
		}
		if q := rt.Queue(); q != nil && x.admitted == nil && m != modeMeta {
			// A capped deployment: wait for a slot, in fair order
			// across tenants (tenant.go), then take the route as it is
			// by then.
			if code, ok := g.admit(ctx, x, q, name); !ok {
				return code
			}
			if rt = g.routes.Lookup(name); rt == nil || len(rt.Endpoints) == 0 {
				continue // gone cold while waiting: hold again
			}
		}
		var excluded func(*balance.Endpoint) bool
		if len(x.tried) > 0 {
			excluded = x.excludeTried // no filtering, and no allocation, on a first try
		}
		if version != "" {
			if !rt.Serves(version) {
				switch {
				case rt.Version != version:
					return writeVersionNotFound(ctx, rt, version)
				case m == modeMeta:
					return g.metadataAtZero(ctx, name, version)
				}
				// Replicas of the deployment's version are on their
				// way (a rollout): wait for the control loop to route
				// one.
				if err := awaitChange(&x.ctx, rt, g.opts.HoldTimeout); err != nil {
					return writeUnavailable(ctx, 1, fmt.Sprintf("no replica of %q serves version %s yet: retry shortly", name, version))
				}
				continue
			}
			excluded = x.excludeOther
		}
		ep := g.pick(ctx, x, rt, excluded) // affinity.go
		if ep == nil {
			// Every routed replica failed for this request: wait for
			// the control loop to publish a change.
			if err := awaitChange(&x.ctx, rt, g.opts.HoldTimeout); err != nil {
				return writeUnavailable(ctx, 1, fmt.Sprintf("no replica of %q could take the request: %v", name, lastErr))
			}
			continue
		}
		if x.meter != nil && x.picked.IsZero() {
			x.picked = g.opts.Clock.Now() // a metered track's latency starts (see observe)
		}
		x.tried = append(x.tried, ep)
		if err := g.send(ctx, x, rt, ep, m, path); err != nil {
			if x.ctx.Err() != nil {
				return writeError(ctx, http.StatusServiceUnavailable, "request cancelled by the client")
			}
			lastErr = err
			g.opts.Logger.DebugContext(&x.ctx, "replica failed before answering; retrying", "deployment", name, "replica", ep.ID, "err", err)
			g.opts.Metrics.retried(name)
			continue
		}
		switch m {
		case modeMeta:
			return g.copyMetadata(ctx, x, rt, ep)
		case modeOpenAI:
			return g.passStream(ctx, x, ep)
		}
		return copyResponse(ctx, x, ep)
	}
	return writeUnavailable(ctx, 1, fmt.Sprintf("%d replicas of %q failed to answer, last: %v", len(x.tried), name, lastErr))
}

// holdError turns an activator error into a response.
func (g *Gateway) holdError(ctx *fasthttp.RequestCtx, x *exchange, name string, err error) int {
	var failed *activator.FailedError
	switch {
	case x.ctx.Err() != nil:
		return writeError(ctx, http.StatusServiceUnavailable, "request cancelled by the client")
	case errors.Is(err, activator.ErrNotFound):
		return writeError(ctx, http.StatusNotFound, notFound(name))
	case errors.Is(err, activator.ErrScaledToZero):
		return writeErrorCode(ctx, http.StatusServiceUnavailable, codeScaledToZero, scaledToZero(name))
	case errors.As(err, &failed):
		return writeUnavailable(ctx, 10, fmt.Sprintf("deployment %q cannot start a replica: %s", name, clip(failed.Reason)))
	case errors.Is(err, activator.ErrTenantQueueFull):
		return tenantQueueFull(ctx, x.tenant, name, err)
	case errors.Is(err, activator.ErrQueueFull):
		return writeUnavailable(ctx, 1, fmt.Sprintf("deployment %q is starting and has too many requests waiting: retry shortly", name))
	case errors.Is(err, activator.ErrTimeout):
		return writeUnavailable(ctx, 5, fmt.Sprintf("deployment %q had no ready replica in time (%v): retry shortly", name, err))
	default:
		return writeUnavailable(ctx, 1, fmt.Sprintf("deployment %q: %v", name, err))
	}
}
