package gateway

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// The gateway's routes, matched on the request's (decoded, normalized)
// path without a mux: a request costs no allocation before it reaches its
// handler.
//
//	GET  /v2                                    server metadata
//	GET  /v2/health/live, /v2/health/ready
//	GET  /v2/models/{m}[/versions/{v}]          model metadata (metadata.go)
//	GET  /v2/models/{m}[/versions/{v}]/ready    model readiness
//	POST /v2/models/{m}[/versions/{v}]/infer    inference; with
//	     "Prefer: respond-async", stored for later (async.go)
//	GET  /v2/async/{id}                         an async request's result
//	     /openai/..., POST /v1/chat/completions, /v1/completions,
//	     /v1/embeddings                         the OpenAI API (openai.go)
//
// GET routes answer HEAD too. Any other path under /v2/ is 404, and a
// route asked with another method 405, as http.ServeMux answers; every
// path outside these goes to the next handler.

// Handler returns the gateway as a fasthttp handler: its routes are served
// here, and every other request goes to next (404 when next is nil).
func (g *Gateway) Handler(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	if next == nil {
		next = pageNotFound
	}
	return func(ctx *fasthttp.RequestCtx) {
		if !g.serve(ctx) {
			next(ctx)
		}
	}
}

var (
	pathV2        = []byte("/v2")
	pathV2Slash   = []byte("/v2/")
	pathLive      = []byte("/v2/health/live")
	pathReady     = []byte("/v2/health/ready")
	pathModels    = []byte("/v2/models/")
	pathOpenAI    = []byte(openAIPrefix + "/")
	segVersions   = []byte("versions")
	segReady      = []byte("ready")
	segInfer      = []byte("infer")
	openAIRootSet = func() [][]byte {
		var out [][]byte
		for _, p := range OpenAIRootPaths {
			out = append(out, []byte(p))
		}
		return out
	}()
)

// serve answers ctx if its path is one of the gateway's, and reports
// whether it was.
func (g *Gateway) serve(ctx *fasthttp.RequestCtx) bool {
	path := ctx.Path()
	switch {
	case bytes.HasPrefix(path, pathModels):
		g.serveModel(ctx, path[len(pathModels):])
	case bytes.Equal(path, pathLive):
		if get(ctx) {
			ctx.SetStatusCode(fasthttp.StatusOK)
		}
	case bytes.Equal(path, pathReady):
		if get(ctx) {
			g.serverReady(ctx)
		}
	case bytes.Equal(path, pathV2):
		if get(ctx) {
			g.serverMetadata(ctx)
		}
	case bytes.HasPrefix(path, pathAsync):
		g.serveAsync(ctx, path[len(pathAsync):]) // async.go
	case bytes.Equal(path, pathAsync[:len(pathAsync)-1]):
		g.serveAsync(ctx, nil) // the list
	case bytes.HasPrefix(path, pathV2Slash):
		pageNotFound(ctx)
	case bytes.HasPrefix(path, pathOpenAI):
		g.serveOpenAI(ctx, path)
	default:
		for _, p := range openAIRootSet {
			if bytes.Equal(path, p) {
				if post(ctx) {
					g.openAIForward(ctx, path)
				}
				return true
			}
		}
		return false
	}
	return true
}

// serveModel serves /v2/models/{rest}: {m}, {m}/ready, {m}/infer and the
// same under {m}/versions/{v}. Every one of them passes the auth stage
// first (auth.go), known or not.
func (g *Gateway) serveModel(ctx *fasthttp.RequestCtx, rest []byte) {
	name, rest, slash := bytes.Cut(rest, []byte("/"))
	tenant, ok := g.authorize(ctx, name)
	if !ok {
		return
	}
	var version []byte
	if v, ok := bytes.CutPrefix(rest, segVersions); ok && len(v) > 1 && v[0] == '/' {
		version, rest, slash = bytes.Cut(v[1:], []byte("/"))
	}
	switch {
	case len(name) == 0, slash && len(rest) == 0:
		pageNotFound(ctx) // no name, or a trailing slash
	case len(rest) == 0:
		if get(ctx) {
			g.metadata(ctx, name, version)
		}
	case bytes.Equal(rest, segReady):
		if get(ctx) {
			g.modelReady(ctx, name, version)
		}
	case bytes.Equal(rest, segInfer):
		if !post(ctx) {
			break
		}
		if g.wantsAsync(ctx) { // Prefer: respond-async (async.go)
			g.submitAsync(ctx, name, version, tenant)
		} else {
			g.infer(ctx, name, version, tenant)
		}
	default:
		pageNotFound(ctx)
	}
}

// get reports whether ctx is a GET (or HEAD), answering 405 when not.
func get(ctx *fasthttp.RequestCtx) bool {
	if ctx.IsGet() || ctx.IsHead() {
		return true
	}
	methodNotAllowed(ctx, "GET, HEAD")
	return false
}

// post reports whether ctx is a POST, answering 405 when not.
func post(ctx *fasthttp.RequestCtx) bool {
	if ctx.IsPost() {
		return true
	}
	methodNotAllowed(ctx, "POST")
	return false
}

// takesBody reports whether a POST to uri (a raw request target) reads an
// inference body, within the gateway's body limits and timeout.
func takesBody(uri []byte) bool {
	path, _, _ := bytes.Cut(uri, []byte("?"))
	switch {
	case bytes.HasPrefix(path, pathModels):
		return bytes.HasSuffix(path, []byte("/infer"))
	case bytes.HasPrefix(path, pathOpenAI):
		return true
	}
	for _, p := range openAIRootSet {
		if bytes.Equal(path, p) {
			return true
		}
	}
	return false
}
