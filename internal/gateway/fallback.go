package gateway

import (
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// adapt serves h, a net/http handler, on the front server through
// fasthttpadaptor (which passes Flush through, for streams such as
// `ebb logs -f`, and http.ResponseController's deadlines), with two
// changes:
//
//   - The request body streams from the connection as the handler reads
//     it, within the server's ReadTimeout: the adaptor alone would read it
//     whole into memory first (a model push may be gigabytes).
//   - The request's strings are its own (ownStrings): the adaptor's point
//     into fasthttp's buffers, which the next request on the server
//     overwrites, and a handler may keep what it read (the token of an
//     admin request is a cache key of the token verifier).
//   - The request's context is cancelled when the client goes away
//     (clientgone.go), as net/http's is, for requests without a body;
//     for one with a body, it is the fasthttp context (cancelled on
//     shutdown), since watching the connection must wait until the body is
//     read and only the handler knows when that is.
//
// A handler must read its body before it flushes a response: once it
// flushes, the server writes, and then drains the body, on its own.
func adapt(h http.Handler) fasthttp.RequestHandler {
	inner := fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ownStrings(r)
		f, _ := r.Context().Value(fallbackKey{}).(*fallbackRequest)
		if f == nil {
			h.ServeHTTP(w, r)
			return
		}
		if f.body != nil {
			r.Body, r.ContentLength = io.NopCloser(f.body), f.size
		} else {
			r.Body, r.ContentLength = http.NoBody, 0
			defer f.ctx.stop()
			r = r.WithContext(&f.ctx)
		}
		h.ServeHTTP(w, r)
	}))
	return func(ctx *fasthttp.RequestCtx) {
		f := &fallbackRequest{}
		size := int64(ctx.Request.Header.ContentLength())
		if stream := ctx.RequestBodyStream(); stream != nil && size != 0 {
			// Taken off the request before the adaptor reads it; the
			// server still owns it and drains what the handler leaves.
			_ = ctx.Request.CloseBodyStream()
			f.body, f.size = stream, max(size, -1)
		} else {
			f.ctx.init(ctx)
		}
		ctx.SetUserValue(fallbackKey{}, f)
		inner(ctx)
	}
}

// fallbackKey is the user value of a request's fallbackRequest.
type fallbackKey struct{}

// fallbackRequest is what adapt passes on to the net/http handler: the
// body, or the context that watches the client.
type fallbackRequest struct {
	body io.Reader
	size int64 // -1: unknown (chunked)
	ctx  reqContext
}

// ownStrings gives r strings of its own in place of fasthttpadaptor's,
// which alias fasthttp's request buffers (unsafe strings) and change when
// the server reuses them for a later request: a token kept as a cache key,
// or a name kept in a map, would then read as another request's. The cost
// is a copy of the request line and headers, on the admin API's path only.
func ownStrings(r *http.Request) {
	r.Method = strings.Clone(r.Method)
	r.Proto = strings.Clone(r.Proto)
	r.Host = strings.Clone(r.Host)
	r.RequestURI = strings.Clone(r.RequestURI)
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
		r.URL = u
	}
	h := make(http.Header, len(r.Header))
	for k, vs := range r.Header {
		own := make([]string, len(vs))
		for i, v := range vs {
			own[i] = strings.Clone(v)
		}
		h[strings.Clone(k)] = own
	}
	r.Header = h
	for i, v := range r.TransferEncoding {
		r.TransferEncoding[i] = strings.Clone(v)
	}
}
