package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/valyala/fasthttp"
)

// The OpenAI API, for deployments of engine http whose server speaks it
// (spec.protocol: openai: vLLM, TGI, llama.cpp).
//
// Where it lives: the whole API under /openai/v1/, so that an OpenAI SDK
// given base_url http://HOST/openai/v1 works fully, its model list
// included; and POST /v1/chat/completions, /v1/completions and
// /v1/embeddings at the root as well, since they clash with nothing. GET
// /v1/models stays the admin API's model registry; the OpenAI model list is
// GET /openai/v1/models.
//
// A POST is routed by its body's "model" field to the deployment of that
// name, read once within the gateway's body limits (MaxBodyBytes, and
// MaxBufferedBytes across requests), and then takes the OIP path: it counts
// as demand once its body is in, is held by the activator while the
// deployment is cold, goes to a replica picked by power-of-two-choices and
// is retried on another when one fails before answering. The replica
// passes it to its server unchanged at /v1/... (the /openai prefix
// dropped). Answers stream: each piece the replica sends is flushed to the
// client at once, so server-sent events (stream: true) keep their timing.
// With Options.Tracer it is traced as an OIP request is (trace.go): a
// telemetry.SpanRequest from its arrival, once its model is routed (to the
// end of its stream), and a SpanProxy per try whose context the replica
// gets in traceparent.
//
// With Options.Auth a request needs a bearer token with scope
// predict:GLOB matching the routed deployment, as OIP requests do; the
// model list shows only the deployments the token may call.
//
// Errors have the OpenAI shape, {"error": {"message", "type", "param",
// "code"}}, with the status the OIP path would answer: 404 model_not_found
// for a deployment that does not exist or does not speak the OpenAI API,
// 400 for a body without a model, 503 with Retry-After while a deployment
// cannot start.

// OpenAIRootPaths are the OpenAI API paths the gateway also serves at the
// root, beside the admin API's /v1/: Gateway.Handler takes them before its
// next handler (which serves the admin API).
var OpenAIRootPaths = []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}

// openAIPrefix is where the gateway serves the whole OpenAI API.
const openAIPrefix = "/openai"

// serveOpenAI serves a path under /openai/.
func (g *Gateway) serveOpenAI(ctx *fasthttp.RequestCtx, path []byte) {
	rest, api := bytes.CutPrefix(path, []byte(openAIPrefix+"/v1/"))
	model, one := bytes.CutPrefix(rest, []byte("models/"))
	get := ctx.IsGet() || ctx.IsHead()
	switch {
	case api && ctx.IsPost():
		g.openAIForward(ctx, path)
	case api && get && bytes.Equal(rest, []byte("models")):
		g.openAIModels(ctx)
	case api && get && one && len(model) > 0 && bytes.IndexByte(model, '/') < 0:
		g.openAIModel(ctx, model)
	default:
		writeOpenAIError(ctx, http.StatusNotFound, "not_found", "",
			fmt.Sprintf("%s %s is not part of the OpenAI API ebb serves: POST /openai/v1/chat/completions, /openai/v1/completions, /openai/v1/embeddings (or another POST path the model's server has), GET /openai/v1/models", ctx.Method(), path))
	}
}

// openAIForward routes an OpenAI API request by its body's model.
func (g *Gateway) openAIForward(ctx *fasthttp.RequestCtx, path []byte) {
	x := g.acquire(ctx)
	req, code := g.openAIRoute(ctx, x)
	if req != nil && req.rt.Routing != nil && !g.keyRequired(ctx, x, req.rt) { // affinity.go
		code = http.StatusBadRequest
		req.end(code)
		req = nil
	}
	if req != nil {
		// The replica's path: /openai dropped.
		code = g.forwardTo(ctx, x, req.rt, req.rt.Deployment, "", modeOpenAI, bytes.TrimPrefix(path, []byte(openAIPrefix)))
	}
	if ctx.IsBodyStream() {
		return // the stream ends the request (passStream)
	}
	if code >= 400 {
		reshapeError(ctx)
	}
	if req != nil {
		req.end(code)
	}
	x.release()
}

// openAIRequest is the accounting of an OpenAI request routed to a
// deployment, ended by end.
type openAIRequest struct {
	g     *Gateway
	x     *exchange
	rt    *routing.Route // the route served: the track's, for a split
	name  string         // the deployment named, which metrics count under
	tag   string         // the track's tag, for a split
	start time.Time
	held  int64 // bytes of the body budget
	// logged, when set, keeps what the prediction log needs of a sampled
	// request (predlog.go).
	logged *openAILog
}

// end records the request's end, with its status: in the deployment's
// metrics, its demand and, for a track of a split, the track's Meter that
// a rollout judges.
func (r *openAIRequest) end(code int) {
	g := r.g
	now := g.opts.Clock.Now()
	if r.rt.Stats != nil {
		r.rt.Stats.End(now)
	}
	if r.x.meter != nil {
		r.x.observe(now, code)
	}
	g.budget.release(r.held)
	g.opts.Metrics.observe(r.name, versionLabel(r.rt, r.x.last(), r.tag), code, now.Sub(r.start), true)
	if r.logged != nil {
		r.logOpenAI(code, now) // predlog.go
	}
}

// openAIRoute authenticates ctx's request, reads its body into x and finds
// the deployment its model names. It returns the request's accounting,
// begun, or nil and the status of the error it answered.
func (g *Gateway) openAIRoute(ctx *fasthttp.RequestCtx, x *exchange) (*openAIRequest, int) {
	p, ok := g.openAIPrincipal(ctx)
	if !ok {
		return nil, ctx.Response.StatusCode()
	}
	start := g.opts.Clock.Now()
	held, code := g.readBody(ctx, x)
	if code != 0 {
		g.opts.Metrics.observe("(unknown)", "", code, 0, false)
		return nil, code
	}
	name, err := bodyModel(x.body)
	var rt *routing.Route
	if err == nil {
		if rt = g.routes.Lookup(name); rt == nil && g.opts.Shards != nil {
			// Not a deployment: a route object may pick one (shardroute.go).
			if name, rt, code = g.openAIShard(ctx, x, name, p); code != 0 {
				g.budget.release(held)
				return nil, code
			}
		}
	}
	if err == nil && g.opts.Auth != nil {
		if err := auth.Check(p, auth.Predict, name); err != nil {
			g.budget.release(held)
			return nil, g.openAIAuthError(ctx, err)
		}
	}
	switch {
	case err != nil:
		g.budget.release(held)
		g.opts.Metrics.observe("(unknown)", "", http.StatusBadRequest, 0, false)
		return nil, writeOpenAIError(ctx, http.StatusBadRequest, "invalid_request_error", "model", err.Error())
	case rt == nil || rt.Protocol != serving.ProtocolOpenAI:
		g.budget.release(held)
		g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		return nil, writeOpenAIError(ctx, http.StatusNotFound, "invalid_request_error", "model", openAINotFound(name, rt))
	}
	named, tag, version := rt.Deployment, "", ""
	if rt.Split != nil {
		// A split's track by the Ebb-Version pin, the Ebb-Route-Key or
		// weight, as for OIP requests (split.go).
		tr, v, t := g.track(ctx, rt, nil)
		if tr == nil {
			g.budget.release(held)
			g.opts.Metrics.observe(named, "", http.StatusNotFound, 0, false)
			return nil, http.StatusNotFound
		}
		rt, tag, version = tr, t.Tag, v
	}
	x.tenant = g.tenantOf(ctx, nil)
	if g.opts.Auth != nil {
		x.tenant = g.tenantOf(ctx, &p)
	}
	if g.opts.Tracer != nil {
		g.traceRequest(ctx, x, rt.Deployment, version, x.tenant, start) // trace.go; x.release ends the span
	}
	if !priority(ctx, x) {
		g.budget.release(held)
		g.opts.Metrics.observe(named, "", http.StatusBadRequest, 0, false)
		return nil, http.StatusBadRequest
	}
	if g.opts.Limiter != nil && !g.limitTenant(ctx, x, named, true) { // tenant.go
		g.budget.release(held)
		g.opts.Metrics.observe(named, "", http.StatusTooManyRequests, 0, false)
		return nil, http.StatusTooManyRequests
	}
	g.opts.Metrics.begin(named)
	// Demand counts once the body is in, as for OIP requests.
	if rt.Stats != nil {
		rt.Stats.Begin(g.opts.Clock.Now())
	}
	x.meter = rt.Meter
	r := &openAIRequest{g: g, x: x, rt: rt, name: named, tag: tag, start: start, held: held}
	if g.opts.Predictions != nil {
		g.sampleOpenAI(ctx, r) // predlog.go
	}
	x.openAI = r
	return r, 0
}

// bodyModel returns the "model" field of an OpenAI request body.
func bodyModel(body []byte) (string, error) {
	var req struct {
		Model *string `json:"model"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return "", fmt.Errorf("the request body is not a JSON object with a \"model\" field: %v", err)
	}
	if req.Model == nil || *req.Model == "" {
		return "", fmt.Errorf("the request body has no \"model\": name the deployment to send it to (GET /openai/v1/models lists them)")
	}
	return *req.Model, nil
}

func openAINotFound(name string, rt *routing.Route) string {
	if rt != nil {
		return fmt.Sprintf("deployment %q serves the Open Inference Protocol, not the OpenAI API: send its requests to /v2/models/%s/infer", name, name)
	}
	return fmt.Sprintf("the model %q does not exist: GET /openai/v1/models lists the deployments that serve the OpenAI API; create one with engine http and protocol openai", name)
}

// notOIP says that deployment name serves the OpenAI API, to an OIP v2
// request.
func notOIP(name string) string {
	return fmt.Sprintf("deployment %q serves the OpenAI API, not the Open Inference Protocol: send its requests to /openai/v1/chat/completions (or completions, embeddings) with \"model\": %q", name, name)
}

// openAIPrincipal authenticates ctx's request when the gateway has
// Options.Auth; it writes the refusal and reports false when the token is
// missing or bad.
func (g *Gateway) openAIPrincipal(ctx *fasthttp.RequestCtx) (auth.Principal, bool) {
	if g.opts.Auth == nil {
		return auth.Principal{}, true
	}
	p, err := g.principal(ctx)
	if err != nil {
		g.openAIAuthError(ctx, err)
		return auth.Principal{}, false
	}
	return p, true
}

func (g *Gateway) openAIAuthError(ctx *fasthttp.RequestCtx, err error) int {
	status, code, msg := auth.Status(err)
	typ := "permission_error"
	if status == http.StatusUnauthorized {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="ebb"`)
		typ = "authentication_error"
	}
	return writeOpenAIError(ctx, status, typ, code, msg)
}

// openAIModelInfo is one entry of the OpenAI model list.
type openAIModelInfo struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// routeLister is a Routes that can list them all (routing.Table).
type routeLister interface {
	All() []*routing.Route
}

// openAIModels answers GET /openai/v1/models: the deployments that serve
// the OpenAI API and that the caller may call. It wakes nothing.
func (g *Gateway) openAIModels(ctx *fasthttp.RequestCtx) {
	p, ok := g.openAIPrincipal(ctx)
	if !ok {
		return
	}
	list := struct {
		Object string            `json:"object"`
		Data   []openAIModelInfo `json:"data"`
	}{Object: "list", Data: []openAIModelInfo{}}
	if rl, ok := g.routes.(routeLister); ok {
		for _, rt := range rl.All() {
			// A split's tracks (m.canary) answer as their deployment (m).
			if rt.Protocol == serving.ProtocolOpenAI && !strings.Contains(rt.Deployment, serving.TrackSep) &&
				(g.opts.Auth == nil || p.Can(auth.Predict, rt.Deployment).Allow) {
				list.Data = append(list.Data, modelInfo(rt.Deployment))
			}
		}
	}
	slices.SortFunc(list.Data, func(a, b openAIModelInfo) int { return strings.Compare(a.ID, b.ID) })
	writeJSON(ctx, http.StatusOK, list)
}

// openAIModel answers GET /openai/v1/models/{model}.
func (g *Gateway) openAIModel(ctx *fasthttp.RequestCtx, model []byte) {
	p, ok := g.openAIPrincipal(ctx)
	if !ok {
		return
	}
	name := string(model)
	if g.opts.Auth != nil {
		if err := auth.Check(p, auth.Predict, name); err != nil {
			g.openAIAuthError(ctx, err)
			return
		}
	}
	rt := g.routes.Lookup(name)
	if rt == nil || rt.Protocol != serving.ProtocolOpenAI {
		writeOpenAIError(ctx, http.StatusNotFound, "invalid_request_error", "model", openAINotFound(name, rt))
		return
	}
	writeJSON(ctx, http.StatusOK, modelInfo(name))
}

func modelInfo(name string) openAIModelInfo {
	return openAIModelInfo{ID: name, Object: "model", OwnedBy: "ebb"}
}

// openAIError is the OpenAI API's error body.
type openAIError struct {
	Error openAIErrorDetail `json:"error"`
}

type openAIErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// writeOpenAIError writes an error in the OpenAI shape. typ is the error's
// type (invalid_request_error, ...); param the request field at fault, if
// any. The code is model_not_found for a 404 about the model, else the
// gateway's own code, if any.
func writeOpenAIError(ctx *fasthttp.RequestCtx, status int, typ, param, msg string) int {
	return writeOpenAIErrorCode(ctx, status, typ, param, "", msg)
}

func writeOpenAIErrorCode(ctx *fasthttp.RequestCtx, status int, typ, param, code, msg string) int {
	d := openAIErrorDetail{Message: msg, Type: typ}
	if param != "" {
		d.Param = &param
	}
	if code == "" && status == http.StatusNotFound && param == "model" {
		code = "model_not_found"
	}
	if code != "" {
		d.Code = &code
	}
	writeJSON(ctx, status, openAIError{Error: d})
	return status
}

// openAIType maps a status to the OpenAI error type clients expect.
func openAIType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status < 500:
		return "invalid_request_error"
	case status == http.StatusServiceUnavailable:
		return "service_unavailable_error"
	}
	return "server_error"
}
