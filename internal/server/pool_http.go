package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/serving/core"
	"github.com/valyala/fasthttp"
)

// The REST endpoints of a pool's replica (NewPool), beside health,
// /v2, /metrics and /ebb/v1/replica, which ServeHTTP answers as for one
// model:
//
//	POST /v2/repository/index                  {"ready": bool}? → [ModelStatus...]
//	POST /v2/repository/models/{m}/load        {"parameters": LoadRequest} → ModelStatus
//	POST /v2/repository/models/{m}/unload      → ModelStatus (state UNAVAILABLE)
//	/v2/models/{m}[/versions/{v}][/ready|/infer]  as a Server of model m
//
// A request for a model still loading waits for the load (until it ends or
// the request's context does). Load errors: 400 (the model could not be
// loaded, or the body is wrong), 409 (another model under that name, or
// another engine than the pool's), 503 (draining), 507 with both sizes
// (BudgetError, a body with "bytes", "budgetBytes" and "usedBytes").

// maxRepositoryBody bounds the body of a repository request.
const maxRepositoryBody = 1 << 20

// budgetErrorBody is the body of a 507.
type budgetErrorBody struct {
	Error       string `json:"error"`
	Model       string `json:"model"`
	Bytes       int64  `json:"bytes"`
	Measured    bool   `json:"measured"`
	BudgetBytes int64  `json:"budgetBytes"`
	UsedBytes   int64  `json:"usedBytes"`
}

// serveHTTP answers what ServeHTTP leaves to the pool: the repository and
// the models' endpoints.
func (p *modelPool) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s := p.root
	path := r.URL.Path
	if rest, ok := strings.CutPrefix(path, "/v2/repository/"); ok {
		p.serveRepository(w, r, rest)
		return
	}
	rest, ok := strings.CutPrefix(path, "/v2/models/")
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s: this OIP v2 server hosts a pool of models: /v2/health/{live,ready}, /v2/models/{m}[/versions/{v}][/ready|/infer], POST /v2/repository/index and POST /v2/repository/models/{m}/load|unload", r.Method, path))
		return
	}
	name, action, _ := strings.Cut(rest, "/")
	if action == "ready" {
		// Readiness never waits for a load.
		if !s.allow(w, r, http.MethodGet) {
			return
		}
		p.mu.RLock()
		e := p.models[name]
		ready := e != nil && e.state == pool.Ready && s.Ready()
		p.mu.RUnlock()
		switch {
		case e == nil:
			writeError(w, http.StatusNotFound, fmt.Sprintf("model %q is not loaded on this replica", name))
		case ready:
			writeRaw(w, http.StatusOK, e.srv.modelReadyJSON)
		default:
			writeJSON(w, http.StatusServiceUnavailable, oip.ModelReady{Name: name, Ready: false})
		}
		return
	}
	e, rerr := p.get(r.Context(), name)
	if rerr != nil {
		writeError(w, rerr.Status, rerr.Msg)
		return
	}
	defer p.release(e)
	e.srv.ServeHTTP(w, r)
}

// serveRepository answers /v2/repository/{rest}.
func (p *modelPool) serveRepository(w http.ResponseWriter, r *http.Request, rest string) {
	s := p.root
	if rest == "index" {
		if !s.allow(w, r, http.MethodPost) {
			return
		}
		var body struct {
			Ready bool `json:"ready"`
		}
		if err := readRepositoryBody(r, &body); err != nil {
			writeError(w, http.StatusBadRequest, "index request: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, p.index(body.Ready))
		return
	}
	name, verb, ok := strings.Cut(strings.TrimPrefix(rest, "models/"), "/")
	if !ok || !strings.HasPrefix(rest, "models/") || (verb != "load" && verb != "unload") {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s: use POST /v2/repository/index or POST /v2/repository/models/{m}/load|unload", r.Method, r.URL.Path))
		return
	}
	if !s.allow(w, r, http.MethodPost) {
		return
	}
	// The path may alias fasthttp's buffer, reused by the next request:
	// the name is kept in the pool.
	name = strings.Clone(name)
	if !core.ValidName(name) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("model name %q is not valid: a model name is at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit", name))
		return
	}
	var st ModelStatus
	var err error
	if verb == "unload" {
		st, err = p.unload(r.Context(), name)
	} else {
		var req LoadRequest
		if req, err = p.loadRequest(r, name); err != nil {
			writeError(w, errStatus(err), err.Error())
			return
		}
		st, err = p.load(r.Context(), req)
	}
	var be *BudgetError
	switch {
	case errors.As(err, &be):
		writeJSON(w, http.StatusInsufficientStorage, budgetErrorBody{Error: be.Error(), Model: be.Model, Bytes: be.Bytes,
			Measured: be.Measured, BudgetBytes: be.Budget, UsedBytes: be.Used})
	case err != nil:
		writeError(w, errStatus(err), err.Error())
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

// loadRequest decodes a load request's body: {"parameters": {...}}, with
// the keys of LoadRequest; the engine defaults to the pool's.
func (p *modelPool) loadRequest(r *http.Request, name string) (LoadRequest, error) {
	var body struct {
		Parameters *LoadRequest `json:"parameters"`
	}
	if err := readRepositoryBody(r, &body); err != nil {
		return LoadRequest{}, badRequest("load request for model %s: %v", name, err)
	}
	if body.Parameters == nil || body.Parameters.Model == "" {
		return LoadRequest{}, badRequest(`load request for model %s: give the artifact in the body: {"parameters": {"model": "/path/to/model.json", "engine": "trees"}}`, name)
	}
	req := *body.Parameters
	req.Name = name
	switch {
	case req.Engine == "":
		req.Engine = p.opts.Engine
	case p.opts.Engine != "" && req.Engine != p.opts.Engine:
		return LoadRequest{}, &RequestError{http.StatusConflict, fmt.Sprintf("model %s asks for engine %s, but this replica's pool runs engine %s", name, req.Engine, p.opts.Engine)}
	}
	if req.Engine != "python" && (req.PythonClass != "" || req.PythonInterpreter != "") {
		return LoadRequest{}, badRequest("load request for model %s: python-class and python-interpreter are for engine python, not %s: remove them", name, req.Engine)
	}
	if req.Bytes < 0 {
		return LoadRequest{}, badRequest("load request for model %s: bytes is %d: give the measured size, or 0 when unknown", name, req.Bytes)
	}
	return req, nil
}

// readRepositoryBody decodes a repository request's JSON body into v; an
// empty body leaves v as it is. Unknown fields are refused, so a misspelt
// parameter is not silently ignored.
func readRepositoryBody(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxRepositoryBody+1))
	if err != nil {
		return fmt.Errorf("reading the body: %v", err)
	}
	if len(b) > maxRepositoryBody {
		return fmt.Errorf("the body is larger than %d bytes", maxRepositoryBody)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("the body is not valid: %v", err)
	}
	return nil
}

// handlePool serves one request to a pool's replica: infer on a model
// that is ready natively (as handle serves the one model of a Server),
// the rest through ServeHTTP.
func (r *restServer) handlePool(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	if !h.IsHTTP11() {
		ctx.Response.Header.SetProtocol(h.Protocol())
	}
	var refused int64
	if h.ContentLength() == 0 {
		if v := h.Peek(refusedLengthHeader); len(v) > 0 {
			refused, _ = strconv.ParseInt(string(v), 10, 64)
			ctx.SetConnectionClose()
		}
	}
	if name, version, ok := r.poolInferRequest(ctx); ok {
		if refused > r.s.opts.MaxRequestBytes {
			r.refuse(ctx, r.s.tooLarge(refused))
			return
		}
		if e := r.s.pool.tryGet(name); e != nil {
			defer r.s.pool.release(e)
			if version == "" || e.srv.hasVersion(version) {
				r.inferModel(ctx, e.srv, version, refused)
				return
			}
		}
	}
	r.fallback(ctx)
}

// poolInferRequest reports whether ctx is an infer request (POST, the
// secret, /v2/models/{m}[/versions/{v}]/infer without escapes), with the
// model's name and the version.
func (r *restServer) poolInferRequest(ctx *fasthttp.RequestCtx) ([]byte, string, bool) {
	s := r.s
	if !ctx.IsPost() {
		return nil, "", false
	}
	if s.opts.Secret != "" && !s.hasSecretBytes(ctx.Request.Header.Peek(core.SecretHeader)) {
		return nil, "", false
	}
	rest, ok := bytes.CutPrefix(ctx.URI().PathOriginal(), []byte("/v2/models/"))
	if !ok || bytes.IndexByte(rest, '%') >= 0 {
		return nil, "", false
	}
	name, rest, ok := bytes.Cut(rest, []byte("/"))
	if !ok || len(name) == 0 {
		return nil, "", false
	}
	if string(rest) == "infer" {
		return name, "", true
	}
	v, ok := bytes.CutPrefix(rest, []byte("versions/"))
	if !ok {
		return nil, "", false
	}
	v, ok = bytes.CutSuffix(v, []byte("/infer"))
	if !ok || len(v) == 0 || bytes.IndexByte(v, '/') >= 0 {
		return nil, "", false
	}
	return name, string(v), true
}
