package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/rawsock"
	"github.com/ebb-ml/ebb/internal/serving/core"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Serve answers REST with fasthttp, not net/http: per request, net/http
// cost a replica more CPU than decoding, running and encoding a small
// model together (a goroutine and a read in the background to notice a
// client going away, deadline changes, header maps). Infer requests to
// the model, the data plane, are answered here natively; every other
// request (health, metadata, /metrics, /ebb/v1/replica, errors of routing,
// method or secret, and paths with escapes) goes to ServeHTTP through
// fasthttpadaptor, so it is answered exactly as ServeHTTP answers it.
//
// The Limits apply in fasthttp's terms, as the gateway applies them:
//
//   - ReadHeaderTimeout bounds a request's headers (from the connection's
//     opening, or from the first byte of a request on a kept-alive one).
//   - An infer (POST) body must arrive within BodyTimeout of its headers,
//     408 otherwise; other bodies within ReadTimeout.
//   - A Content-Length over MaxRequestBytes is refused with 413 before a
//     byte of the body is read, and the connection closes; a chunked body
//     gets 413 once it passes the limit.
//   - WriteTimeout bounds writing a response, from the end of its handler;
//     IdleTimeout closes kept-alive connections without a request.
//   - Request headers may take up to 16 KiB; more get 431.
//
// An infer request's context is cancelled when the drain times out (the
// connections are then closed), not when its client goes away: fasthttp
// reads a connection only between requests.

// refusedLengthHeader carries, from headerReceived to the handler, the
// Content-Length of a request whose body was refused unread (over
// MaxRequestBytes): the request's length is set to 0 so that no byte of
// the body is read. A client sending it itself only refuses its own
// request.
const refusedLengthHeader = "Ebb-Refused-Content-Length"

// forever stands for "no limit" where fasthttp reads zero as "the
// default".
const forever = 100 * 365 * 24 * time.Hour

var (
	contentTypeJSON        = []byte("application/json")
	contentTypeOctetStream = []byte("application/octet-stream")
)

// restServer is Serve's fasthttp server for one Server.
type restServer struct {
	s        *Server
	srv      *fasthttp.Server
	fallback fasthttp.RequestHandler
	// postTimeout and readTimeout bound the body of a POST (infer) and of
	// any other request, from the end of its headers.
	postTimeout, readTimeout time.Duration

	// mu guards conns, the open connections, closed when the drain times
	// out.
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (s *Server) newREST() *restServer {
	l := s.opts.Limits // with defaults; zero is no limit
	orForever := func(d time.Duration) time.Duration {
		if d <= 0 {
			return forever
		}
		return d
	}
	r := &restServer{s: s, fallback: fasthttpadaptor.NewFastHTTPHandler(s), conns: map[net.Conn]struct{}{},
		readTimeout: orForever(l.ReadTimeout), postTimeout: orForever(l.BodyTimeout)}
	if l.BodyTimeout <= 0 {
		r.postTimeout = r.readTimeout
	}
	handler := r.handle
	if s.pool != nil {
		// Chosen once: a Server of one model never pays for the lookup
		// of a model by name.
		handler = r.handlePool
	}
	r.srv = &fasthttp.Server{
		Handler:        handler,
		HeaderReceived: r.headerReceived,
		ErrorHandler:   r.errorHandler,
		ConnState:      r.track,
		// The deadline of a request's headers; headerReceived sets the
		// body's.
		ReadTimeout:                  l.ReadHeaderTimeout,
		IdleTimeout:                  orForever(l.IdleTimeout),
		WriteTimeout:                 l.WriteTimeout,
		MaxRequestBodySize:           int(s.opts.MaxRequestBytes),
		ReadBufferSize:               16 << 10,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true,
		Logger:                       fastLogger{s.log},
	}
	return r
}

// handle serves one request: infer natively, the rest through ServeHTTP.
func (r *restServer) handle(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	if !h.IsHTTP11() {
		ctx.Response.Header.SetProtocol(h.Protocol()) // as net/http answers HTTP/1.0
	}
	var refused int64
	if h.ContentLength() == 0 {
		if v := h.Peek(refusedLengthHeader); len(v) > 0 {
			refused, _ = strconv.ParseInt(string(v), 10, 64)
			ctx.SetConnectionClose() // the body stays unread
		}
	}
	if version, ok := r.inferRequest(ctx); ok {
		r.infer(ctx, version, refused)
		return
	}
	r.fallback(ctx)
}

// inferRequest reports whether ctx is an infer request that ServeHTTP
// would pass to infer (POST, the secret, the model's path, a version it
// serves), and its version. Paths with escapes go to ServeHTTP, which
// decodes them.
func (r *restServer) inferRequest(ctx *fasthttp.RequestCtx) (string, bool) {
	s := r.s
	if !ctx.IsPost() {
		return "", false
	}
	if s.opts.Secret != "" && !s.hasSecretBytes(ctx.Request.Header.Peek(core.SecretHeader)) {
		return "", false
	}
	rest, ok := bytes.CutPrefix(ctx.URI().PathOriginal(), []byte("/v2/models/"))
	if !ok {
		return "", false
	}
	rest, ok = bytes.CutPrefix(rest, []byte(s.name))
	if !ok || len(rest) == 0 || rest[0] != '/' {
		return "", false
	}
	rest = rest[1:]
	if string(rest) == "infer" {
		return "", true
	}
	v, ok := bytes.CutPrefix(rest, []byte("versions/"))
	if !ok {
		return "", false
	}
	v, ok = bytes.CutSuffix(v, []byte("/infer"))
	if !ok || len(v) == 0 || bytes.ContainsAny(v, "/%") {
		return "", false
	}
	version := string(v)
	return version, slices.Contains(s.meta.Versions, version)
}

// infer answers an infer request, as Server.infer does.
func (r *restServer) infer(ctx *fasthttp.RequestCtx, version string, refused int64) {
	r.inferModel(ctx, r.s, version, refused)
}

// inferModel answers an infer request to s: r's Server, or a model of its
// pool.
func (r *restServer) inferModel(ctx *fasthttp.RequestCtx, s *Server, version string, refused int64) {
	if refused > s.opts.MaxRequestBytes {
		r.refuse(ctx, s.tooLarge(refused))
		return
	}
	var headerLen string
	if v := ctx.Request.Header.Peek(oip.HeaderInferenceHeaderLength); len(v) > 0 {
		headerLen = string(v)
	}
	req, binary, rerr := s.parseBody(ctx.PostBody(), headerLen)
	if rerr != nil {
		r.refuse(ctx, rerr)
		return
	}
	inputs, names, rerr := s.prepare(&req, binary)
	bp := getBody()
	defer putBody(bp)
	ictx := r.s.stopped
	if s.opts.Tracer != nil {
		ictx = telemetry.ExtractFastHTTP(ictx, &ctx.Request.Header)
	}
	status, body, jsonLen := s.answer(ictx, &req, inputs, names, rerr, version, (*bp)[:0])
	*bp = body
	writeFast(ctx, status, body, jsonLen)
}

// writeFast writes an infer answer (see Server.answer). The body is
// copied.
func writeFast(ctx *fasthttp.RequestCtx, status int, body []byte, jsonLen int) {
	ctx.SetStatusCode(status)
	if jsonLen < len(body) {
		ctx.Response.Header.SetContentTypeBytes(contentTypeOctetStream)
		ctx.Response.Header.Set(oip.HeaderInferenceHeaderLength, strconv.Itoa(jsonLen))
	} else {
		ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	}
	ctx.SetBody(body)
}

// refuse answers rerr, a problem with what the client sent.
func (r *restServer) refuse(ctx *fasthttp.RequestCtx, rerr *RequestError) {
	r.s.log.Debug("bad infer request", "status", rerr.Status, "error", rerr.Msg)
	status, body, jsonLen := errorBody(nil, rerr.Status, rerr.Msg)
	writeFast(ctx, status, body, jsonLen)
}

// headerReceived sets the deadline and size handling of a request's body
// (see Serve).
func (r *restServer) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if !h.IsPost() {
		return fasthttp.RequestConfig{ReadTimeout: r.readTimeout}
	}
	if cl := int64(h.ContentLength()); cl > r.s.opts.MaxRequestBytes {
		// Not a byte of it is read: the handler answers 413 from the
		// length it declared, and the connection closes.
		h.Set(refusedLengthHeader, strconv.FormatInt(cl, 10))
		h.SetContentLength(0)
		h.Del(fasthttp.HeaderExpect)
	}
	return fasthttp.RequestConfig{ReadTimeout: r.postTimeout}
}

// errorHandler answers a request the server could not read: 413 for a
// body over the limit, 408 for one that did not arrive in time (both
// counted), as ServeHTTP answers them; 431, 408 and 400 for headers too
// large, late or malformed. The connection then closes.
func (r *restServer) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	s := r.s
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		ctx.Error("431 Request Header Fields Too Large", http.StatusRequestHeaderFieldsTooLarge)
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		r.refuse(ctx, s.bodyTooLarge())
	case isBodyTimeout(err):
		r.refuse(ctx, s.bodyTimedOut())
	case errors.As(err, &ne) && ne.Timeout():
		ctx.Error("408 Request Timeout: the request did not arrive in time", http.StatusRequestTimeout)
	default:
		ctx.Error("400 Bad Request", http.StatusBadRequest)
	}
}

// isBodyTimeout reports whether err, which the server could not read a
// request for, is a body that did not arrive in time. fasthttp passes on
// the connection's error as it is for a body of known length; it wraps
// errors in headers (and in chunks), and resets the request (its method
// too) after any failed body.
func isBodyTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// track keeps the set of open connections.
func (r *restServer) track(c net.Conn, state fasthttp.ConnState) {
	switch state {
	case fasthttp.StateNew:
		r.mu.Lock()
		r.conns[c] = struct{}{}
		r.mu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}
}

// closeConns closes every open connection.
func (r *restServer) closeConns() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
}

// fastLogger passes fasthttp's log lines (a connection's errors) to the
// server's logger, at debug level: they concern one client.
type fastLogger struct{ l *slog.Logger }

func (f fastLogger) Printf(format string, args ...any) {
	if f.l.Enabled(context.Background(), slog.LevelDebug) {
		f.l.Debug("http server: " + fmt.Sprintf(format, args...))
	}
}

// acceptListener retries Accept errors that pass (too many open files), as
// net/http does, where fasthttp would stop serving; and tells when the
// server first accepts, by which time it holds the listener, so that a
// shutdown closes it (one earlier would not).
type acceptListener struct {
	net.Listener
	once     sync.Once
	accepted chan struct{} // closed by the first Accept
}

func newAcceptListener(ln net.Listener) *acceptListener {
	return &acceptListener{Listener: ln, accepted: make(chan struct{})}
}

func (l *acceptListener) Accept() (net.Conn, error) {
	l.once.Do(func() { close(l.accepted) })
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Temporary() { // as net/http does
			return c, err
		}
		backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
		time.Sleep(backoff)
	}
}

// served is how the fasthttp server's Serve of listener i ended.
type served struct {
	i   int
	err error
}

// serveAll serves every listener of lns with r's one fasthttp server (one
// handler, one set of open connections, one shutdown), each from a
// goroutine whose end comes on the channel.
func (r *restServer) serveAll(lns []net.Listener) (<-chan served, []*acceptListener) {
	errc := make(chan served, len(lns))
	als := make([]*acceptListener, len(lns))
	for i, ln := range lns {
		als[i] = newAcceptListener(ln)
		go func() { errc <- served{i, r.srv.Serve(als[i])} }()
	}
	return errc, als
}

// capped returns lns, each capped at Options.Limits.MaxConns open
// connections, their sockets read and written with raw system calls
// (package rawsock: no wake of the scheduler's monitor per request).
func (s *Server) capped(lns []net.Listener) []net.Listener {
	out := make([]net.Listener, len(lns))
	for i, ln := range lns {
		out[i] = s.opts.Limits.Listener(rawsock.Listener(ln))
	}
	return out
}

// closeAll closes every listener of lns.
func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
}

// addrs names the addresses of lns, for logs.
func addrs(lns []net.Listener) string {
	names := make([]string, len(lns))
	for i, ln := range lns {
		names[i] = ln.Addr().String()
	}
	return strings.Join(names, ", ")
}
