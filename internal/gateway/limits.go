package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// Defaults of the body limits.
const (
	// DefaultMaxBodyBytes bounds one inference request body (a gRPC
	// request message) when Options.MaxBodyBytes is zero.
	DefaultMaxBodyBytes = 64 << 20
	// DefaultMaxBufferedBytes bounds the request body bytes the gateway
	// holds across all requests in flight when Options.MaxBufferedBytes
	// is zero.
	DefaultMaxBufferedBytes = 256 << 20
)

// Limits the gateway answers with 413, 408 or 503, as the label of
// ebb_gateway_limited_total.
const (
	limitBodyBytes     = "body_bytes"     // 413: one body over MaxBodyBytes
	limitBufferedBytes = "buffered_bytes" // 503: all bodies over MaxBufferedBytes
	limitBodyTimeout   = "body_timeout"   // 408: body slower than BodyTimeout
	limitConns         = "conns"          // a connection waited: MaxConns open
	// ResourceExhausted: a gRPC request message over MaxBodyBytes, refused
	// by gRPC's transport before the gateway sees it.
	limitGRPCMessageSize = "grpc_message_size"
	// A gRPC call cancelled: its request message not in within BodyTimeout.
	limitGRPCMessageTimeout = "grpc_message_timeout"
)

// newLimited returns ebb_gateway_limited_total.
func newLimited(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ebb_gateway_limited_total",
		Help: "Requests refused, or connections delayed, by a hard limit: body_bytes (413), buffered_bytes (503), body_timeout (408), conns (a connection waited to be accepted), grpc_message_size (a gRPC request message over --max-body-bytes: ResourceExhausted), grpc_message_timeout (a gRPC call cancelled: its request message not in within --body-timeout).",
	}, []string{"limit"})
	for _, l := range []string{limitBodyBytes, limitBufferedBytes, limitBodyTimeout, limitConns, limitGRPCMessageSize, limitGRPCMessageTimeout} {
		c.WithLabelValues(l) // export zeros
	}
	reg.MustRegister(c)
	return c
}

func (m *Metrics) limit(name string) {
	if m != nil {
		m.limited.WithLabelValues(name).Inc()
	}
}

// ConnLimited returns a function that counts a connection that waited for
// the cap on open connections (connlimit.Limits.OnLimit).
func (m *Metrics) ConnLimited() func() {
	return func() { m.limit(limitConns) }
}

// BodyBudget counts the request body bytes held across all requests in
// flight, against Options.MaxBufferedBytes. One budget given to a REST
// Gateway and a GRPC server (Options.Budget) makes one cap bound both.
// The zero value is an empty budget.
type BodyBudget struct {
	held atomic.Int64
}

// Held reports the bytes held now.
func (b *BodyBudget) Held() int64 { return b.held.Load() }

// reserve takes n bytes of the budget max, or reports false and takes
// nothing when they do not fit.
func (b *BodyBudget) reserve(n, max int64) bool {
	if b.held.Add(n) > max {
		b.held.Add(-n)
		return false
	}
	return true
}

func (b *BodyBudget) release(n int64) { b.held.Add(-n) }

// errBudget is what a body of unknown length reads once it no longer fits
// the budget.
var errBudget = errors.New("gateway body budget exhausted")

// budgetReader reserves the bytes of a body of unknown length (chunked) as
// they arrive.
type budgetReader struct {
	r        io.Reader
	b        *BodyBudget
	max      int64
	reserved int64
}

func (r *budgetReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		if !r.b.reserve(int64(n), r.max) {
			return 0, errBudget
		}
		r.reserved += int64(n)
	}
	return n, err
}

// bodyChunk is the piece a body of unknown length is read in.
const bodyChunk = 64 << 10

// readChunks reads a body of unknown length in fixed pieces, then copies
// them into one slice of the exact size: unlike a doubling buffer, it never
// holds more than the bytes read plus that final copy, and it reserves the
// copy in the budget too (budgetReader reserved the pieces), so the budget
// bounds what the gateway really holds.
func readChunks(r io.Reader, counted *budgetReader) ([]byte, error) {
	var chunks [][]byte
	var total int
	for {
		c := make([]byte, bodyChunk)
		n, err := io.ReadFull(r, c)
		if n > 0 {
			chunks = append(chunks, c[:n])
			total += n
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if len(chunks) == 1 {
		return chunks[0], nil
	}
	if !counted.b.reserve(int64(total), counted.max) {
		return nil, errBudget
	}
	out := make([]byte, 0, total)
	for _, c := range chunks {
		out = append(out, c...)
	}
	counted.b.release(int64(total))
	return out, nil
}

// refusedLengthHeader carries, to the handler, the Content-Length of an
// inference request that Server refused to read (over MaxBodyBytes): it
// sets the request's length to 0 so that no byte of the body is read, and
// the handler answers 413 and closes the connection.
const refusedLengthHeader = "Ebb-Refused-Content-Length"

// errTooLarge is what a body of unknown length reads once it passes
// MaxBodyBytes.
var errTooLarge = errors.New("request body too large")

// maxReader is io.LimitReader that fails with errTooLarge past its limit.
type maxReader struct {
	r    io.Reader
	left int64
}

func (m *maxReader) Read(p []byte) (int, error) {
	if int64(len(p)) > m.left+1 {
		p = p[:m.left+1] // one byte more tells a body at the limit from one over it
	}
	n, err := m.r.Read(p)
	if m.left -= int64(n); m.left < 0 {
		return n, errTooLarge
	}
	return n, err
}

// readBody reads an infer request body into x within the gateway's limits:
// 413 from Content-Length before a byte is read, then the global budget of
// buffered bytes (503 with Retry-After beyond it), then MaxBodyBytes and
// BodyTimeout (from the handler's start) while reading. It returns the bytes it holds of the
// budget, to release when the request ends, or, having written the error,
// the status.
func (g *Gateway) readBody(ctx *fasthttp.RequestCtx, x *exchange) (held int64, status int) {
	limit := g.opts.MaxBodyBytes
	h := &ctx.Request.Header
	cl := int64(h.ContentLength())
	if cl == 0 { // perhaps set so by Server: the body was refused unread
		if v := h.Peek(refusedLengthHeader); len(v) > 0 {
			cl, _ = strconv.ParseInt(string(v), 10, 64)
		}
	}
	if cl > limit {
		ctx.SetConnectionClose() // the body stays unread
		g.opts.Metrics.limit(limitBodyBytes)
		return 0, writeError(ctx, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body of %d bytes exceeds the limit of %d bytes (--max-body-bytes): send fewer rows per request", cl, limit))
	}
	stream := ctx.RequestBodyStream()
	if stream == nil {
		// The server read the body already (one without
		// StreamRequestBody): hold it against the budget all the same.
		body := ctx.Request.Body()
		if int64(len(body)) > limit {
			g.opts.Metrics.limit(limitBodyBytes)
			return 0, writeError(ctx, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds the limit of %d bytes (--max-body-bytes): send fewer rows per request", limit))
		}
		if !g.budget.reserve(int64(len(body)), g.opts.MaxBufferedBytes) {
			return 0, g.overBudget(ctx)
		}
		x.body = body
		return int64(len(body)), 0
	}
	if conn := connOf(ctx); conn != nil && cl != 0 {
		// The body must arrive within BodyTimeout. A watchConn applies
		// the deadline only when a read reaches the connection: none
		// does for a body that came with its headers. The server sets
		// the idle deadline before it reads the next request.
		var d time.Time
		if g.opts.Limits.BodyTimeout > 0 {
			d = ctx.Time().Add(g.opts.Limits.BodyTimeout)
		}
		_ = conn.SetReadDeadline(d)
	}
	var err error
	if cl >= 0 {
		if !g.budget.reserve(cl, g.opts.MaxBufferedBytes) {
			ctx.SetConnectionClose()
			return 0, g.overBudget(ctx)
		}
		held = cl
		if int64(cap(x.buf)) < cl {
			x.buf = make([]byte, cl)
		}
		x.body = x.buf[:cl]
		_, err = io.ReadFull(stream, x.body)
	} else {
		counted := &budgetReader{r: stream, b: g.budget, max: g.opts.MaxBufferedBytes}
		x.body, err = readChunks(&maxReader{r: counted, left: limit}, counted)
		held = counted.reserved
	}
	if err == nil {
		return held, 0
	}
	// What is left of the body stays unread: the connection closes after
	// the answer.
	ctx.SetConnectionClose()
	g.budget.release(held)
	x.body = nil
	var ne net.Error
	switch {
	case errors.Is(err, errTooLarge):
		g.opts.Metrics.limit(limitBodyBytes)
		return 0, writeError(ctx, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body exceeds the limit of %d bytes (--max-body-bytes): send fewer rows per request", limit))
	case errors.Is(err, errBudget):
		return 0, g.overBudget(ctx)
	case errors.As(err, &ne) && ne.Timeout():
		g.opts.Metrics.limit(limitBodyTimeout)
		return 0, writeError(ctx, http.StatusRequestTimeout,
			fmt.Sprintf("request body did not arrive within %v: send it faster, or in smaller requests", g.opts.Limits.BodyTimeout))
	}
	return 0, writeError(ctx, http.StatusBadRequest, "cannot read request body: "+err.Error())
}

func (g *Gateway) overBudget(ctx *fasthttp.RequestCtx) int {
	g.opts.Metrics.limit(limitBufferedBytes)
	return writeUnavailable(ctx, 1, fmt.Sprintf("the request bodies the gateway holds would exceed its limit of %d bytes (--max-buffered-bytes): retry shortly", g.opts.MaxBufferedBytes))
}

// Listener returns ln capped at Options.Limits.MaxConns open connections,
// each wait counted in ebb_gateway_limited_total{limit="conns"}.
func (g *Gateway) Listener(ln net.Listener) net.Listener { return g.opts.Limits.Listener(ln) }

// maxReason is the most bytes of a replica's failure an error quotes.
const maxReason = 512

// clip shortens a failure reason (a model's load error, which may carry
// text of the model file) to maxReason bytes, so that no answer carries
// back kilobytes of it.
func clip(reason string) string {
	if len(reason) <= maxReason {
		return reason
	}
	cut := maxReason
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut] + fmt.Sprintf("... (%d bytes; the replica log has all of it: ebb logs)", len(reason))
}
