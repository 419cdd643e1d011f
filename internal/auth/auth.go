// Package auth is who may do what in ebb: API tokens with scopes, the pure
// rule that decides whether a principal's scopes allow an action on a
// resource, and the pieces that the admin API, the gateway (REST and gRPC)
// and /metrics share to enforce it.
//
// Scopes. A token carries one or more scopes:
//
//	admin              everything, tokens included
//	read               read deployments, the registry, events, logs, metrics
//	deploy             create, change and delete deployments (and read)
//	models:write       push, tag, retire and delete registry models (and read)
//	exec               let a deployment run code: engine "http" with a
//	                   command, or engine "python"; needed beside deploy
//	predict:GLOB       inference on deployments whose name matches GLOB
//	                   (path.Match: "predict:fraud-*", "predict:*")
//	gateway            internal: what an in-cluster gateway does at the
//	                   operator (report demand, wake deployments, verify
//	                   the tokens of inference requests); nothing else
//
// Code execution is its own scope because a deployment that runs a command
// runs it as ebb's user: a deploy token alone can deploy models, not code.
//
// Tokens. A token is "ebb_<id>_<secret>": id names it (in lists, logs and
// revocation) and secret is 256 random bits. Only the SHA-256 of the secret
// is stored; a fast hash suffices because the secret is random and long,
// not a password. The secret is shown once, when the token is created.
//
// Cost. A Verifier answers from memory for tokens it verified in the last
// CacheTTL, so the data plane does not hit the store per request; a revoked
// token stops working within CacheTTL.
//
// OIDC. An OIDC authenticator accepts JWTs from one OpenID Connect issuer
// (Keycloak, Dex, ...): signature against the issuer's JWKS, issuer,
// audience, exp/nbf/iat with a small leeway; a ScopeMap turns the values
// of one claim (groups, roles) into scopes, and a valid token whose values
// map to nothing is refused with 403. Its keys are fetched once and again
// only for an unknown kid, at most once per MinRefresh, and verified
// tokens are remembered by hash until their exp, so requests do no network
// I/O. ByFormat puts it beside a Verifier: JWTs go to one, ebb tokens to
// the other.
package auth

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
)

// Scope is one permission a token carries.
type Scope = string

// The scopes. Predict scopes are PredictPrefix followed by a glob.
const (
	ScopeAdmin       Scope = "admin"
	ScopeRead        Scope = "read"
	ScopeDeploy      Scope = "deploy"
	ScopeModelsWrite Scope = "models:write"
	ScopeExec        Scope = "exec"
	// ScopeGateway is the in-cluster gateways' scope at the operator:
	// demand reports, wake-ups and token verification (Action Gateway).
	ScopeGateway  Scope = "gateway"
	PredictPrefix       = "predict:"
)

// ValidateScope reports whether s is a scope, with how to fix it if not.
func ValidateScope(s string) error {
	switch s {
	case ScopeAdmin, ScopeRead, ScopeDeploy, ScopeModelsWrite, ScopeExec, ScopeGateway:
		return nil
	}
	if glob, ok := strings.CutPrefix(s, PredictPrefix); ok {
		if glob == "" {
			return fmt.Errorf("scope %q names no deployment: use predict:NAME or a glob such as predict:*", s)
		}
		if _, err := path.Match(glob, ""); err != nil {
			return fmt.Errorf("scope %q: bad glob: %v", s, err)
		}
		return nil
	}
	return fmt.Errorf("unknown scope %q: use admin, read, deploy, models:write, exec, gateway or predict:NAME (a glob such as predict:* works)", s)
}

// Action is what a request does; Authorize decides it.
type Action int

const (
	// Read reads deployments, the registry, events, logs or metrics.
	Read Action = iota + 1
	// Deploy creates, changes or deletes a deployment.
	Deploy
	// Exec makes ebb run code: a deployment spec with engine "http" and a
	// command, or engine "python". Checked beside Deploy.
	Exec
	// ModelsWrite changes the model registry.
	ModelsWrite
	// Admin manages tokens.
	Admin
	// Predict is inference on the deployment named by the resource.
	Predict
	// Gateway is what a gateway asks of the operator: demand reports,
	// wake-ups, token verification.
	Gateway
)

// scope returns the scope that grants a, for messages; for Predict, the
// scope naming resource.
func (a Action) scope(resource string) string {
	switch a {
	case Read:
		return ScopeRead
	case Deploy:
		return ScopeDeploy
	case Exec:
		return ScopeExec
	case ModelsWrite:
		return ScopeModelsWrite
	case Predict:
		return PredictPrefix + resource
	case Gateway:
		return ScopeGateway
	}
	return ScopeAdmin
}

// Decision is the answer of Authorize.
type Decision struct {
	Allow bool
	// By is the scope that allowed the action, when allowed.
	By string
	// Missing is the scope that would have allowed the action, when denied.
	Missing string
	// Reason says why, for a person.
	Reason string
}

// Authorize decides whether a principal holding scopes may do action on
// resource (a deployment name for Predict; ignored otherwise). admin
// allows everything; deploy and models:write include read; nothing else
// implies another scope, so predict scopes never read or write the admin
// API and deploy never runs code without exec.
func Authorize(scopes []string, action Action, resource string) Decision {
	for _, s := range scopes {
		if grants(s, action, resource) {
			return Decision{Allow: true, By: s, Reason: "a scope of the token allows it"}
		}
	}
	need := action.scope(resource)
	return Decision{Missing: need, Reason: fmt.Sprintf("this needs scope %q (or admin); the token has %s", need, describe(scopes))}
}

func grants(s string, action Action, resource string) bool {
	switch s {
	case ScopeAdmin:
		return true
	case ScopeRead:
		return action == Read
	case ScopeDeploy:
		return action == Deploy || action == Read
	case ScopeModelsWrite:
		return action == ModelsWrite || action == Read
	case ScopeExec:
		return action == Exec
	case ScopeGateway:
		return action == Gateway
	}
	if glob, ok := strings.CutPrefix(s, PredictPrefix); ok && action == Predict {
		if literal(glob) {
			// A plain name, as most predict scopes are: path.Match would
			// come to the same answer, on every request.
			return glob == resource
		}
		ok, err := path.Match(glob, resource)
		return ok && err == nil
	}
	return false
}

// literal reports whether glob has none of path.Match's special
// characters.
func literal(glob string) bool {
	for i := 0; i < len(glob); i++ {
		switch glob[i] {
		case '*', '?', '[', '\\':
			return false
		}
	}
	return true
}

func describe(scopes []string) string {
	if len(scopes) == 0 {
		return "no scopes"
	}
	return "scopes " + strings.Join(scopes, ", ")
}

// Principal is who made a request: the token it carried and its scopes.
type Principal struct {
	// TokenID is the token's id; empty for Anonymous.
	TokenID string
	// Name is the token's name, for logs and records.
	Name   string
	Scopes []string
	// Tenant is who the request counts against for tenant limits and
	// fair queueing: the token's tenant (Token.TenantOf), or an OIDC
	// token's tenant claim or subject. Empty for Anonymous: the gateway
	// then takes the tenant from a header (see package tenant in the
	// gateway's docs).
	Tenant string
}

// Anonymous is the principal of every request where auth is off: it may do
// everything.
var Anonymous = Principal{Name: "anonymous (auth off)", Scopes: []string{ScopeAdmin}}

// Can reports whether p may do action on resource.
func (p Principal) Can(action Action, resource string) Decision {
	return Authorize(p.Scopes, action, resource)
}

// HasScope reports whether p holds scope s exactly.
func (p Principal) HasScope(s string) bool { return slices.Contains(p.Scopes, s) }

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal a request was authenticated as; ok is
// false when no auth stage ran (a handler served without one, as in tests).
func FromContext(ctx context.Context) (p Principal, ok bool) {
	p, ok = ctx.Value(principalKey{}).(Principal)
	return p, ok
}
