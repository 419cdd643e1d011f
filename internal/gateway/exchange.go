package gateway

import (
	"bytes"
	"net/http"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/fairqueue"
	"github.com/ebb-ml/ebb/internal/limit"
	"github.com/ebb-ml/ebb/internal/oip"
	ebbreplica "github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/ebb-ml/ebb/internal/traffic"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// exchange is the state of one forwarded request, pooled: its context, its
// body, the request sent to replicas and the answer read from them, and
// the replicas tried.
type exchange struct {
	ctx  reqContext
	body []byte // the request body: buf, or another slice
	buf  []byte // pooled storage for bodies of known length
	req  fasthttp.Request
	resp fasthttp.Response

	// hdr are the client's headers that the gateway reads or passes on.
	hdr fwdHeaders

	tried   []*balance.Endpoint
	version string // the version asked for, while forwarding
	// tenant and prio are whom the request counts against and its
	// priority level (tenant.go); admitted, when set, gives back its
	// slot in its deployment's admission queue (release calls it).
	tenant   string
	prio     fairqueue.Priority
	admitted func()
	ticket   limit.Ticket // the tenant limits' hold, released with x
	secret   bool         // req carries a replica's secret
	// openAI is the accounting of an OpenAI request, which a stream
	// ends (openai_stream.go).
	openAI *openAIRequest
	// meter, when set, is the Meter of the route (a split's track) that
	// serves the request; picked is then when a replica was first picked
	// for it, where the latency it meters starts (zero while none was).
	meter  *traffic.Meter
	picked time.Time
	// key is the request's routing key (affinity.go) once keyState says
	// it was found.
	key      uint64
	keyState keyState

	// excludeTried and excludeOther are x.tried1 and x.otherVersion, bound
	// once per exchange rather than once per request.
	excludeTried, excludeOther func(*balance.Endpoint) bool

	// span is the request's telemetry.SpanRequest while it is traced
	// (trace.go); release ends it.
	span trace.Span
}

var exchanges = sync.Pool{New: func() any {
	x := &exchange{}
	x.excludeTried, x.excludeOther = x.tried1, x.otherVersion
	return x
}}

// maxPooledBody is the largest body buffer an exchange keeps for the next
// request.
const maxPooledBody = 1 << 20

func (g *Gateway) acquire(ctx *fasthttp.RequestCtx) *exchange {
	x := exchanges.Get().(*exchange)
	x.ctx.init(ctx)
	x.hdr.scan(&ctx.Request.Header)
	return x
}

// fwdHeaders are the client's request headers that the gateway reads (the
// request id, the priority) or passes on to replicas, found by scan in one
// pass over the request's names (normalized already): a Peek of each
// would normalize the name it is given on every call. They point into the
// client's request, and are valid while it is served (acquire scans them
// anew for each request). Of a header given twice, the first counts, as
// for Peek.
type fwdHeaders struct {
	requestID, priority, inferenceLength, traceparent, tracestate []byte
}

func (f *fwdHeaders) scan(h *fasthttp.RequestHeader) {
	*f = fwdHeaders{}
	for k, v := range h.All() {
		var to *[]byte
		switch {
		case bytes.Equal(k, headerRequestID):
			to = &f.requestID
		case bytes.Equal(k, headerPriority):
			to = &f.priority
		case bytes.Equal(k, headerInferenceLength):
			to = &f.inferenceLength
		case bytes.Equal(k, headerTraceparent):
			to = &f.traceparent
		case bytes.Equal(k, headerTracestate):
			to = &f.tracestate
		default:
			continue
		}
		if *to == nil {
			*to = v
		}
	}
}

// setOn passes the headers that replicas get on to h.
func (f *fwdHeaders) setOn(h *fasthttp.RequestHeader) {
	if f.requestID != nil {
		h.SetCanonical(headerRequestID, f.requestID)
	}
	if f.inferenceLength != nil {
		h.SetCanonical(headerInferenceLength, f.inferenceLength) // binary tensor data follows the JSON
	}
	// W3C trace context; a traced request's own replaces it (traceProxy).
	if f.traceparent != nil {
		h.SetCanonical(headerTraceparent, f.traceparent)
	}
	if f.tracestate != nil {
		h.SetCanonical(headerTracestate, f.tracestate)
	}
}

// release stops x's watch, if any, and puts x back in the pool.
func (x *exchange) release() {
	if x.span != nil {
		x.endTrace() // trace.go
	}
	if x.admitted != nil {
		x.admitted()
		x.admitted = nil
	}
	x.ticket.Release()
	x.ticket = limit.Ticket{}
	x.ctx.stop()
	x.ctx.rc, x.ctx.conn = nil, nil
	// The request is emptied but its URI stays parsed: send sets every
	// part of it that a request uses (scheme, host, path, query), and a
	// fresh one would be parsed again by the first URI call of the next.
	x.req.Header.Reset()
	x.req.ResetBody()
	x.resp.Reset()
	clear(x.tried)
	x.tried, x.body, x.version, x.openAI, x.secret = x.tried[:0], nil, "", nil, false
	x.tenant, x.prio = "", fairqueue.Interactive
	x.meter, x.picked = nil, time.Time{}
	x.key, x.keyState = 0, keyUnknown
	if cap(x.buf) > maxPooledBody {
		x.buf = nil
	}
	exchanges.Put(x)
}

func (x *exchange) tried1(e *balance.Endpoint) bool {
	for _, t := range x.tried {
		if t == e {
			return true
		}
	}
	return false
}

func (x *exchange) otherVersion(e *balance.Endpoint) bool {
	return e.Version != x.version || x.tried1(e)
}

// send forwards ctx's request to ep, to path with ctx's query; x.resp holds
// the answer. The endpoint's in-flight count covers the whole exchange:
// until the answer is read, or, for a stream, until it ends (passStream).
func (g *Gateway) send(ctx *fasthttp.RequestCtx, x *exchange, rt *routing.Route, ep *balance.Endpoint, m mode, path []byte) error {
	up, err := g.ups.get(rt, ep, m == modeOpenAI)
	if err != nil {
		return err
	}
	req := &x.req
	if len(x.tried) == 1 { // the first try builds the request; the next ones reuse it
		req.Header.SetNoDefaultContentType(true)
		req.Header.SetMethodBytes(ctx.Method())
		if ct := ctx.Request.Header.ContentType(); len(ct) > 0 {
			req.Header.SetContentTypeBytes(ct)
		}
		x.hdr.setOn(&req.Header)
		u := req.URI()
		u.SetPathBytes(path)
		u.SetQueryStringBytes(ctx.URI().QueryString())
		if x.body != nil {
			req.SetBodyRaw(x.body)
		}
	}
	u := req.URI()
	u.SetScheme(up.scheme)
	u.SetHost(up.host)
	switch {
	case ep.Secret != "":
		req.Header.SetCanonical(headerSecret, s2b(ep.Secret))
		x.secret = true
	case x.secret: // a replica tried before had one
		req.Header.Del(ebbreplica.SecretHeader)
		x.secret = false
	}
	x.resp.Header.SetNoDefaultContentType(true)
	var proxy trace.Span
	if x.span != nil {
		proxy = g.traceProxy(x, ep) // trace.go: a span per try, in the request's traceparent
	}
	ep.Acquire()
	err = up.hc.Do(req, &x.resp)
	if err != nil || m != modeOpenAI {
		ep.Release()
	}
	if proxy != nil {
		endProxy(proxy, x.resp.StatusCode(), err)
	}
	return err
}

// copyResponse passes x's answer from ep on: its status, Content-Type and
// body (moved, not copied), and the header Ebb-Replica naming ep.
func copyResponse(ctx *fasthttp.RequestCtx, x *exchange, ep *balance.Endpoint) int {
	status := x.resp.StatusCode()
	ctx.SetStatusCode(status)
	if ct := x.resp.Header.ContentType(); len(ct) > 0 {
		ctx.Response.Header.SetContentTypeBytes(ct)
	}
	ctx.Response.Header.SetCanonical(headerReplica, s2b(ep.ID))
	// The one header passed on besides, found in one pass over the
	// answer's few (normalized) names: Peek would normalize the name it
	// is given on every call.
	for k, v := range x.resp.Header.All() {
		if bytes.Equal(k, headerInferenceLength) {
			ctx.Response.Header.SetCanonical(headerInferenceLength, v)
			break
		}
	}
	moveBody(&ctx.Response, &x.resp)
	return status
}

// moveBody gives to the bytes of from's body. A small body is copied into
// to's buffer, and both responses keep the pooled buffers they have: with
// the buffers swapped, the hand rig's gateway (wrk, 64 connections)
// allocated fresh body buffers (perf: fasthttp's Response.ReadBody in
// bytebufferpool.Get), collected garbage five times as often and served
// 3% fewer requests. A large body is swapped, not copied.
func moveBody(to, from *fasthttp.Response) {
	if b := from.Body(); len(b) <= maxCopiedBody {
		to.SetBody(b)
		return
	}
	empty := to.SwapBody(nil)
	to.SwapBody(from.SwapBody(empty))
}

// maxCopiedBody is the largest answer body moveBody copies.
const maxCopiedBody = 16 << 10

// replicaHeader is the response header that names the replica that
// answered.
const replicaHeader = "Ebb-Replica"

// Header names in canonical form, for the fasthttp calls that take them so
// and skip normalizing.
var (
	headerReplica         = []byte(replicaHeader)
	headerRequestID       = []byte("X-Request-Id")
	headerPriority        = []byte(PriorityHeader)
	headerInferenceLength = []byte(http.CanonicalHeaderKey(oip.HeaderInferenceHeaderLength))
	headerSecret          = []byte(http.CanonicalHeaderKey(ebbreplica.SecretHeader))
	headerTraceparent     = []byte(http.CanonicalHeaderKey(telemetry.HeaderTraceparent))
	headerTracestate      = []byte(http.CanonicalHeaderKey(telemetry.HeaderTracestate))
)
