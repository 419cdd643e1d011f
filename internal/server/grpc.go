package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// This file serves the OIP v2 gRPC API (oipgrpc.GRPCInferenceService) on the
// same port as REST: ServeWithGRPC looks at the first bytes of each accepted
// connection and hands those that open with the HTTP/2 client preface to a
// grpc.Server, the rest to the REST server. The split costs REST one
// classification per connection (a goroutine and a read of its first bytes),
// nothing per request. REST over prior-knowledge cleartext HTTP/2, which the
// REST server does not serve anyway, reaches the gRPC server and is refused.

// NewGRPCServer returns a grpc.Server with the OIP v2 GRPCInferenceService
// of s registered, accepting messages up to Options.MaxRequestBytes (larger
// ones are counted in ebb_replica_limited_total{limit="grpc_message_size"}).
// opts are added to those. ServeWithGRPC uses it; call Serve on it only to
// serve gRPC on a listener of its own.
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	limits := s.opts.Limits
	if m := s.opts.Metrics; m != nil && limits.OnMessageTimeout == nil {
		limits.OnMessageTimeout = func() { m.limit(limitGRPCMessageTimeout) }
	}
	opts = append(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(int(s.opts.MaxRequestBytes))}, limits.GRPCOptions()...), opts...)
	if m := s.opts.Metrics; m != nil {
		opts = append(opts, connlimit.CountSizeRefusals(func() { m.limit(limitGRPCMessageSize) }))
	}
	if s.opts.Secret != "" {
		opts = append(opts, grpc.ChainUnaryInterceptor(s.secretUnary), grpc.ChainStreamInterceptor(s.secretStream))
	}
	gs := grpc.NewServer(opts...)
	if s.pool != nil {
		oipgrpc.RegisterGRPCInferenceServiceServer(gs, &poolGRPC{s: s})
		return gs
	}
	oipgrpc.RegisterGRPCInferenceServiceServer(gs, &grpcService{s: s, meta: oipgrpc.MetadataResponse(s.meta)})
	return gs
}

// ServeWithGRPC is Serve with the OIP v2 gRPC API served on ln beside REST;
// each of more serves REST alone, as Serve serves it (a replica's Unix
// socket, which only the gateway's REST client dials). When ctx ends, REST
// and gRPC drain together within Options.DrainTimeout: Ready turns false,
// no connection is accepted, in-flight REST requests and gRPC calls
// finish. It returns nil after a clean drain and an error when a listener
// fails or the drain times out. It closes the listeners. Call it (or
// Serve) once.
func (s *Server) ServeWithGRPC(ctx context.Context, ln net.Listener, more ...net.Listener) error {
	gs := s.NewGRPCServer()
	sp := newSplitter(s.opts.Limits.Listener(ln))
	go sp.run()
	grpcServed := make(chan error, 1)
	go func() { grpcServed <- gs.Serve(sp.grpc) }()

	restDone := make(chan struct{})
	grpcDrained := make(chan error, 1)
	go func() {
		select {
		case <-ctx.Done():
			grpcDrained <- drainGRPC(gs, s.opts.DrainTimeout)
		case <-restDone:
			// REST failed on its own (its listener broke): stop gRPC too.
			gs.Stop()
			grpcDrained <- nil
		}
	}()
	err := s.serve(ctx, append([]net.Listener{sp.http}, s.capped(more)...))
	close(restDone)
	gerr := <-grpcDrained
	if serr := <-grpcServed; serr != nil && !errors.Is(serr, grpc.ErrServerStopped) {
		gerr = errors.Join(gerr, fmt.Errorf("serving gRPC on %s: %w", ln.Addr(), serr))
	}
	sp.closeRoot()
	return errors.Join(err, gerr)
}

// drainGRPC stops gs gracefully, closing the calls still running after
// timeout.
func drainGRPC(gs *grpc.Server, timeout time.Duration) error {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		gs.Stop()
		<-done
		return fmt.Errorf("drain: in-flight gRPC calls did not finish within %v; closed them", timeout)
	}
}

// grpcService implements the GRPCInferenceService on a Server's core: the
// same checks, model calls and readiness as the REST endpoints.
type grpcService struct {
	oipgrpc.UnimplementedGRPCInferenceServiceServer
	s    *Server
	meta *oipgrpc.ModelMetadataResponse
}

func (g *grpcService) ServerLive(context.Context, *oipgrpc.ServerLiveRequest) (*oipgrpc.ServerLiveResponse, error) {
	return &oipgrpc.ServerLiveResponse{Live: true}, nil
}

func (g *grpcService) ServerReady(context.Context, *oipgrpc.ServerReadyRequest) (*oipgrpc.ServerReadyResponse, error) {
	return &oipgrpc.ServerReadyResponse{Ready: g.s.Ready()}, nil
}

func (g *grpcService) ServerMetadata(context.Context, *oipgrpc.ServerMetadataRequest) (*oipgrpc.ServerMetadataResponse, error) {
	return &oipgrpc.ServerMetadataResponse{Name: "ebb", Version: g.s.opts.Version, Extensions: Extensions()}, nil
}

func (g *grpcService) ModelReady(_ context.Context, req *oipgrpc.ModelReadyRequest) (*oipgrpc.ModelReadyResponse, error) {
	if err := g.checkModel(req.GetName(), req.GetVersion()); err != nil {
		return nil, err
	}
	return &oipgrpc.ModelReadyResponse{Ready: g.s.Ready()}, nil
}

func (g *grpcService) ModelMetadata(_ context.Context, req *oipgrpc.ModelMetadataRequest) (*oipgrpc.ModelMetadataResponse, error) {
	if err := g.checkModel(req.GetName(), req.GetVersion()); err != nil {
		return nil, err
	}
	return g.meta, nil
}

// ModelInfer answers like POST /v2/models/{m}/infer. Outputs are returned
// as typed contents, or as raw_output_contents when the request sent raw
// inputs (as Triton does).
func (g *grpcService) ModelInfer(ctx context.Context, req *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
	s := g.s
	if err := g.checkModel(req.GetModelName(), req.GetModelVersion()); err != nil {
		return nil, err
	}
	var names []string
	if outs := req.GetOutputs(); len(outs) > 0 {
		names = make([]string, len(outs))
		for i, o := range outs {
			names[i] = o.GetName()
		}
	}
	inputs, err := oipgrpc.InputTensors(req)
	if err != nil {
		s.log.Debug("bad gRPC infer request", "id", req.GetId(), "error", err)
		return nil, err
	}
	inputs, err = s.CheckInputs(inputs)
	if s.opts.Tracer != nil {
		ctx = telemetry.ExtractGRPC(ctx)
	}
	var outputs []oip.Tensor
	if err == nil {
		outputs, err = s.Infer(ctx, inputs, names)
	}
	if err != nil {
		return nil, g.inferError(ctx, req.GetId(), err)
	}
	resp := &oipgrpc.ModelInferResponse{ModelName: s.name, ModelVersion: s.version(req.GetModelVersion()), Id: req.GetId()}
	if err := oipgrpc.SetOutputs(resp, outputs, len(req.GetRawInputContents()) > 0); err != nil {
		s.log.Error("encoding gRPC infer response", "id", req.GetId(), "error", err)
		return nil, status.Errorf(codes.Internal, "model %s: encoding the response: %v", s.name, err)
	}
	return resp, nil
}

// inferError maps an error of CheckInputs or Infer to a gRPC status, as the
// REST server maps it to an HTTP status.
func (g *grpcService) inferError(ctx context.Context, id string, err error) error {
	var re *RequestError
	switch {
	case errors.As(err, &re):
		g.s.log.Debug("gRPC infer request rejected", "id", id, "error", err)
		if re.Status == http.StatusRequestEntityTooLarge {
			return status.Error(codes.ResourceExhausted, re.Msg)
		}
		return status.Error(codes.InvalidArgument, re.Msg)
	case ctx.Err() != nil:
		g.s.log.Debug("gRPC infer abandoned by the client", "id", id, "error", err)
		return status.FromContextError(ctx.Err()).Err()
	default:
		g.s.log.Error("gRPC infer failed", "id", id, "error", err)
		return status.Errorf(codes.Internal, "model %s: %v", g.s.name, err)
	}
}

// checkModel answers NotFound unless name and version are served here.
func (g *grpcService) checkModel(name, version string) error {
	s := g.s
	if name != s.name {
		return status.Errorf(codes.NotFound, "model %q not found: this replica serves %q", name, s.name)
	}
	if !s.hasVersion(version) {
		return status.Error(codes.NotFound, s.noVersion(version))
	}
	return nil
}

// http2Preface opens every HTTP/2 connection, so every gRPC one.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// classifyTimeout bounds the wait for a new connection's first bytes, as
// Serve's ReadHeaderTimeout bounds a request's header.
const classifyTimeout = 30 * time.Second

// splitter accepts connections on root and passes each to the grpc or the
// http listener by its first bytes. It closes root once both are closed.
type splitter struct {
	root       net.Listener
	http, grpc *subListener

	mu   sync.Mutex
	open int // subListeners not yet closed
	// pending are connections being classified; closeRoot closes them.
	pending    map[net.Conn]struct{}
	rootClosed bool
	// err is root's Accept failure, returned by both subListeners.
	err error
	// failed is closed when err is set.
	failed chan struct{}
}

func newSplitter(root net.Listener) *splitter {
	sp := &splitter{root: root, open: 2, failed: make(chan struct{}), pending: map[net.Conn]struct{}{}}
	sp.http = &subListener{sp: sp, conns: make(chan net.Conn), closed: make(chan struct{})}
	sp.grpc = &subListener{sp: sp, conns: make(chan net.Conn), closed: make(chan struct{})}
	return sp
}

// run accepts until root fails or is closed.
func (sp *splitter) run() {
	var backoff time.Duration
	for {
		c, err := sp.root.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { // as net/http does
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			sp.mu.Lock()
			sp.err = err
			sp.mu.Unlock()
			close(sp.failed)
			return
		}
		backoff = 0
		sp.mu.Lock()
		if sp.rootClosed {
			sp.mu.Unlock()
			c.Close()
			continue
		}
		sp.pending[c] = struct{}{}
		sp.mu.Unlock()
		go sp.classify(c)
	}
}

// classify reads as much of c's first bytes as tells HTTP/2 from HTTP/1 and
// hands c, those bytes put back, to the matching listener.
func (sp *splitter) classify(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(classifyTimeout))
	var buf [24]byte // len(http2Preface)
	n := 0
	isGRPC := true
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if !bytes.Equal(buf[:n], http2Preface[:n]) {
			isGRPC = false
			break
		}
		if err != nil {
			if n == 0 {
				sp.mu.Lock()
				delete(sp.pending, c)
				sp.mu.Unlock()
				c.Close()
				return
			}
			// Let the server see the bytes, then the error.
			isGRPC = false
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	sp.mu.Lock()
	delete(sp.pending, c)
	sp.mu.Unlock()
	pc := &prefixConn{Conn: c, prefix: buf[:n]}
	l := sp.http
	if isGRPC {
		l = sp.grpc
	}
	select {
	case l.conns <- pc:
	case <-l.closed:
		c.Close()
	}
}

// closeRoot closes root and the connections not yet classified (once both
// subListeners are closed, or at the end).
func (sp *splitter) closeRoot() {
	sp.root.Close()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.rootClosed = true
	for c := range sp.pending {
		c.Close()
	}
}

func (sp *splitter) closed() {
	sp.mu.Lock()
	sp.open--
	last := sp.open == 0
	sp.mu.Unlock()
	if last {
		sp.closeRoot()
	}
}

// subListener is one side of a splitter.
type subListener struct {
	sp        *splitter
	conns     chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.sp.failed:
		l.sp.mu.Lock()
		defer l.sp.mu.Unlock()
		return nil, l.sp.err
	}
}

func (l *subListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.sp.closed()
	})
	return nil
}

func (l *subListener) Addr() net.Addr { return l.sp.root.Addr() }

// prefixConn is a connection whose first bytes were read; Read returns them
// again first.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
