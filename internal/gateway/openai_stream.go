package gateway

import (
	"encoding/json"
	"io"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/valyala/fasthttp"
)

// How an OpenAI answer reaches the client: the replica's answer streams
// through as it arrives (each piece the replica sends is written and
// flushed at once, headers first, so server-sent events keep their timing),
// except an error: an error body of up to maxErrorCapture bytes is read
// whole, and when it has the OIP shape ({"error": "message"}: the
// gateway's own errors, and a replica's) it is reshaped to the OpenAI one.
// A longer error body, or one of another shape (the model server's own),
// passes unchanged.

// maxErrorCapture bounds the error body read to reshape; a longer one
// passes unchanged.
const maxErrorCapture = 64 << 10

// passStream passes x's answer from ep on, streaming (see above). A stream
// ends the request when it closes: it releases ep and x, and ends the
// request's accounting.
func (g *Gateway) passStream(ctx *fasthttp.RequestCtx, x *exchange, ep *balance.Endpoint) int {
	status := x.resp.StatusCode()
	ctx.SetStatusCode(status)
	if ct := x.resp.Header.ContentType(); len(ct) > 0 {
		ctx.Response.Header.SetContentTypeBytes(ct)
	}
	ctx.Response.Header.Set(replicaHeader, ep.ID)
	src := x.resp.BodyStream()
	if src == nil {
		ep.Release()
		return status
	}
	size := x.resp.Header.ContentLength()
	if status >= 400 {
		b, err := io.ReadAll(io.LimitReader(src, maxErrorCapture+1))
		if err == nil && len(b) <= maxErrorCapture {
			_ = x.resp.CloseBodyStream()
			ep.Release()
			ctx.SetBody(b) // reshaped by the caller
			return status
		}
		src = io.MultiReader(&byteReader{b: b}, src)
	}
	body := &upstreamBody{r: src, x: x, ep: ep, status: status}
	if x.openAI != nil {
		body.logged = x.openAI.logged // a sampled request keeps its answer (predlog.go)
	}
	ctx.Response.SetBodyStream(body, size)
	ctx.Response.ImmediateHeaderFlush = true
	return status
}

// byteReader reads b; unlike bytes.Reader it has no WriteTo, which would
// make fasthttp write the stream in one piece.
type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// upstreamBody is a replica's answer streaming to the client; fasthttp
// closes it when the answer is written, or the client went away.
type upstreamBody struct {
	r      io.Reader
	x      *exchange
	ep     *balance.Endpoint
	status int
	closed bool
	logged *openAILog // set: the answer is captured for the prediction log
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if b.logged != nil && n > 0 {
		b.logged.capture(p[:n])
	}
	return n, err
}

func (b *upstreamBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	x := b.x
	err := x.resp.CloseBodyStream()
	b.ep.Release()
	if x.openAI != nil {
		x.openAI.end(b.status)
	}
	x.release()
	return err
}

// reshapeError turns an error answer with the OIP shape in ctx's response
// into the OpenAI shape, keeping its status (and Retry-After); any other
// body stays.
func reshapeError(ctx *fasthttp.RequestCtx) {
	var oipErr errorBody
	if err := json.Unmarshal(ctx.Response.Body(), &oipErr); err != nil || oipErr.Error == "" {
		return
	}
	status := ctx.Response.StatusCode()
	writeOpenAIErrorCode(ctx, status, openAIType(status), "", oipErr.Code, oipErr.Error)
}
