// Package connlimit holds the connection limits every ebb listener applies:
// timeouts on each phase of an HTTP exchange, keepalive and idle bounds on
// gRPC connections, and a cap on open connections per listener. Without
// them a client that opens connections and sends nothing, or sends a body
// one byte a second, holds a file descriptor and a goroutine for ever:
// about 20k idle keep-alive connections made `ebb up` unable to start
// replicas ("too many open files").
//
// # Timeouts, and why the defaults do not cut long inference
//
// net/http applies ReadTimeout to the request headers and body, and, once
// the handler has read the body, to the background read it uses to notice a
// client going away: when that read passes the deadline, the request's
// context is cancelled. A handler that runs longer than ReadTimeout after
// reading its body must therefore lift the read deadline itself, as the
// gateway and the replica do for inference (see EndBody) and the admin API
// does for log streams. So:
//
//   - ReadHeaderTimeout (10s) bounds slow headers.
//   - ReadTimeout (10m) bounds a whole request's headers and body on every
//     server: an 8 GiB model push at 14 MB/s fits.
//   - BodyTimeout (60s) bounds an inference body (at most 64 MiB) at the
//     gateway and the replica, which then lift the read deadline: a held
//     request and a long inference are not cut by the read timeouts.
//   - WriteTimeout (15m) runs from the end of the request headers to the
//     end of the response, so it must exceed BodyTimeout + the hold timeout
//     (60s by default) + the longest inference: the defaults leave 13
//     minutes for inference. Streams without end (ebb logs -f) lift it.
//   - IdleTimeout (2m) closes keep-alive connections that carry no request;
//     it is longer than the 90s idle timeout of Go's and ebb's own clients,
//     so a client closes an idle connection before the server does and
//     never loses a request to the race.
//
// The HTTP/1.1 fronts of ebb up and ebb gateway (gateway.Server) and of a
// replica (server.Server's Serve) are not net/http servers but fasthttp
// ones; they apply the same Limits in fasthttp's terms, documented there:
// ReadHeaderTimeout from a request's first byte, ReadTimeout and
// BodyTimeout for the body, WriteTimeout from the end of the handler to
// the end of the response (a handler is not bounded by it), IdleTimeout
// between requests, and MaxConns through Listener. StartBody and EndBody
// are for net/http servers (the admin API's, and a replica's ServeHTTP
// where an embedder serves it with net/http).
//
// gRPC gets the same bounds in its own terms (GRPCOptions): the handshake
// within ReadHeaderTimeout, idle connections closed after IdleTimeout,
// keepalive pings on quiet connections, clients that ping too often
// refused, and per call each request message within BodyTimeout.
package connlimit

import (
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Defaults for Limits fields left zero.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 10 * time.Minute
	DefaultBodyTimeout       = 60 * time.Second
	DefaultWriteTimeout      = 15 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxConns          = 4096
)

// Limits bound the connections of one listener. Zero fields take the
// defaults above; a negative duration or MaxConns turns that bound off.
type Limits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	// BodyTimeout bounds reading an inference request body; the gateway
	// and the replica apply it (EndBody lifts it).
	BodyTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// MaxConns caps the connections open at once; further ones wait in
	// the kernel's accept queue, using no descriptor of the process.
	MaxConns int
	// OnLimit, when set, is called each time a connection has to wait for
	// one to close because MaxConns are open (for a metric).
	OnLimit func()
	// OnMessageTimeout, when set, is called each time a gRPC call is ended
	// because a message deadline of GRPCOptions passed (for a metric).
	OnMessageTimeout func()
}

// WithDefaults returns l with zero fields set to their defaults and
// negative ones (off) set to zero, net/http's "no limit".
func (l Limits) WithDefaults() Limits {
	dur := func(d *time.Duration, def time.Duration) {
		switch {
		case *d == 0:
			*d = def
		case *d < 0:
			*d = 0
		}
	}
	dur(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	dur(&l.ReadTimeout, DefaultReadTimeout)
	dur(&l.BodyTimeout, DefaultBodyTimeout)
	dur(&l.WriteTimeout, DefaultWriteTimeout)
	dur(&l.IdleTimeout, DefaultIdleTimeout)
	switch {
	case l.MaxConns == 0:
		l.MaxConns = DefaultMaxConns
	case l.MaxConns < 0:
		l.MaxConns = 0
	}
	return l
}

// Apply sets srv's timeouts from l (with defaults).
func (l Limits) Apply(srv *http.Server) *http.Server {
	l = l.WithDefaults()
	srv.ReadHeaderTimeout = l.ReadHeaderTimeout
	srv.ReadTimeout = l.ReadTimeout
	srv.WriteTimeout = l.WriteTimeout
	srv.IdleTimeout = l.IdleTimeout
	return srv
}

// Server returns an http.Server for h with l's timeouts.
func (l Limits) Server(h http.Handler) *http.Server {
	return l.Apply(&http.Server{Handler: h})
}

// Listener returns ln capped at l.MaxConns open connections (ln itself
// when the cap is off).
func (l Limits) Listener(ln net.Listener) net.Listener {
	l = l.WithDefaults()
	if l.MaxConns <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, sem: make(chan struct{}, l.MaxConns), done: make(chan struct{}), onLimit: l.OnLimit}
}

// GRPCOptions returns the grpc.Server options that apply l: the handshake
// within ReadHeaderTimeout, connections without a call closed after
// IdleTimeout, a keepalive ping on a connection quiet for a minute (and the
// connection closed when it is not answered within 20s), clients that ping
// more often than every 10s disconnected, and per call each request
// message received within BodyTimeout (see msgDeadline). It installs
// gRPC's one InTapHandle.
func (l Limits) GRPCOptions() []grpc.ServerOption {
	l = l.WithDefaults()
	opts := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: l.IdleTimeout,
			Time:              time.Minute,
			Timeout:           20 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
	}
	if l.ReadHeaderTimeout > 0 {
		opts = append(opts, grpc.ConnectionTimeout(l.ReadHeaderTimeout))
	}
	if l.BodyTimeout > 0 {
		opts = append(opts, grpc.InTapHandle(l.tap),
			grpc.ChainUnaryInterceptor(unaryDeadlines), grpc.ChainStreamInterceptor(streamDeadlines))
	}
	return opts
}

// StartBody sets a deadline of d from now on reading r's body (none when d
// is 0); EndBody lifts it once the body is in. Between the two, a body that
// trickles in is cut at the deadline and the read fails with a timeout.
// Both are free of allocations.
func StartBody(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		setReadDeadline(w, time.Now().Add(d))
	}
}

// EndBody lifts the read deadline once a handler has read its request body,
// so that the server's ReadTimeout does not cancel a request whose handler
// runs on (a held request, a long inference). Call it only after the whole
// body was read: after a failed read, net/http reads what is left of the
// body before it answers, and the deadline must still bound that.
func EndBody(w http.ResponseWriter) { setReadDeadline(w, time.Time{}) }

// setReadDeadline is http.ResponseController.SetReadDeadline without its
// allocation (an error) for writers that cannot set deadlines, such as the
// recorders of tests and benchmarks.
func setReadDeadline(w http.ResponseWriter, t time.Time) {
	switch d := w.(type) {
	case interface{ SetReadDeadline(time.Time) error }:
		_ = d.SetReadDeadline(t)
	case interface{ Unwrap() http.ResponseWriter }:
		_ = http.NewResponseController(w).SetReadDeadline(t)
	}
}

// limitListener is netutil.LimitListener that reports when it waits.
type limitListener struct {
	net.Listener
	sem     chan struct{}
	done    chan struct{}
	once    sync.Once
	onLimit func()
}

func (l *limitListener) acquire() bool {
	select {
	case l.sem <- struct{}{}:
		return true
	default:
	}
	if l.onLimit != nil {
		l.onLimit()
	}
	select {
	case l.sem <- struct{}{}:
		return true
	case <-l.done:
		return false
	}
}

func (l *limitListener) Accept() (net.Conn, error) {
	if !l.acquire() {
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// Unwrap returns the connection c wraps when c is one of Listener's, else
// c. Only Close needs the wrapper (it gives the connection's slot back): a
// server that keeps c for that may read, write and set deadlines on what
// Unwrap returns, one call less each.
func Unwrap(c net.Conn) net.Conn {
	if lc, ok := c.(*limitConn); ok {
		return lc.Conn
	}
	return c
}
