package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/valyala/fasthttp"
)

// Server is the HTTP/1.1 front of ebb up and ebb gateway, on fasthttp: the
// gateway's routes (Gateway.Handler) are served natively, and every other
// request (the admin API, /metrics, health checks) goes to a net/http
// handler (fallback.go). It applies the gateway's connlimit.Limits:
//
//   - ReadHeaderTimeout bounds the wait for a request's headers (on a new
//     connection, from its opening; on a kept-alive one, from the first
//     byte of the request).
//   - An inference body (the gateway's POST routes) must arrive within
//     BodyTimeout of the handler's start (its first byte, read before,
//     within the headers' deadline when that is shorter). The server reads
//     at most that one byte before the gateway decides, so a Content-Length
//     over MaxBodyBytes is refused (413) without reading the body, and the
//     buffered-bytes budget is taken before the rest is read (limits.go).
//     The deadline is applied only when a read has to wait for the client
//     (watchConn): a small body comes with its headers.
//   - Request headers may take up to 16 KiB; more get 431.
//   - Any other request's body must arrive within ReadTimeout of its
//     headers, and streams to its handler (an 8 GiB model push is not held
//     in memory).
//   - WriteTimeout bounds writing a response, from the end of its handler
//     (fasthttp does not bound the handler itself); streams without end
//     lift it (http.ResponseController.SetWriteDeadline).
//   - IdleTimeout closes a kept-alive connection that carries no request.
//   - These deadlines cost no timer reset on most requests (watchConn): a
//     read deadline is applied when a read reaches the connection, and a
//     deadline is not applied when the one in force is earlier by at most
//     1/64 of the shortest timeout. No timeout fires late, none more than
//     1/64 early.
//
// The connection cap is the listener's (Gateway.Listener); TLS is too: a
// tls.Listener serves it as plain TCP is served.
//
// Shutdown drains without resetting a client's connection. Closing every
// idle keep-alive connection at once would reset a client that sends its
// next request on one in that instant (a POST is not retried). So Shutdown
// first marks every response "Connection: close" (the client closes the
// connection after reading it), waits up to a grace period for the idle
// connections to be used or closed, and only then shuts the server down,
// closing those left (a FIN, not a reset: nothing unread is pending on an
// idle connection) and waiting for the requests in flight.
type Server struct {
	g        *Gateway
	srv      *fasthttp.Server
	handler  fasthttp.RequestHandler
	draining atomic.Bool

	readTimeout time.Duration // the rest of a request after its headers
	bodyTimeout time.Duration // an inference body after its headers
	slack       time.Duration // how early a connection's deadline may stand (watchConn)

	// mu guards conns, the open connections.
	mu    sync.Mutex
	conns map[*watchConn]bool
	// changed gets a value when a connection changes state while the
	// server drains.
	changed chan struct{}
}

// forever stands for "no limit" where fasthttp reads a zero duration as
// "the default".
const forever = 100 * 365 * 24 * time.Hour

// NewServer returns the front server of g, passing what g does not serve to
// fallback (nil: 404). It starts nothing; Serve serves.
func NewServer(g *Gateway, fallback http.Handler) *Server {
	l := g.opts.Limits // with defaults; a zero duration is no limit
	orForever := func(d time.Duration) time.Duration {
		if d <= 0 {
			return forever
		}
		return d
	}
	s := &Server{g: g, conns: map[*watchConn]bool{}, changed: make(chan struct{}, 1),
		readTimeout: orForever(l.ReadTimeout), bodyTimeout: orForever(l.BodyTimeout), slack: deadlineSlack(l)}
	var next fasthttp.RequestHandler
	if fallback != nil {
		next = adapt(fallback)
	}
	s.handler = g.Handler(next)
	s.srv = &fasthttp.Server{
		Handler:        s.handle,
		HeaderReceived: s.headerReceived,
		ErrorHandler:   s.errorHandler,
		ConnState:      s.track,
		// The deadline of a request's headers; HeaderReceived sets the
		// body's.
		ReadTimeout:  l.ReadHeaderTimeout,
		IdleTimeout:  orForever(l.IdleTimeout),
		WriteTimeout: l.WriteTimeout,
		// Headers of up to 16 KiB (tokens, cookies); a request with more
		// gets 431.
		ReadBufferSize:               16 << 10,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true,
		Logger:                       fastLogger{g.opts.Logger},
	}
	return s
}

// Serve serves ln until Shutdown or Close, and then returns nil; an error
// when ln fails.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(watchListener{Listener: ln, slack: s.slack})
}

// deadlineSlack is how much earlier than asked a connection's deadline may
// stand (watchConn): 1/64 of the shortest of l's timeouts, so none fires
// more than 1.6% early; 0 when l has none.
func deadlineSlack(l connlimit.Limits) time.Duration {
	var shortest time.Duration
	for _, d := range []time.Duration{l.ReadHeaderTimeout, l.ReadTimeout, l.BodyTimeout, l.WriteTimeout, l.IdleTimeout} {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	return shortest / 64
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	s.handler(ctx)
	if s.draining.Load() {
		ctx.SetConnectionClose()
	}
}

// headerReceived sets the body's read deadline and size handling of the
// request whose headers h arrived (see Server).
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	// MaxRequestBodySize 1: the server reads one byte of a body before
	// the handler runs (it reads min(size, 8 KiB)), and the handler the
	// rest, as it goes.
	if !h.IsPost() || !takesBody(h.RequestURI()) {
		return fasthttp.RequestConfig{ReadTimeout: s.readTimeout, MaxRequestBodySize: 1}
	}
	if cl := h.ContentLength(); int64(cl) > s.g.opts.MaxBodyBytes {
		// Not a byte of it is read: the gateway answers 413 from the
		// length it declared, and the connection closes.
		h.Set(refusedLengthHeader, strconv.Itoa(cl))
		h.SetContentLength(0)
		h.Del(fasthttp.HeaderExpect)
		return fasthttp.RequestConfig{ReadTimeout: s.bodyTimeout}
	}
	// The gateway reads the rest, in its budget, within BodyTimeout
	// (readBody). The one byte read here must arrive within that too:
	// the headers' deadline bounds it already when it is shorter.
	cfg := fasthttp.RequestConfig{MaxRequestBodySize: 1}
	if l := s.g.opts.Limits; l.ReadHeaderTimeout <= 0 || l.ReadHeaderTimeout > l.BodyTimeout {
		cfg.ReadTimeout = s.bodyTimeout
	}
	return cfg
}

// errorHandler answers a request the server could not read, as net/http
// would.
func (s *Server) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		writeText(ctx, http.StatusRequestHeaderFieldsTooLarge, "431 Request Header Fields Too Large")
	case errors.As(err, &ne) && ne.Timeout():
		writeText(ctx, http.StatusRequestTimeout, "408 Request Timeout: the request did not arrive in time")
	default:
		writeText(ctx, http.StatusBadRequest, "400 Bad Request")
	}
}

// track follows the state of each connection: in the connection itself,
// so that a request costs no lock, and the set of open ones.
func (s *Server) track(c net.Conn, state fasthttp.ConnState) {
	w := asWatchConn(c)
	if w == nil {
		return
	}
	switch state {
	case fasthttp.StateNew:
		s.mu.Lock()
		s.conns[w] = true
		s.mu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		s.mu.Lock()
		delete(s.conns, w)
		s.mu.Unlock()
	}
	w.idle.Store(state == fasthttp.StateNew || state == fasthttp.StateIdle)
	if s.draining.Load() {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
}

// idleConns returns how many connections are idle: open, with no request
// in flight.
func (s *Server) idleConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for w := range s.conns {
		if w.idle.Load() {
			n++
		}
	}
	return n
}

// Shutdown closes keep-alive connections gracefully (see Server), then
// stops accepting and waits for the requests in flight, within ctx; then
// it closes the gateway's connections to replicas (Gateway.Close).
func (s *Server) Shutdown(ctx context.Context, grace time.Duration) error {
	s.draining.Store(true)
	t := time.NewTimer(grace)
	defer t.Stop()
wait:
	for s.idleConns() > 0 {
		select {
		case <-s.changed:
		case <-t.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	err := s.srv.ShutdownWithContext(ctx)
	s.g.Close()
	if err != nil {
		return fmt.Errorf("requests in flight did not finish: %w", err)
	}
	return nil
}

// Close stops accepting and closes idle connections at once, leaving
// requests in flight to finish on their own.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.srv.ShutdownWithContext(ctx)
	s.g.Close()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// fastLogger passes fasthttp's log lines (a connection's errors) to the
// gateway's logger, at debug level: they concern one client.
type fastLogger struct{ l *slog.Logger }

func (f fastLogger) Printf(format string, args ...any) {
	if f.l.Enabled(context.Background(), slog.LevelDebug) {
		f.l.Debug("http server: " + fmt.Sprintf(format, args...))
	}
}
