package auth

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/spf13/pflag"
)

// OIDCFlags are the --oidc-* flags of ebb's servers (ebb up, the operator,
// the gateway): JWTs from one OpenID Connect issuer accepted beside ebb
// tokens, their groups (or roles) mapped to scopes.
type OIDCFlags struct {
	Issuer      string
	Audience    string
	ScopesClaim string
	TenantClaim string
	ScopeMap    []string
}

// AddFlags adds --oidc-issuer, --oidc-audience, --oidc-scopes-claim and
// --oidc-scope-map to f.
func (o *OIDCFlags) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Issuer, "oidc-issuer", "", "also accept OIDC JWTs from this issuer, exactly as its tokens' \"iss\" says (https://keycloak.example/realms/ml); its keys come from ISSUER/.well-known/openid-configuration")
	f.StringVar(&o.Audience, "oidc-audience", "", "the \"aud\" an OIDC token must carry: the client ID the issuer names ebb by (required with --oidc-issuer)")
	f.StringVar(&o.ScopesClaim, "oidc-scopes-claim", "groups", "the token claim whose values --oidc-scope-map maps: a list of strings or a space-separated string; a dotted name reaches into objects (Keycloak: realm_access.roles)")
	f.StringVar(&o.TenantClaim, "oidc-tenant-claim", "tenant", "the token claim that names the tenant its requests count against (tenant limits, fair queueing); a token without it counts against its subject (\"sub\")")
	f.StringSliceVar(&o.ScopeMap, "oidc-scope-map", nil, "VALUE=SCOPE[+SCOPE...] entries, comma-separated or repeated, mapping claim values to ebb scopes: 'ml-admins=admin,ml-deployers=deploy+models:write,team-fraud=predict:fraud-*'; '*=SCOPE' gives every token of the issuer SCOPE")
}

// Authenticator returns the OIDC authenticator the flags ask for; nil
// without --oidc-issuer. It fetches the issuer's keys at once (for 5s at
// most) so a wrong URL shows at start; an issuer that does not answer is
// a warning, as ebb tokens work meanwhile and OIDC ones get 503 until it
// answers. authOff (--auth=off) makes an issuer an error.
func (o OIDCFlags) Authenticator(ctx context.Context, authOff bool, log *slog.Logger) (*OIDC, error) {
	if o.Issuer == "" {
		if o.Audience != "" || len(o.ScopeMap) > 0 {
			return nil, errors.New("--oidc-audience and --oidc-scope-map need --oidc-issuer")
		}
		return nil, nil
	}
	if authOff {
		return nil, errors.New("--oidc-issuer does nothing with --auth=off: drop one")
	}
	m, err := ParseScopeMap(o.ScopeMap)
	if err != nil {
		return nil, errors.New("--oidc-scope-map: " + err.Error())
	}
	oidc, err := NewOIDC(OIDCOptions{
		Issuer: o.Issuer, Audience: o.Audience, ScopesClaim: o.ScopesClaim, TenantClaim: o.TenantClaim, ScopeMap: m, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	start, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := oidc.Refresh(start); err != nil {
		log.Warn("OIDC: cannot fetch the issuer's keys now; OIDC tokens get 503 until it answers, ebb tokens work", "issuer", o.Issuer, "err", err)
	}
	log.Info("OIDC: accepting JWTs beside ebb tokens", "issuer", o.Issuer, "audience", o.Audience, "claim", o.ScopesClaim, "scopeMap", m.String())
	return oidc, nil
}
