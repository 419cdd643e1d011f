package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
)

// Route objects (shard groups, serving.Route; Options.Shards): a name that
// is no deployment but a route object resolves, request by request, to the
// deployment its rules pick for the request's value, else to its default,
// and the request then proceeds exactly as a request to that deployment:
// held while it is cold, which wakes it, so that each target scales 0:N on
// its own. The value is read from:
//
//   - match.header: the header's value (gRPC: the metadata key, in lower
//     case);
//   - match.input: the first element of the input tensor of that name, as
//     text, as affinity keys are read (jsonInputKey, firstContent); for an
//     OpenAI request, the top-level field of that name of its JSON body;
//     GET requests (metadata, ready) have no inputs and take the default.
//
// The request is rewritten for its target: the path's model name (REST),
// model_name (gRPC) or the body's "model" (OpenAI) becomes the target's,
// since replicas serve their own name only; the answer carries the header
// Ebb-Deployment (gRPC: ebb-deployment) naming the target. A request that
// no rule matches and no default takes is 404, naming the route, its value
// and the values the route knows.
//
// The hot path of deployments is unchanged: route objects are looked up
// only when the deployment lookup missed, so a deployment always wins a
// name it shares with a route (which a cluster, where kubectl writes both,
// can have).
//
// Auth: a request through a route needs predict on the deployment it
// resolves to, whatever its token says of the route's name: a route never
// reaches a deployment its caller may not call. (The auth stage lets a
// route's name through, authenticated, for that check; see
// shardAuthLater.)

// headerDeployment names, in answers, the deployment a route picked.
const headerDeployment = "Ebb-Deployment"

// shardAuthLater reports whether name is a route object, not a deployment,
// so that the auth stage leaves its predict check to the route's target.
func shardAuthLater(routes Routes, shards *routing.Shards, name string) bool {
	return shards.Lookup(name) != nil && routes.Lookup(name) == nil
}

// shardInfer resolves an OIP infer request for name, which is no
// deployment: it returns the route of the deployment a route object picked
// with the request's version (a copy: the path it came from is rewritten),
// and, when the route read the body to pick (match.input), the exchange
// holding it and the budget bytes held. On nil it answered the request.
func (g *Gateway) shardInfer(ctx *fasthttp.RequestCtx, name, version []byte) (*routing.Route, []byte, *exchange, int64) {
	sh := g.opts.Shards.Lookup(b2s(name))
	if sh == nil {
		g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		writeError(ctx, http.StatusNotFound, notFound(string(name)))
		return nil, nil, nil, 0
	}
	var x *exchange
	var held int64
	var value []byte
	var found bool
	if sh.Match.Header != "" {
		value = ctx.Request.Header.Peek(sh.Match.Header)
		found = len(value) > 0
	} else {
		x = g.acquire(ctx)
		var code int
		if held, code = g.readBody(ctx, x); code != 0 {
			x.release()
			g.opts.Metrics.observe("(unknown)", "", code, 0, false)
			return nil, nil, nil, 0
		}
		value, found = restInputValue(&ctx.Request.Header, x.body, sh.Match.Input)
	}
	rt, version := g.shardResolve(ctx, sh, name, version, value, found)
	if rt == nil && x != nil {
		g.budget.release(held)
		x.release()
		x, held = nil, 0
	}
	return rt, version, x, held
}

// shardLookup resolves a metadata or readiness request for name, which is
// no deployment, by a route object's header rule or its default: the
// route of the deployment picked and the request's version, or nil when
// it answered the request. observe counts an unknown name in the metrics.
func (g *Gateway) shardLookup(ctx *fasthttp.RequestCtx, name, version []byte, observe bool) (*routing.Route, []byte) {
	sh := g.opts.Shards.Lookup(b2s(name))
	if sh == nil {
		if observe {
			g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		}
		writeError(ctx, http.StatusNotFound, notFound(string(name)))
		return nil, nil
	}
	var value []byte
	if sh.Match.Header != "" {
		value = ctx.Request.Header.Peek(sh.Match.Header)
	}
	return g.shardResolve(ctx, sh, name, version, value, len(value) > 0)
}

// shardResolve picks sh's deployment for a REST request whose value is
// value, checks that the caller may call it, and rewrites the request's
// path for it. It returns the deployment's route and the request's version
// (a copy), or nil when it answered the request.
func (g *Gateway) shardResolve(ctx *fasthttp.RequestCtx, sh *routing.Shard, name, version, value []byte, found bool) (*routing.Route, []byte) {
	target, ok := sh.Target(value, found)
	if !ok {
		g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		writeErrorCode(ctx, http.StatusNotFound, codeRouteNoTarget, noTarget(sh, value, found))
		return nil, nil
	}
	if g.opts.Auth != nil {
		p, err := g.principal(ctx)
		if err == nil {
			err = auth.Check(p, auth.Predict, target)
		}
		if err != nil {
			writeAuthError(ctx, err)
			return nil, nil
		}
	}
	ctx.Response.Header.Set(headerDeployment, target)
	rt := g.routes.Lookup(target)
	if rt == nil {
		g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		writeErrorCode(ctx, http.StatusNotFound, codeRouteNoTarget, missingTarget(sh, target))
		return nil, nil
	}
	// /v2/models/{name}{rest} → /v2/models/{target}{rest}; name and
	// version point into the path, which SetPath overwrites.
	version = bytes.Clone(version)
	rest := ctx.Path()[len(pathModels)+len(name):]
	path := make([]byte, 0, len(pathModels)+len(target)+len(rest))
	path = append(append(append(path, pathModels...), target...), rest...)
	ctx.URI().SetPathBytes(path)
	return rt, version
}

// codeRouteNoTarget is the code of a request a route object sends nowhere.
const codeRouteNoTarget = "route/no_target"

// restInputValue is the value of input in a REST request's JSON body (in
// its JSON part, with binary tensor data).
func restInputValue(h *fasthttp.RequestHeader, body []byte, input string) ([]byte, bool) {
	if n := h.Peek(binaryHeaderLength); len(n) > 0 {
		l, err := strconv.Atoi(string(n))
		if err != nil || l < 0 || l > len(body) {
			return nil, false
		}
		body = body[:l]
	}
	return jsonInputKey(body, input)
}

// maxListedValues bounds the values a 404 of a route lists.
const maxListedValues = 20

// noTarget says that route sh has no deployment for a request whose value
// is value (found false: none).
func noTarget(sh *routing.Shard, value []byte, found bool) string {
	what := "the request has no " + sh.Match.KeyName()
	if found {
		what = fmt.Sprintf("its %s is %s, which no rule has", sh.Match.KeyName(), quoteValue(value))
	}
	vs := sh.Values()
	known := "the route has no rules"
	if len(vs) > 0 {
		q := make([]string, 0, min(len(vs), maxListedValues))
		for _, v := range vs[:min(len(vs), maxListedValues)] {
			q = append(q, quoteValue([]byte(v)))
		}
		known = "the values it knows are " + strings.Join(q, ", ")
		if len(vs) > maxListedValues {
			known += fmt.Sprintf(" and %d more", len(vs)-maxListedValues)
		}
	}
	return fmt.Sprintf("route %q has no deployment for this request: %s, and the route has no default; %s (ebb get routes %s)", sh.Name, what, known, sh.Name)
}

// missingTarget says that the deployment route sh picked does not exist.
func missingTarget(sh *routing.Shard, target string) string {
	return fmt.Sprintf("route %q sends this request to deployment %q, which does not exist: create it (ebb deploy -f), or change the route (ebb get routes %s)", sh.Name, target, sh.Name)
}

// quoteValue quotes a request's value for a message, at most 128 bytes of
// it.
func quoteValue(v []byte) string {
	if len(v) > 128 {
		return strconv.Quote(string(v[:128])) + "..."
	}
	return strconv.Quote(string(v))
}

// openAIShard resolves an OpenAI request of principal p whose "model"
// (name) is no deployment but a route object: it returns the deployment
// picked, its route, and x's body with "model" rewritten to it. When name
// is no route either it returns name and a nil route, for the caller's
// 404; code is the status of an answer it wrote, else 0.
func (g *Gateway) openAIShard(ctx *fasthttp.RequestCtx, x *exchange, name string, p auth.Principal) (string, *routing.Route, int) {
	sh := g.opts.Shards.Lookup(name)
	if sh == nil {
		return name, nil, 0
	}
	var value []byte
	var found bool
	if sh.Match.Header != "" {
		value = ctx.Request.Header.Peek(sh.Match.Header)
		found = len(value) > 0
	} else {
		value, found = bodyField(x.body, sh.Match.Input)
	}
	target, ok := sh.Target(value, found)
	if !ok {
		g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		return "", nil, writeOpenAIErrorCode(ctx, http.StatusNotFound, "invalid_request_error", "model", codeRouteNoTarget, noTarget(sh, value, found))
	}
	if g.opts.Auth != nil {
		if err := auth.Check(p, auth.Predict, target); err != nil {
			return "", nil, g.openAIAuthError(ctx, err)
		}
	}
	ctx.Response.Header.Set(headerDeployment, target)
	rt := g.routes.Lookup(target)
	if rt == nil {
		g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		return "", nil, writeOpenAIErrorCode(ctx, http.StatusNotFound, "invalid_request_error", "model", codeRouteNoTarget, missingTarget(sh, target))
	}
	if body, ok := setBodyModel(x.body, target); ok {
		x.body = body
	}
	return target, rt, 0
}

// bodyField returns the top-level field name of a JSON object, as text (a
// number as written, a string unquoted; the first element of an array).
func bodyField(body []byte, name string) ([]byte, bool) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return nil, false
	}
	v, ok := fields[name]
	if !ok {
		return nil, false
	}
	return firstScalar(v)
}

// setBodyModel returns body, a JSON object, with its top-level "model"
// field's value replaced by the string model, the rest byte for byte as
// it was; false when body has no such field.
func setBodyModel(body []byte, model string) ([]byte, bool) {
	d := json.NewDecoder(bytes.NewReader(body))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, false
		}
		key, _ := tok.(string)
		start := int(d.InputOffset()) // after the key: the colon and the value follow
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, false
		}
		if key != "model" {
			continue
		}
		end := int(d.InputOffset())
		seg := body[start:end]
		colon := bytes.IndexByte(seg, ':')
		if colon < 0 {
			return nil, false
		}
		valueAt := start + colon + 1
		for valueAt < end && (body[valueAt] == ' ' || body[valueAt] == '\t' || body[valueAt] == '\n' || body[valueAt] == '\r') {
			valueAt++
		}
		q, _ := json.Marshal(model)
		out := make([]byte, 0, len(body)-(end-valueAt)+len(q))
		out = append(append(append(out, body[:valueAt]...), q...), body[end:]...)
		return out, true
	}
	return nil, false
}

// shardForward resolves a gRPC infer call for name, which is no
// deployment: it returns the route and name of the deployment a route
// object picked, with infer's model_name rewritten to it, or the error to
// answer.
func (g *GRPC) shardForward(ctx context.Context, name string, infer *oipgrpc.ModelInferRequest) (*routing.Route, string, error) {
	sh := g.opts.Shards.Lookup(name)
	if sh == nil {
		g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		return nil, "", status.Error(codes.NotFound, notFound(name))
	}
	value, found := grpcShardValue(ctx, sh, infer)
	target, ok := sh.Target(value, found)
	if !ok {
		g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		return nil, "", status.Error(codes.NotFound, noTarget(sh, value, found))
	}
	if g.opts.Auth != nil {
		p, err := grpcPrincipal(ctx, g.opts.Auth)
		if err == nil {
			err = auth.Check(p, auth.Predict, target)
		}
		if err != nil {
			return nil, "", grpcAuthError(err)
		}
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(strings.ToLower(headerDeployment), target))
	rt := g.routes.Lookup(target)
	if rt == nil {
		g.opts.Metrics.observe("(unknown)", "", http.StatusNotFound, 0, false)
		return nil, "", status.Error(codes.NotFound, missingTarget(sh, target))
	}
	if infer != nil {
		infer.ModelName = target
	}
	return rt, target, nil
}

// grpcShardValue is the value route sh reads of a gRPC call: its metadata
// key, or the first element of its input's typed contents.
func grpcShardValue(ctx context.Context, sh *routing.Shard, infer *oipgrpc.ModelInferRequest) ([]byte, bool) {
	if sh.Match.Header != "" {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get(sh.Match.Header); len(v) > 0 && v[0] != "" {
			return []byte(v[0]), true
		}
		return nil, false
	}
	for _, in := range infer.GetInputs() {
		if in.GetName() == sh.Match.Input {
			return firstContent(in.GetContents())
		}
	}
	return nil, false
}

// grpcAuthError is an auth refusal as the gRPC auth stage answers it.
func grpcAuthError(err error) error {
	st, code, msg := auth.Status(err)
	c := codes.Unauthenticated
	switch {
	case st == http.StatusForbidden:
		c = codes.PermissionDenied
	case st != http.StatusUnauthorized:
		c = codes.Unavailable
	}
	return status.Error(c, code+": "+msg)
}
