package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Affinity (spec.routing): a deployment whose routing hashes a key sends
// requests with the same key to the same replica while its load allows
// (balance.Ring, bounded loads), so that a session, a user's cache or an
// LLM prompt's KV cache stays warm. The key comes from:
//
//   - consistentHash with key.header: the header's value (gRPC: the
//     metadata key, lower-case);
//   - consistentHash with key.input: the first element of the input tensor
//     of that name, as text, so that 42 and "42" are one key and a REST
//     and a gRPC client with the same key reach the same replica; in
//     binary tensor data (REST's binary extension, gRPC's raw contents) the
//     input carries no text, and the request has no key;
//   - prefix: the first prefixBytes bytes of the header key.header, or of
//     an OpenAI request's prompt (completions) or its messages' roles and
//     contents in order (chat).
//
// A request without a key (the header absent, the input missing) is
// routed by least outstanding requests, as if the deployment had no
// routing, or refused with 400 naming the key when the spec says
// missingKey: reject. The key is computed once per request, and only for such a
// deployment: the others pay one nil check.

// keyState says whether an exchange's key was computed, and found.
type keyState uint8

const (
	keyUnknown keyState = iota
	keyNone
	keyFound
)

// pick returns the replica of rt for x's request: by its key on rt's ring
// when rt's routing hashes one and the request has it, else by least
// outstanding requests.
func (g *Gateway) pick(ctx *fasthttp.RequestCtx, x *exchange, rt *routing.Route, excluded func(*balance.Endpoint) bool) *balance.Endpoint {
	if ring := rt.Ring(); ring != nil {
		if x.keyState == keyUnknown {
			x.key, x.keyState = restKey(rt.Routing, &ctx.Request.Header, x.body, x.openAI != nil)
		}
		if x.keyState == keyFound {
			return ring.Pick(x.key, excluded)
		}
	}
	return g.balancer.Pick(rt.Endpoints, excluded)
}

// restKey returns the key of a REST request (header h, body) under r.
func restKey(r *serving.Routing, h *fasthttp.RequestHeader, body []byte, openAI bool) (uint64, keyState) {
	switch r.PolicyOrDefault() {
	case serving.RoutingConsistentHash:
		switch {
		case r.Key == nil:
		case r.Key.Header != "":
			if v := h.Peek(r.Key.Header); len(v) > 0 {
				return balance.HashKey(v), keyFound
			}
		case r.Key.Input != "":
			if n := h.Peek(binaryHeaderLength); len(n) > 0 {
				// Binary tensor data: only the JSON header is text.
				l, err := strconv.Atoi(string(n))
				if err != nil || l < 0 || l > len(body) {
					return 0, keyNone
				}
				body = body[:l]
			}
			if v, ok := jsonInputKey(body, r.Key.Input); ok {
				return balance.HashKey(v), keyFound
			}
		}
	case serving.RoutingPrefix:
		n := r.PrefixBytesOrDefault()
		if r.Key != nil && r.Key.Header != "" {
			if v := h.Peek(r.Key.Header); len(v) > 0 {
				return balance.PrefixKey(v, n), keyFound
			}
			return 0, keyNone
		}
		if openAI {
			if p, ok := promptText(body, n); ok {
				return balance.PrefixKey(p, n), keyFound
			}
		}
	}
	return 0, keyNone
}

// binaryHeaderLength is the header of OIP v2's binary tensor extension that
// gives the length of the body's JSON part.
const binaryHeaderLength = "Inference-Header-Content-Length"

// jsonInputKey returns the first element of input name's "data" in an OIP
// v2 JSON request, as text: a number as written, a string unquoted.
func jsonInputKey(body []byte, name string) ([]byte, bool) {
	var req struct {
		Inputs []struct {
			Name string          `json:"name"`
			Data json.RawMessage `json:"data"`
		} `json:"inputs"`
	}
	if json.Unmarshal(body, &req) != nil {
		return nil, false
	}
	for _, in := range req.Inputs {
		if in.Name == name {
			return firstScalar(in.Data)
		}
	}
	return nil, false
}

// firstScalar returns the first number, string or boolean of a JSON value
// (nested arrays walked in order).
func firstScalar(v json.RawMessage) ([]byte, bool) {
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, false
		}
		switch t := tok.(type) {
		case json.Delim:
			continue
		case json.Number:
			return []byte(t), true
		case string:
			return []byte(t), true
		case bool:
			return []byte(strconv.FormatBool(t)), true
		default:
			return nil, false
		}
	}
}

// promptText returns the text an OpenAI request's prefix is taken from: its
// prompt (completions) or its messages' roles and contents in order
// (chat), at most about n bytes of it.
func promptText(body []byte, n int) ([]byte, bool) {
	var req struct {
		Prompt   json.RawMessage `json:"prompt"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if json.Unmarshal(body, &req) != nil {
		return nil, false
	}
	if len(req.Prompt) > 0 {
		var s string
		if json.Unmarshal(req.Prompt, &s) == nil {
			return []byte(s), s != ""
		}
		return req.Prompt, true // a list of prompts or tokens: as written
	}
	var b []byte
	for _, m := range req.Messages {
		if len(b) >= n {
			break
		}
		b = append(b, m.Role...)
		b = append(b, '\n')
		var s string
		if json.Unmarshal(m.Content, &s) == nil {
			b = append(b, s...)
		} else {
			b = append(b, m.Content...) // parts: as written
		}
		b = append(b, '\n')
	}
	return b, len(b) > 0
}

// grpcKey returns the key of a gRPC infer request under r (see Affinity).
func grpcKey(ctx context.Context, r *serving.Routing, req *oipgrpc.ModelInferRequest) (uint64, keyState) {
	header := func(name string) string {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get(name); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	switch r.PolicyOrDefault() {
	case serving.RoutingConsistentHash:
		switch {
		case r.Key == nil:
		case r.Key.Header != "":
			if v := header(r.Key.Header); v != "" {
				return balance.HashKey(v), keyFound
			}
		case r.Key.Input != "" && req != nil:
			for _, in := range req.GetInputs() {
				if in.GetName() == r.Key.Input {
					if v, ok := firstContent(in.GetContents()); ok {
						return balance.HashKey(v), keyFound
					}
					break
				}
			}
		}
	case serving.RoutingPrefix:
		if r.Key != nil && r.Key.Header != "" {
			if v := header(r.Key.Header); v != "" {
				return balance.PrefixKey(v, r.PrefixBytesOrDefault()), keyFound
			}
		}
	}
	return 0, keyNone
}

// firstContent returns the first element of typed tensor contents as text,
// as jsonInputKey writes it.
func firstContent(c *oipgrpc.InferTensorContents) ([]byte, bool) {
	switch {
	case c == nil:
		return nil, false
	case len(c.BytesContents) > 0:
		return c.BytesContents[0], true
	case len(c.Int64Contents) > 0:
		return strconv.AppendInt(nil, c.Int64Contents[0], 10), true
	case len(c.IntContents) > 0:
		return strconv.AppendInt(nil, int64(c.IntContents[0]), 10), true
	case len(c.Uint64Contents) > 0:
		return strconv.AppendUint(nil, c.Uint64Contents[0], 10), true
	case len(c.UintContents) > 0:
		return strconv.AppendUint(nil, uint64(c.UintContents[0]), 10), true
	case len(c.Fp64Contents) > 0:
		return strconv.AppendFloat(nil, c.Fp64Contents[0], 'g', -1, 64), true
	case len(c.Fp32Contents) > 0:
		return strconv.AppendFloat(nil, float64(c.Fp32Contents[0]), 'g', -1, 32), true
	case len(c.BoolContents) > 0:
		return strconv.AppendBool(nil, c.BoolContents[0]), true
	}
	return nil, false
}

// missingKey says that deployment routes by r's key, which the request
// lacks.
func missingKey(deployment string, r *serving.Routing) string {
	return fmt.Sprintf("deployment %q routes requests by their %s (spec.routing.missingKey: reject), and this request has none: send it with one", deployment, r.KeyName())
}

// keyRequired answers 400, and reports false, for a request without the
// routing key of rt when rt's routing rejects those
// (spec.routing.missingKey: reject); it computes x's key for pick.
func (g *Gateway) keyRequired(ctx *fasthttp.RequestCtx, x *exchange, rt *routing.Route) bool {
	r := rt.Routing
	if !r.RejectsMissingKey() {
		return true
	}
	if x.keyState == keyUnknown {
		x.key, x.keyState = restKey(r, &ctx.Request.Header, x.body, x.openAI != nil)
	}
	if x.keyState == keyFound {
		return true
	}
	writeError(ctx, http.StatusBadRequest, missingKey(rt.Deployment, r))
	return false
}

// grpcKeyRequired is keyRequired for a gRPC call: an InvalidArgument
// error, or nil.
func grpcKeyRequired(ctx context.Context, a *attempt, rt *routing.Route) error {
	r := rt.Routing
	if !r.RejectsMissingKey() {
		return nil
	}
	if a.keyState == keyUnknown {
		a.key, a.keyState = grpcKey(ctx, r, a.infer)
	}
	if a.keyState == keyFound {
		return nil
	}
	return status.Error(codes.InvalidArgument, missingKey(rt.Deployment, r))
}
