package gateway

import (
	"context"
	"strconv"
	"sync"

	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/valyala/fasthttp"
)

var _ queue.Forwarder = (*Gateway)(nil)

// parentKey is the user value of an in-process request (Forward) that
// holds its context: reqContext takes Done and Err from it.
type parentKey struct{}

// Forward runs an async request taken from the queue through the
// gateway's chain, in process, as a client's request would run: its
// tenant's limits, its deployment's hold while cold and fair admission at
// its priority, routing, retries. Its token was checked when it was
// submitted; it is not checked again. It implements queue.Forwarder: the
// status, content type and body of the answer, which the worker stores as
// the request's result (a 429 or 503 it retries later).
func (g *Gateway) Forward(ctx context.Context, req *queue.Request) (queue.Result, error) {
	rc := forwardCtxs.Get().(*fasthttp.RequestCtx)
	defer releaseForwardCtx(rc)
	// A request context as the server would have made it, filled in place
	// (no copy of the request). Its body buffers go back to fasthttp's own
	// pools on reset, which drop outsized ones: a large answer is not kept
	// in a pooled context.
	rc.Init2(nil, fastLogger{g.opts.Logger}, true)
	r := &rc.Request
	r.Header.SetMethod(fasthttp.MethodPost)
	path := "/v2/models/" + req.Deployment
	if req.Version != "" {
		path += "/versions/" + req.Version
	}
	r.SetRequestURI(path + "/infer")
	r.Header.SetContentType(req.ContentType)
	if req.HeaderLength > 0 {
		r.Header.Set("Inference-Header-Content-Length", strconv.FormatInt(req.HeaderLength, 10))
	}
	for k, v := range req.Header {
		r.Header.Set(k, v)
	}
	if req.Priority < queue.PriorityInteractive {
		r.Header.Set(PriorityHeader, "batch")
	}
	r.Header.Set("X-Request-Id", req.ID)
	r.SetBodyRaw(req.Body) // req outlives rc's use of it
	rc.SetUserValue(parentKey{}, ctx)
	g.infer(rc, []byte(req.Deployment), []byte(req.Version), req.Tenant)
	resp := &rc.Response
	res := queue.Result{Status: resp.StatusCode(), ContentType: string(resp.Header.ContentType()), Body: append([]byte(nil), resp.Body()...)}
	if n, err := strconv.ParseInt(string(resp.Header.Peek("Inference-Header-Content-Length")), 10, 64); err == nil && n > 0 && n <= int64(len(res.Body)) {
		res.HeaderLength = n // binary tensor data follows the JSON header
	}
	return res, nil
}

// forwardCtxs holds the request contexts of Forward. As with the server's
// own, nothing keeps one once the handler returned.
var forwardCtxs = sync.Pool{New: func() any { return new(fasthttp.RequestCtx) }}

func releaseForwardCtx(rc *fasthttp.RequestCtx) {
	rc.ResetUserValues()
	rc.Request.Reset()
	rc.Response.Reset()
	forwardCtxs.Put(rc)
}

// parentOf returns the context of an in-process request (Forward), or nil.
func parentOf(rc *fasthttp.RequestCtx) context.Context {
	p, _ := rc.UserValue(parentKey{}).(context.Context)
	return p
}
