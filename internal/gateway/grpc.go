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
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// GRPC is the data plane for the OIP v2 gRPC API (oipgrpc's
// GRPCInferenceService), with the REST gateway's semantics: ServerLive,
// ServerReady, ServerMetadata and ModelReady are answered here without
// waking anything; ModelMetadata and ModelInfer are held while the
// deployment is cold, sent to a replica's gRPC server picked by
// power-of-two-choices, and retried on another replica when one fails before
// answering (status Unavailable). Activator errors become NotFound, or
// Unavailable with a "retry in Ns" hint in the message and a retry-after
// trailer (seconds).
//
// The response header ebb-replica names the replica that answered. A
// request's x-request-id metadata is passed on to the replica.
type GRPC struct {
	oipgrpc.UnimplementedGRPCInferenceServiceServer

	routes   Routes
	holder   Holder
	opts     Options
	balancer balance.PowerOfTwo
	conns    *grpcConns
}

// NewGRPC returns the gRPC data plane. It uses opts as New does, except
// Transport; MaxBodyBytes bounds a request message.
func NewGRPC(routes Routes, holder Holder, opts Options) *GRPC {
	g := New(routes, holder, opts) // applies the defaults
	return &GRPC{
		routes: routes,
		holder: holder,
		opts:   g.opts,
		conns:  newGRPCConns(routes, int(g.opts.MaxBodyBytes)),
	}
}

// NewServer returns a grpc.Server with g registered, accepting request
// messages up to Options.MaxBodyBytes; opts are added to those.
func (g *GRPC) NewServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{grpc.MaxRecvMsgSize(int(g.opts.MaxBodyBytes))}, opts...)
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
	s := g.NewServer()
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

// Close closes g's connections to replicas (those in use once their calls
// end). Calls forwarded after Close fail with Unavailable.
func (g *GRPC) Close() { g.conns.close() }

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

// ModelReady answers as GET /v2/models/{m}/ready does, without waking the
// deployment: one scaled to zero is ready (a request would start it), one
// whose replicas fail to start is not, an unknown one is NotFound.
func (g *GRPC) ModelReady(_ context.Context, req *oipgrpc.ModelReadyRequest) (*oipgrpc.ModelReadyResponse, error) {
	rt := g.routes.Lookup(req.GetName())
	if rt == nil {
		return nil, status.Error(codes.NotFound, notFound(req.GetName()))
	}
	return &oipgrpc.ModelReadyResponse{Ready: len(rt.Endpoints) > 0 || rt.Failure == ""}, nil
}

// ModelMetadata forwards to a replica of the deployment.
func (g *GRPC) ModelMetadata(ctx context.Context, req *oipgrpc.ModelMetadataRequest) (*oipgrpc.ModelMetadataResponse, error) {
	var resp *oipgrpc.ModelMetadataResponse
	err := g.forward(ctx, req.GetName(), func(ctx context.Context, c oipgrpc.GRPCInferenceServiceClient) error {
		var err error
		resp, err = c.ModelMetadata(ctx, req)
		return err
	})
	return resp, err
}

// ModelInfer forwards to a replica of the deployment.
func (g *GRPC) ModelInfer(ctx context.Context, req *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
	var resp *oipgrpc.ModelInferResponse
	err := g.forward(ctx, req.GetModelName(), func(ctx context.Context, c oipgrpc.GRPCInferenceServiceClient) error {
		var err error
		resp, err = c.ModelInfer(ctx, req)
		return err
	})
	return resp, err
}

// forward runs call on a replica of deployment name, recording the request
// in the route's stats and the gateway metrics.
func (g *GRPC) forward(ctx context.Context, name string, call func(context.Context, oipgrpc.GRPCInferenceServiceClient) error) error {
	start := g.opts.Clock.Now()
	rt := g.routes.Lookup(name)
	if rt == nil {
		g.opts.Metrics.observe("(unknown)", http.StatusNotFound, 0, false)
		return status.Error(codes.NotFound, notFound(name))
	}
	if rt.Stats != nil {
		rt.Stats.Begin(start)
		defer func() { rt.Stats.End(g.opts.Clock.Now()) }()
	}
	g.opts.Metrics.begin(name)
	err := g.forwardTo(ctx, name, call)
	g.opts.Metrics.observe(name, httpStatus(status.Code(err)), g.opts.Clock.Since(start), true)
	return err
}

func (g *GRPC) forwardTo(ctx context.Context, name string, call func(context.Context, oipgrpc.GRPCInferenceServiceClient) error) error {
	out := ctx
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if ids := md.Get("x-request-id"); len(ids) > 0 {
			out = metadata.AppendToOutgoingContext(ctx, "x-request-id", ids[0])
		}
	}
	var tried []*balance.Endpoint
	excluded := func(e *balance.Endpoint) bool {
		for _, t := range tried {
			if t == e {
				return true
			}
		}
		return false
	}
	var lastErr error
	for len(tried) < g.opts.Attempts {
		rt, err := g.holder.Wait(ctx, name)
		if err != nil {
			return g.holdError(ctx, name, err)
		}
		ep := g.balancer.Pick(rt.Endpoints, excluded)
		if ep == nil {
			// Every routed replica failed for this request: wait for
			// the control loop to publish a change.
			if err := awaitChange(ctx, rt, g.opts.HoldTimeout); err != nil {
				return unavailable(ctx, 1, fmt.Sprintf("no replica of %q could take the request: %v", name, lastErr))
			}
			continue
		}
		tried = append(tried, ep)
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
		g.opts.Logger.Debug("replica failed before answering; retrying", "deployment", name, "replica", ep.ID, "err", err)
		g.opts.Metrics.retried(name)
	}
	return unavailable(ctx, 1, fmt.Sprintf("%d replicas of %q failed to answer, last: %v", len(tried), name, lastErr))
}

// send runs call on ep's cached connection, counting it in ep's in-flight
// requests.
func (g *GRPC) send(ctx context.Context, rt *routing.Route, ep *balance.Endpoint, call func(context.Context, oipgrpc.GRPCInferenceServiceClient) error) error {
	c, release, err := g.conns.client(rt, ep)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	defer release()
	ep.Acquire()
	defer ep.Release()
	return call(ctx, c)
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
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case <-rt.Changed():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// holdError turns an activator error into a status, as Gateway.holdError
// does into an HTTP response.
func (g *GRPC) holdError(ctx context.Context, name string, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	var failed *activator.FailedError
	switch {
	case errors.Is(err, activator.ErrNotFound):
		return status.Error(codes.NotFound, notFound(name))
	case errors.As(err, &failed):
		return unavailable(ctx, 10, fmt.Sprintf("deployment %q cannot start a replica: %s", name, failed.Reason))
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
