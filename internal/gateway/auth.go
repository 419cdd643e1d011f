package gateway

import (
	"bytes"
	"context"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/valyala/fasthttp"
)

// Authenticator verifies the bearer token of an inference request;
// *auth.Verifier is one. It must answer from memory on the request path:
// the auth stage calls it for every request that names a model. The token
// it gets points into the request's buffer, reused for the connection's
// next request: it clones what it keeps (auth.Authenticator).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (auth.Principal, error)
}

// authorize is the chain's first stage when Options.Auth is set: a request
// that names a model (/v2/models/{name}...: metadata, ready, infer) needs a
// token with scope predict:GLOB matching the name. Server health and
// metadata (/v2/health/..., /v2) stay open for load balancers and probes.
// It answers a refused request (401 with WWW-Authenticate, or 403) and
// reports false. Without Options.Auth it passes everything at once, so
// open inference costs nothing. It also returns the request's tenant
// (tenant.go).
func (g *Gateway) authorize(ctx *fasthttp.RequestCtx, name []byte) (tenant string, ok bool) {
	if g.opts.Auth == nil {
		return g.tenantOf(ctx, nil), true
	}
	p, err := g.principal(ctx)
	if err == nil {
		err = auth.Check(p, auth.Predict, b2s(name))
		if err != nil && shardAuthLater(g.routes, g.opts.Shards, b2s(name)) {
			return g.tenantOf(ctx, &p), true // a route object: its target's scope decides (shardroute.go)
		}
	}
	if err != nil {
		writeAuthError(ctx, err)
		return "", false
	}
	return g.tenantOf(ctx, &p), true
}

// writeAuthError answers a refused request: 401 with WWW-Authenticate, or
// 403, with the refusal's code.
func writeAuthError(ctx *fasthttp.RequestCtx, err error) {
	st, code, msg := auth.Status(err)
	if st == http.StatusUnauthorized {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="ebb"`)
	}
	writeErrorCode(ctx, st, code, msg)
}

// principal authenticates the bearer token of ctx's Authorization header.
func (g *Gateway) principal(ctx *fasthttp.RequestCtx) (auth.Principal, error) {
	h := peekAuthorization(&ctx.Request.Header)
	if len(h) == 0 {
		return auth.Principal{}, auth.Unauthenticated("no token")
	}
	// Not copied: an Authenticator clones what it keeps.
	tok, ok := auth.BearerToken(b2s(h))
	if !ok {
		return auth.Principal{}, auth.Unauthenticated(`the Authorization header is not "Bearer TOKEN"`)
	}
	return g.opts.Auth.Authenticate(ctx, tok)
}

// peekAuthorization returns h's Authorization header, found in one pass
// over the (normalized) names: Peek would normalize the name it is given
// on every call.
func peekAuthorization(h *fasthttp.RequestHeader) []byte {
	for k, v := range h.All() {
		if bytes.Equal(k, headerAuthorization) {
			return v
		}
	}
	return nil
}

var headerAuthorization = []byte("Authorization")

// authUnary is the gRPC side of the auth stage: ModelReady, ModelMetadata
// and ModelInfer need predict:GLOB for their model, with the token in the
// "authorization" metadata ("Bearer TOKEN"); the server-wide calls stay
// open.
func (g *GRPC) authUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	var name string
	switch r := req.(type) {
	case *oipgrpc.ModelInferRequest:
		name = r.GetModelName()
	case *oipgrpc.ModelMetadataRequest:
		name = r.GetName()
	case *oipgrpc.ModelReadyRequest:
		name = r.GetName()
	default:
		return handler(ctx, req)
	}
	p, err := grpcPrincipal(ctx, g.opts.Auth)
	_, infer := req.(*oipgrpc.ModelInferRequest)
	if infer && err == nil {
		ctx = auth.WithPrincipal(ctx, p) // its tenant (tenant.go)
	}
	if err == nil {
		err = auth.Check(p, auth.Predict, name)
		if err != nil && infer && shardAuthLater(g.routes, g.opts.Shards, name) {
			return handler(ctx, req) // a route object: its target's scope decides (shardroute.go)
		}
	}
	if err != nil {
		st, code, msg := auth.Status(err)
		c := codes.Unauthenticated
		switch {
		case st == http.StatusForbidden:
			c = codes.PermissionDenied
		case st != http.StatusUnauthorized:
			c = codes.Unavailable
		}
		return nil, status.Error(c, code+": "+msg)
	}
	return handler(ctx, req)
}

func grpcPrincipal(ctx context.Context, a Authenticator) (auth.Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return auth.Principal{}, auth.Unauthenticated("no token")
	}
	tok, ok := auth.BearerToken(vals[0])
	if !ok {
		return auth.Principal{}, auth.Unauthenticated(`the authorization metadata is not "Bearer TOKEN"`)
	}
	return a.Authenticate(ctx, tok)
}
