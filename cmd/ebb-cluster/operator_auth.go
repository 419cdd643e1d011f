package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// operatorAuthOptions are the operator's auth flags.
type operatorAuthOptions struct {
	mode               string // --auth: on or off
	adminTokenSecret   string
	gatewayTokenSecret string
	secretNamespace    string
	allowedHosts       []string
	metrics            string         // --metrics-auth: token or open (gateway_metrics.go)
	oidc               auth.OIDCFlags // the same flags as ebb up's
}

func addOperatorAuthFlags(f *pflag.FlagSet, o *operatorAuthOptions) {
	f.StringVar(&o.mode, "auth", "on", "on: the admin API needs a token by route (as ebb up's), and the gateways' endpoints (demand, wake-ups, token verification) the gateway token; off: no tokens anywhere (only behind a proxy that authenticates)")
	f.StringVar(&o.adminTokenSecret, "admin-token-secret", "ebb-admin-token", "Secret (key \"token\") where the operator keeps an admin token, created on start when missing or no longer valid")
	f.StringVar(&o.gatewayTokenSecret, "gateway-token-secret", "ebb-gateway-token", "Secret (key \"token\") where the operator keeps the gateways' token (scope gateway); gateway pods mount it and read it with --token-file")
	f.StringVar(&o.secretNamespace, "token-secret-namespace", "", "namespace of the token Secrets; default $POD_NAMESPACE (the operator's own), else --namespace")
	f.StringSliceVar(&o.allowedHosts, "allowed-hosts", nil, "Host names (host or host:port) the admin API answers; default any (the operator listens on all interfaces); browsers' Origin must be one of these or the Host itself")
	addMetricsAuthFlag(f, &o.metrics)
	o.oidc.AddFlags(f)
}

// operatorAuth is how `ebb operator` guards its address: the admin API
// (/v1) exactly as ebb up does (Host/Origin, tokens by route, /v1/tokens),
// and the gateways' endpoints with scope gateway. Tokens live in the
// registry's SQL store; with --oidc-issuer the admin API also takes OIDC
// JWTs, their claims mapped to scopes as ebb up maps them (the gateways'
// endpoints take ebb tokens only). On start it keeps an admin token and
// the gateways' token in Secrets.
type operatorAuth struct {
	off      bool
	verifier *auth.Verifier
	authn    auth.Authenticator // the admin API's: verifier, and OIDC when configured
	oidc     *auth.OIDC         // nil without --oidc-issuer
	tokens   auth.TokenStore
	hosts    *auth.Hosts
}

func newOperatorAuth(ctx context.Context, o operatorAuthOptions, addr string, cfg *rest.Config, ns string, st auth.TokenStore, log *slog.Logger) (*operatorAuth, error) {
	// In a cluster the admin API is reached by many names (the Service,
	// the gateways' proxy passing the client's Host, a port-forward): any
	// Host is fine unless --allowed-hosts names some; tokens protect it,
	// and cross-site browser Origins are refused all the same.
	a := &operatorAuth{tokens: st, hosts: auth.NewHosts("", o.allowedHosts)}
	switch o.mode {
	case "on", "":
	case "off":
		if _, err := o.oidc.Authenticator(ctx, true, log); err != nil {
			return nil, err
		}
		a.off = true
		log.Warn("AUTH IS OFF (--auth=off): anyone who can reach " + addr + " may deploy and run code, push models, and report demand; turn it on unless a proxy in front authenticates every request")
		return a, nil
	default:
		return nil, fmt.Errorf("invalid --auth %q: use on (the default) or off", o.mode)
	}
	a.verifier = auth.NewVerifier(st, 0, nil)
	oidc, err := o.oidc.Authenticator(ctx, false, log)
	if err != nil {
		return nil, err
	}
	a.authn = a.verifier
	if oidc != nil {
		a.oidc, a.authn = oidc, auth.ByFormat{Token: a.verifier, JWT: oidc}
	}
	secretNS := o.secretNamespace
	if secretNS == "" {
		secretNS = os.Getenv("POD_NAMESPACE")
	}
	if secretNS == "" {
		secretNS = ns
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("operator: kubernetes client: %w", err)
	}
	for _, s := range []operator.TokenSecret{
		{Namespace: secretNS, Name: o.adminTokenSecret, TokenName: "admin (ebb operator)", Scopes: []string{auth.ScopeAdmin}},
		{Namespace: secretNS, Name: o.gatewayTokenSecret, TokenName: "gateways (ebb operator)", Scopes: []string{auth.ScopeGateway}},
	} {
		if s.Name == "" {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		created, err := operator.EnsureTokenSecret(sctx, cs, st, a.verifier, s)
		cancel()
		if err != nil {
			return nil, err
		}
		if created {
			log.Info("created a token and stored it in a Secret", "secret", s.Namespace+"/"+s.Name, "scopes", s.Scopes)
		}
	}
	log.Info("auth: the admin API (/v1) needs a token by route; gateways need the gateway token",
		"adminToken", fmt.Sprintf("kubectl -n %s get secret %s -o jsonpath='{.data.token}' | base64 -d", secretNS, o.adminTokenSecret))
	return a, nil
}

// admin returns the admin API behind the Host/Origin check and, unless
// auth is off, token authorization.
func (a *operatorAuth) admin(h *api.Handler) http.Handler {
	var next http.Handler = h
	if !a.off {
		next = api.Authorize(h, a.authn)
	}
	return a.hosts.Handler(next)
}

// metrics returns /metrics behind --metrics-auth: a token with scope read
// (an ebb token, or an OIDC JWT with --oidc-issuer) unless it is open or
// auth is off.
func (a *operatorAuth) metrics(mode string, h http.Handler, log *slog.Logger) (http.Handler, error) {
	if a.off {
		return metricsHandler(mode, nil, h, log)
	}
	return metricsHandler(mode, a.authn, h, log)
}

// run refetches the OIDC issuer's keys hourly until ctx ends; it returns at
// once without an issuer.
func (a *operatorAuth) run(ctx context.Context) {
	if a.oidc != nil {
		_ = a.oidc.Run(ctx)
	}
}

// parts adds the token routes to the admin API's parts.
func (a *operatorAuth) parts(p home.AdminParts) home.AdminParts {
	p.Tokens = a.tokens
	if a.verifier != nil {
		p.OnRevoke = a.verifier.Forget
	}
	return p
}

// gateways returns how the operator checks its gateways; zero when off.
func (a *operatorAuth) gateways() operator.GatewayAuth {
	if a.off {
		return operator.GatewayAuth{}
	}
	return operator.GatewayAuth{Authenticator: a.verifier, Expiry: func(ctx context.Context, id string) time.Time {
		t, err := a.tokens.GetToken(ctx, id)
		if err != nil {
			return time.Time{}
		}
		return t.ExpiresAt
	}}
}
