package gateway

import (
	"io"
	"net/http"

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
