package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/fairqueue"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	ebbreplica "github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/routing"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// GRPC is the data plane for the OIP v2 gRPC API (oipgrpc's
// GRPCInferenceService), with the REST gateway's semantics (see
// metadata.go): ServerLive, ServerReady, ServerMetadata and ModelReady are
// answered here without waking anything; ModelMetadata goes to a ready
// replica when there is one and is otherwise answered from what is known,
// never waking the deployment; ModelInfer is held while the deployment is
// cold, sent to a replica's gRPC server (of the requested version, if any)
// picked by power-of-two-choices, and retried on another replica when one
// fails before answering (status Unavailable). Activator errors become
// NotFound, or Unavailable with a "retry in Ns" hint in the message and a
// retry-after trailer (seconds). A request for a deployment its owner
// scaled to zero is Unavailable with no retry hint and the trailer
// ebb-error-code: deployment/scaled_to_zero.
//
// The response header ebb-replica names the replica that answered. A
// request's x-request-id metadata is passed on to the replica.
//
// ModelInfer calls that a deployment's primary serves are mirrored to its
// shadow as REST requests are (grpc_shadow.go, shadow.go).
type GRPC struct {
	oipgrpc.UnimplementedGRPCInferenceServiceServer

	routes   Routes
	holder   Holder
	peek     *peek
	opts     Options
	balancer balance.PowerOfTwo
	conns    *grpcConns
	meta     metaCache
	budget   *BodyBudget // request bytes held, against MaxBufferedBytes
	// shadows runs the mirrors of ModelInfer calls: a Gateway of the
	// same routes, holder and options, whose REST side is never used.
	shadows *Gateway
}

// NewGRPC returns the gRPC data plane. It uses opts as New does, except
// MaxConnsPerReplica (REST only); MaxBodyBytes bounds a request message.
func NewGRPC(routes Routes, holder Holder, opts Options) *GRPC {
	g := New(routes, holder, opts) // applies the defaults
	return &GRPC{
		routes:  routes,
		holder:  holder,
		peek:    g.peek,
		opts:    g.opts,
		conns:   newGRPCConns(routes, int(g.opts.MaxBodyBytes), g.opts.ReplicaTLS),
		budget:  g.budget,
		shadows: g,
	}
}

// NewServer returns a grpc.Server with g registered, accepting request
// messages up to Options.MaxBodyBytes (larger ones are counted in
// ebb_gateway_limited_total{limit="grpc_message_size"}); opts are added to
// those.
func (g *GRPC) NewServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{grpc.MaxRecvMsgSize(int(g.opts.MaxBodyBytes))}, opts...)
	if m := g.opts.Metrics; m != nil {
		opts = append(opts, connlimit.CountSizeRefusals(func() { m.limit(limitGRPCMessageSize) }))
	}
	opts = append(opts, g.traceOptions()...) // trace.go: before auth, so refusals are traced too
	if g.opts.Auth != nil {
		opts = append(opts, grpc.ChainUnaryInterceptor(g.authUnary))
	}
	s := grpc.NewServer(opts...)
	oipgrpc.RegisterGRPCInferenceServiceServer(s, g)
	return s
}

// Serve serves g on ln until ctx ends, then stops gracefully: it stops
// accepting, lets calls in flight finish for up to drainTimeout, closes the
// rest, and closes its connections to replicas. It returns nil after a clean
// drain, and an error when ln fails or the drain times out. It closes ln.
func (g *GRPC) Serve(ctx context.Context, ln net.Listener, drainTimeout time.Duration) error {
	defer g.Close()
	limits := g.opts.Limits
	if m := g.opts.Metrics; m != nil && limits.OnMessageTimeout == nil {
		limits.OnMessageTimeout = func() { m.limit(limitGRPCMessageTimeout) }
	}
	opts := limits.GRPCOptions()
	if g.opts.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(g.opts.TLS)))
	}
	s := g.NewServer(opts...)
	ln = g.opts.Limits.Listener(ln)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving gRPC on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	var err error
	select {
	case <-stopped:
	case <-t.C:
		s.Stop()
		<-stopped
		err = fmt.Errorf("gRPC drain: calls in flight did not finish within %v; closed them", drainTimeout)
	}
	if serr := <-served; serr != nil && !errors.Is(serr, grpc.ErrServerStopped) {
		err = errors.Join(err, fmt.Errorf("serving gRPC on %s: %w", ln.Addr(), serr))
	}
	return err
}

// Close ends g's shadow mirrors in flight and closes its connections to
// replicas (those in use once their calls end). Calls forwarded after
// Close fail with Unavailable.
func (g *GRPC) Close() {
	g.shadows.Close()
	g.conns.close()
}

// ServerLive reports the gateway live.
func (g *GRPC) ServerLive(context.Context, *oipgrpc.ServerLiveRequest) (*oipgrpc.ServerLiveResponse, error) {
	return &oipgrpc.ServerLiveResponse{Live: true}, nil
}

// ServerReady reports Options.Ready.
func (g *GRPC) ServerReady(context.Context, *oipgrpc.ServerReadyRequest) (*oipgrpc.ServerReadyResponse, error) {
	return &oipgrpc.ServerReadyResponse{Ready: g.opts.Ready()}, nil
}

// ServerMetadata describes ebb.
func (g *GRPC) ServerMetadata(context.Context, *oipgrpc.ServerMetadataRequest) (*oipgrpc.ServerMetadataResponse, error) {
	return &oipgrpc.ServerMetadataResponse{Name: "ebb", Version: g.opts.Version, Extensions: []string{}}, nil
}

// ModelReady answers as GET /v2/models/{m}[/versions/{v}]/ready does,
// without waking the deployment: ready with a ready replica or at zero when
// a request would start one; not ready when it cannot start replicas or its
// owner scaled it to zero; NotFound for an unknown deployment or version.
func (g *GRPC) ModelReady(_ context.Context, req *oipgrpc.ModelReadyRequest) (*oipgrpc.ModelReadyResponse, error) {
	rt := g.routes.Lookup(req.GetName())
	if rt == nil {
		return nil, status.Error(codes.NotFound, notFound(req.GetName()))
	}
	ready, known := readiness(rt, req.GetVersion())
	if !known {
		return nil, status.Error(codes.NotFound, versionNotFound(rt, req.GetVersion()))
	}
	return &oipgrpc.ModelReadyResponse{Ready: ready}, nil
}

// ModelMetadata forwards to a ready replica of the deployment (of the
// requested version) and remembers its answer; without one it answers from
// what is known, and never wakes the deployment.
func (g *GRPC) ModelMetadata(ctx context.Context, req *oipgrpc.ModelMetadataRequest) (*oipgrpc.ModelMetadataResponse, error) {
	name, version := req.GetName(), req.GetVersion()
	start := g.opts.Clock.Now()
	rt := g.routes.Lookup(name)
	if rt == nil {
		g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		return nil, status.Error(codes.NotFound, notFound(name))
	}
	g.opts.Metrics.begin(rt.Deployment)
	var resp *oipgrpc.ModelMetadataResponse
	var served *routing.Route
	var try attempt
	err := g.forwardTo(ctx, name, version, g.peek, func(ctx context.Context, rt *routing.Route, ep *balance.Endpoint, c oipgrpc.GRPCInferenceServiceClient) error {
		var err error
		resp, err = c.ModelMetadata(ctx, req)
		served = rt
		return err
	}, &try)
	switch {
	case errors.Is(err, errCold):
		resp, err = g.metadataAtZero(ctx, name, version)
	case err == nil:
		g.meta.put(served, try.ep, metadataOf(resp))
	}
	g.opts.Metrics.observe(rt.Deployment, versionLabel(rt, try.ep, ""), httpStatus(status.Code(err)), g.opts.Clock.Since(start), true)
	return resp, err
}

// metadataAtZero answers ModelMetadata for a deployment without a ready
// replica (of version), as the REST gateway does.
func (g *GRPC) metadataAtZero(ctx context.Context, name, version string) (*oipgrpc.ModelMetadataResponse, error) {
	rt := g.routes.Lookup(name)
	if rt == nil {
		return nil, status.Error(codes.NotFound, notFound(name))
	}
	m, source, ok := knownMetadata(&g.meta, rt, version)
	if !ok {
		code, msg := noMetadata(rt, version)
		_ = grpc.SetTrailer(ctx, metadata.Pairs("ebb-error-code", code))
		return nil, status.Error(codes.Unavailable, msg)
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("ebb-metadata-source", source))
	return oipgrpc.MetadataResponse(m), nil
}

// metadataOf converts a replica's metadata message back to oip's form.
func metadataOf(r *oipgrpc.ModelMetadataResponse) oip.ModelMetadata {
	m := oip.ModelMetadata{Name: r.GetName(), Versions: r.GetVersions(), Platform: r.GetPlatform()}
	for _, t := range r.GetInputs() {
		m.Inputs = append(m.Inputs, oip.TensorMetadata{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: t.GetShape()})
	}
	for _, t := range r.GetOutputs() {
		m.Outputs = append(m.Outputs, oip.TensorMetadata{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: t.GetShape()})
	}
	return m
}

// ModelInfer forwards to a replica of the deployment, of the requested
// version if any. The request's bytes count against MaxBufferedBytes, with
// REST bodies when the budget is shared, while it is held or in flight:
// beyond the cap it is Unavailable with a retry hint, as REST gets 503.
func (g *GRPC) ModelInfer(ctx context.Context, req *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
	n := int64(proto.Size(req))
	if !g.budget.reserve(n, g.opts.MaxBufferedBytes) {
		g.opts.Metrics.limit(limitBufferedBytes)
		return nil, unavailable(ctx, 1, fmt.Sprintf("the requests the gateway holds would exceed its limit of %d bytes (--max-buffered-bytes)", g.opts.MaxBufferedBytes))
	}
	defer g.budget.release(n)
	var resp *oipgrpc.ModelInferResponse
	s, err := g.forward(ctx, req.GetModelName(), req.GetModelVersion(), req, func(ctx context.Context, _ *routing.Route, _ *balance.Endpoint, c oipgrpc.GRPCInferenceServiceClient) error {
		var err error
		resp, err = c.ModelInfer(ctx, req)
		return err
	})
	if err == nil && s.mirror {
		g.startMirror(req, n, resp, s) // grpc_shadow.go
	}
	g.logGRPC(ctx, req, resp, err, &s) // predlog.go
	return resp, err
}

// call is one RPC on a replica, ep of route rt.
type call func(ctx context.Context, rt *routing.Route, ep *balance.Endpoint, c oipgrpc.GRPCInferenceServiceClient) error

// served is what forward tells of a call it ran.
type served struct {
	rt  *routing.Route // the route that served it: the deployment's, or its track's
	try attempt
	// mirror says that the call was drawn for mirroring to rt's shadow
	// (rt is then the primary route); latency is then, as for a track of
	// a split, the time from the first pick to the answer.
	mirror  bool
	latency time.Duration
	rec     grpcRecord // what the prediction log records (predlog.go)
}

// forward runs call on a replica of deployment name, recording the request
// in the route's stats and the gateway metrics; infer, when set, is the
// infer request call sends: it may be drawn for mirroring to the
// deployment's shadow, and it gives the routing key (affinity.go).
func (g *GRPC) forward(ctx context.Context, name, version string, infer *oipgrpc.ModelInferRequest, call call) (served, error) {
	start := g.opts.Clock.Now()
	rt := g.routes.Lookup(name)
	if rt == nil {
		// Not a deployment: a route object may pick one (shardroute.go).
		var err error
		if rt, name, err = g.shardForward(ctx, name, infer); err != nil {
			return served{}, err
		}
	}
	if rt.Protocol != "" {
		g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		return served{}, status.Error(codes.NotFound, notOIP(name))
	}
	dep, tag := rt.Deployment, "" // a split's tracks count under their deployment, by version
	if rt.Split != nil {
		var pin, key string
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			pin, key = first(md.Get("ebb-version")), first(md.Get("ebb-route-key"))
		}
		tr, v, t := chooseTrack(g.routes, rt, version, pin, []byte(key))
		if tr == nil {
			g.opts.Metrics.observe(dep, "", http.StatusNotFound, 0, false)
			return served{}, status.Error(codes.NotFound, noTrack(g.routes, rt, v))
		}
		_ = grpc.SetHeader(ctx, metadata.Pairs("ebb-version", t.Tag))
		rt, name, version, tag = tr, tr.Deployment, v, t.Tag
	}
	try := attempt{infer: infer, tenant: g.grpcTenant(ctx)}
	if err := grpcPriority(ctx, &try); err != nil {
		g.opts.Metrics.observe(dep, "", http.StatusBadRequest, 0, false)
		return served{}, err
	}
	ticket, err := g.grpcLimitTenant(ctx, try.tenant, dep) // tenant.go
	if err != nil {
		g.opts.Metrics.observe(dep, "", http.StatusTooManyRequests, 0, false)
		return served{}, err
	}
	defer ticket.Release()
	if rt.Routing != nil {
		if err := grpcKeyRequired(ctx, &try, rt); err != nil { // affinity.go
			g.opts.Metrics.observe(dep, "", http.StatusBadRequest, 0, false)
			return served{}, err
		}
	}
	if rt.Stats != nil {
		rt.Stats.Begin(start)
		defer func() { rt.Stats.End(g.opts.Clock.Now()) }()
	}
	g.opts.Metrics.begin(dep)
	s := served{rt: rt, try: try}
	// Only requests the primary route serves are mirrored: a track's
	// route has no Shadow.
	s.mirror = infer != nil && rt.Shadow != nil && g.shadows.drawMirror(rt, rt.Shadow)
	// A track of a split is metered as the REST gateway meters it (see
	// exchange.observe), from when a replica was first picked; a mirror
	// compares the primary's latency so measured with the shadow's.
	s.try.timed = rt.Meter != nil || s.mirror
	err = g.forwardTo(ctx, name, version, g.holder, call, &s.try)
	if s.try.admitted != nil {
		s.try.admitted()
	}
	end := g.opts.Clock.Now()
	if !s.try.picked.IsZero() {
		s.latency = end.Sub(s.try.picked)
	}
	code := httpStatus(status.Code(err))
	if rt.Meter != nil {
		rt.Meter.Observe(end, s.latency, code >= http.StatusInternalServerError && ctx.Err() == nil)
	}
	s.rec = grpcRecord{named: dep, version: versionLabel(rt, s.try.ep, tag), start: start, took: end.Sub(start)}
	g.opts.Metrics.observe(dep, s.rec.version, code, s.rec.took, true)
	return s, err
}

// attempt is what forwardTo tells of the replicas it tried.
type attempt struct {
	timed  bool              // set picked
	picked time.Time         // when the first replica was picked
	ep     *balance.Endpoint // the last one tried: the one that answered, if one did

	// infer is the request of a ModelInfer call, nil for another; key
	// is its routing key once keyState says it was found.
	infer    *oipgrpc.ModelInferRequest
	key      uint64
	keyState keyState

	// tenant and prio are whom the call counts against and its priority
	// (tenant.go); admitted, once set, gives back its slot in a capped
	// deployment's admission queue.
	tenant   string
	prio     fairqueue.Priority
	admitted func()
}

// pick returns the replica of rt for the call a tells of: by its key on
// rt's ring when rt's routing hashes one and the call has it, else by
// least outstanding requests (affinity.go).
func (g *GRPC) pick(ctx context.Context, a *attempt, rt *routing.Route, excluded func(*balance.Endpoint) bool) *balance.Endpoint {
	if ring := rt.Ring(); ring != nil {
		if a.keyState == keyUnknown {
			a.key, a.keyState = grpcKey(ctx, rt.Routing, a.infer)
		}
		if a.keyState == keyFound {
			return ring.Pick(a.key, excluded)
		}
	}
	return g.balancer.Pick(rt.Endpoints, excluded)
}

// forwardTo runs call on a replica of deployment name that serves version
// (any when ""), waiting for one through holder; with g.peek it returns
// errCold instead of waiting. It tells a of the replicas it tried.
func (g *GRPC) forwardTo(ctx context.Context, name, version string, holder Holder, call call, a *attempt) error {
	if version != "" {
		if rt := g.routes.Lookup(name); rt != nil && rt.Version != version && !rt.Serves(version) {
			return status.Error(codes.NotFound, versionNotFound(rt, version))
		}
	}
	out := ctx
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if ids := md.Get("x-request-id"); len(ids) > 0 {
			out = metadata.AppendToOutgoingContext(ctx, "x-request-id", ids[0])
		}
	}
	var tried []*balance.Endpoint
	excluded := func(e *balance.Endpoint) bool {
		if version != "" && e.Version != version {
			return true
		}
		for _, t := range tried {
			if t == e {
				return true
			}
		}
		return false
	}
	var lastErr error
	for len(tried) < g.opts.Attempts {
		rt, err := holder.WaitTenant(ctx, name, a.tenant)
		if errors.Is(err, errCold) {
			return err
		}
		if err != nil {
			return g.holdError(ctx, a.tenant, name, err)
		}
		if q := rt.Queue(); q != nil && a.admitted == nil && holder != Holder(g.peek) {
			// A capped deployment: wait for a slot in fair order
			// (tenant.go), then take the route as it is by then.
			rel, err := q.Acquire(ctx, a.tenant, a.prio)
			if err != nil {
				return g.queueError(ctx, a.tenant, name, err)
			}
			a.admitted = rel
			if rt = g.routes.Lookup(name); rt == nil || len(rt.Endpoints) == 0 {
				continue // gone cold while waiting: hold again
			}
		}
		if version != "" && !rt.Serves(version) {
			switch {
			case rt.Version != version:
				return status.Error(codes.NotFound, versionNotFound(rt, version))
			case holder == Holder(g.peek):
				return errCold
			}
			// Replicas of the deployment's version are on their way
			// (a rollout): wait for the control loop to route one.
			if err := awaitChange(ctx, rt, g.opts.HoldTimeout); err != nil {
				return unavailable(ctx, 1, fmt.Sprintf("no replica of %q serves version %s yet", name, version))
			}
			continue
		}
		ep := g.pick(ctx, a, rt, excluded)
		if ep == nil {
			// Every routed replica failed for this request: wait for
			// the control loop to publish a change.
			if err := awaitChange(ctx, rt, g.opts.HoldTimeout); err != nil {
				return unavailable(ctx, 1, fmt.Sprintf("no replica of %q could take the request: %v", name, lastErr))
			}
			continue
		}
		if a.timed && len(tried) == 0 {
			a.picked = g.opts.Clock.Now()
		}
		tried = append(tried, ep)
		a.ep = ep
		err = g.send(out, rt, ep, call)
		if err == nil {
			_ = grpc.SetHeader(ctx, metadata.Pairs("ebb-replica", ep.ID))
			return nil
		}
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		if !retryable(err) {
			_ = grpc.SetHeader(ctx, metadata.Pairs("ebb-replica", ep.ID))
			return err
		}
		lastErr = err
		g.opts.Logger.DebugContext(ctx, "replica failed before answering; retrying", "deployment", name, "replica", ep.ID, "err", err)
		g.opts.Metrics.retried(name)
	}
	return unavailable(ctx, 1, fmt.Sprintf("%d replicas of %q failed to answer, last: %v", len(tried), name, lastErr))
}

// send runs call on ep's cached connection, counting it in ep's in-flight
// requests.
func (g *GRPC) send(ctx context.Context, rt *routing.Route, ep *balance.Endpoint, call call) error {
	c, release, err := g.conns.client(rt, ep)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	defer release()
	if ep.Secret != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, ebbreplica.SecretHeader, ep.Secret)
	}
	ctx, proxy := g.traceCall(ctx, ep) // trace.go: the call's trace context, and its span when traced
	ep.Acquire()
	defer ep.Release()
	return endCall(proxy, call(ctx, rt, ep, c))
}

// retryable reports whether err means the replica did not answer: the call
// could not reach it, or its connection went away (closed by the gateway
// because the replica left the route: Canceled although the caller's
// context is alive, which forwardTo checks first).
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled:
		return true
	}
	return false
}

func awaitChange(ctx context.Context, rt *routing.Route, timeout time.Duration) error {
	// A timer, not context.WithTimeout: ctx may be a pooled request's
	// context (the REST gateway's exchange), which a context derived from
	// it would read from a goroutine of its own after the request ended.
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-rt.Changed():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return context.DeadlineExceeded
	}
}

// holdError turns an activator error into a status, as Gateway.holdError
// does into an HTTP response.
func (g *GRPC) holdError(ctx context.Context, tenant, name string, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	var failed *activator.FailedError
	switch {
	case errors.Is(err, activator.ErrTenantQueueFull):
		return grpcTenantQueueFull(ctx, tenant, name, err)
	case errors.Is(err, activator.ErrNotFound):
		return status.Error(codes.NotFound, notFound(name))
	case errors.Is(err, activator.ErrScaledToZero):
		_ = grpc.SetTrailer(ctx, metadata.Pairs("ebb-error-code", codeScaledToZero))
		return status.Error(codes.Unavailable, scaledToZero(name))
	case errors.As(err, &failed):
		return unavailable(ctx, 10, fmt.Sprintf("deployment %q cannot start a replica: %s", name, clip(failed.Reason)))
	case errors.Is(err, activator.ErrQueueFull):
		return unavailable(ctx, 1, fmt.Sprintf("deployment %q is starting and has too many requests waiting", name))
	case errors.Is(err, activator.ErrTimeout):
		return unavailable(ctx, 5, fmt.Sprintf("deployment %q had no ready replica in time (%v)", name, err))
	default:
		return unavailable(ctx, 1, fmt.Sprintf("deployment %q: %v", name, err))
	}
}

// unavailable returns an Unavailable status whose message ends with a retry
// hint, and sets the retry-after trailer to the same seconds.
func unavailable(ctx context.Context, retryAfter int, msg string) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", strconv.Itoa(retryAfter)))
	return status.Errorf(codes.Unavailable, "%s: retry in %ds", msg, retryAfter)
}

// httpStatus maps a gRPC code to the HTTP status the REST gateway would
// answer with, so that ebb_gateway_requests_total{code} counts both APIs
// alike.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.ResourceExhausted:
		return http.StatusRequestEntityTooLarge
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Canceled:
		return 499 // client closed the request
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// first returns vs[0], or "" for none.
func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}
