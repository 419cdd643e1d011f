package auth_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/auth"
)

func TestOIDCTokens(t *testing.T) {
	k := testKeys()
	e := newOIDCEnv(t, auth.OIDCOptions{}, k.rsa, k.ec)
	now := e.clock()
	valid := sign(t, k.rsa, e.claims([]string{"ml-deployers"}))
	parts := strings.Split(valid, ".")
	adminPayload, _ := json.Marshal(e.claims([]string{"ml-admins"}))
	pubDER, _ := x509.MarshalPKIXPublicKey(k.rsa.public().Key)

	tests := []struct {
		name       string
		token      string
		wantStatus int // 0: accepted
		wantScopes []string
		wantMsg    string
	}{
		{"valid RSA", valid, 0, []string{"deploy", "models:write"}, ""},
		{"valid EC", sign(t, k.ec, e.claims([]string{"team-fraud"})), 0, []string{"predict:fraud-*"}, ""},
		{"several groups add up", sign(t, k.ec, e.claims([]string{"ml-readers", "team-fraud", "other"})), 0, []string{"predict:fraud-*", "read"}, ""},
		{"audience in a list", sign(t, k.rsa, e.claims([]string{"ml-admins"}, set("aud", []string{"account", testAudience}))), 0, []string{"admin"}, ""},
		{"expired within the skew", sign(t, k.rsa, e.claims([]string{"ml-readers"}, set("exp", now.Add(-30*time.Second).Unix()))), 0, []string{"read"}, ""},
		{"wrong issuer", sign(t, k.rsa, e.claims([]string{"ml-admins"}, set("iss", "https://evil.example"))), 401, nil, `issuer is "https://evil.example"`},
		{"wrong audience", sign(t, k.rsa, e.claims([]string{"ml-admins"}, set("aud", "other-client"))), 401, nil, `audience "other-client", not "ebb"`},
		{"no audience", sign(t, k.rsa, e.claims([]string{"ml-admins"}, del("aud"))), 401, nil, "audience none"},
		{"expired", sign(t, k.rsa, e.claims([]string{"ml-admins"}, set("exp", now.Add(-2*time.Minute).Unix()))), 401, nil, "expired at"},
		{"no expiry", sign(t, k.rsa, e.claims([]string{"ml-admins"}, del("exp"))), 401, nil, "no expiry"},
		{"not yet valid", sign(t, k.rsa, e.claims([]string{"ml-admins"}, set("nbf", now.Add(5*time.Minute).Unix()))), 401, nil, "not valid before"},
		{"issued in the future", sign(t, k.rsa, e.claims([]string{"ml-admins"}, set("iat", now.Add(5*time.Minute).Unix()))), 401, nil, "times are not valid"},
		{"signed by another key under the issuer's kid", sign(t, k.rsaOther.withKid("rsa1"), e.claims([]string{"ml-admins"})), 401, nil, `does not verify with the issuer's key "rsa1"`},
		{"EC key claiming an RSA kid", sign(t, k.ec2.withKid("rsa1"), e.claims([]string{"ml-admins"})), 401, nil, "does not verify"},
		{"payload changed after signing", parts[0] + "." + base64.RawURLEncoding.EncodeToString(adminPayload) + "." + parts[2], 401, nil, "does not verify"},
		{"signature removed", parts[0] + "." + parts[1] + ".", 401, nil, "does not verify"},
		{"alg none", unsigned(t, map[string]any{"alg": "none", "kid": "rsa1", "typ": "JWT"}, e.claims([]string{"ml-admins"}), ""), 401, nil, "not a JWT signed"},
		{"alg none with a real signature", unsigned(t, map[string]any{"alg": "none", "kid": "rsa1"}, e.claims([]string{"ml-admins"}), parts[2]), 401, nil, "not a JWT signed"},
		{"HS256 keyed with the public key", sign(t, signingKey{"rsa1", jose.HS256, pubDER}, e.claims([]string{"ml-admins"})), 401, nil, "not a JWT signed"},
		{"unknown kid", sign(t, k.rsaOther, e.claims([]string{"ml-admins"})), 401, nil, `key "rsa-other", which the issuer does not publish`},
		{"garbage", "a.b.c", 401, nil, "not a JWT"},
		{"huge", strings.Repeat("a", 20<<10) + ".b.c", 401, nil, "over 16 KiB"},
		{"no mapped group", sign(t, k.rsa, e.claims([]string{"staff", "/org/eng"})), 403, nil, `its "groups" claim holds "staff", "/org/eng", and the scope map (--oidc-scope-map) maps only "ml-admins", "ml-deployers", "ml-readers", "team-fraud"`},
		{"no groups claim", sign(t, k.rsa, e.claims(nil, del("groups"))), 403, nil, `the token has no "groups" claim`},
		{"groups of the wrong type", sign(t, k.rsa, e.claims(nil, set("groups", 7))), 403, nil, `claim "groups" is a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := e.o.Authenticate(context.Background(), tt.token)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("Authenticate: %v; want accepted", err)
				}
				if diff := cmp.Diff(tt.wantScopes, p.Scopes); diff != "" {
					t.Errorf("scopes (-want +got):\n%s", diff)
				}
				if p.Name != "oidc:alice" {
					t.Errorf("principal name %q, want oidc:alice", p.Name)
				}
				return
			}
			status, code, msg := auth.Status(err)
			if status != tt.wantStatus || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("Authenticate = %d %s %q, want %d with %q", status, code, msg, tt.wantStatus, tt.wantMsg)
			}
			if p.Scopes != nil {
				t.Errorf("refused token has scopes %v", p.Scopes)
			}
		})
	}
	if d, j := e.idp.fetches(); d != 1 || j != 1 {
		t.Errorf("the table fetched the discovery document %d and the JWKS %d times; want 1 and 1 (the unknown kid falls within MinRefresh)", d, j)
	}
}

func TestOIDCKeyRotation(t *testing.T) {
	k := testKeys()
	e := newOIDCEnv(t, auth.OIDCOptions{MinRefresh: time.Minute}, k.rsa)
	ctx := context.Background()
	wantFetches := func(want int) {
		t.Helper()
		if _, j := e.idp.fetches(); j != want {
			t.Errorf("JWKS fetched %d times; want %d", j, want)
		}
	}
	if _, err := e.o.Authenticate(ctx, sign(t, k.rsa, e.claims([]string{"ml-readers"}))); err != nil {
		t.Fatal(err)
	}
	wantFetches(1)

	// The issuer rotates to ec1; a token with the new kid fetches the keys
	// again, once the last fetch is older than MinRefresh.
	e.idp.publish(k.rsa, k.ec)
	e.advance(2 * time.Minute)
	if _, err := e.o.Authenticate(ctx, sign(t, k.ec, e.claims([]string{"ml-readers"}))); err != nil {
		t.Fatalf("token with the rotated-in key: %v", err)
	}
	wantFetches(2)

	// Made-up kids within MinRefresh fetch nothing.
	for i := range 50 {
		tok := sign(t, k.rsaOther.withKid("made-up-"+string(rune('a'+i%26))), e.claims([]string{"ml-admins"}))
		if _, err := e.o.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("made-up kid: %v, want ErrUnauthenticated", err)
		}
	}
	wantFetches(2)

	// Concurrent tokens with a new kid, once due, share one fetch.
	e.idp.publish(k.ec, k.ec2)
	e.advance(2 * time.Minute)
	tok := sign(t, k.ec2, e.claims([]string{"ml-readers"}))
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := e.o.Authenticate(ctx, tok)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent new kid: %v", err)
		}
	}
	wantFetches(3)

	// The issuer withdrew rsa1: once the keys are fetched again (Run does
	// it every KeysMaxAge), a new token signed with it is refused.
	if err := e.o.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.o.Authenticate(ctx, sign(t, k.rsa, e.claims([]string{"ml-readers"}))); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("token signed with a withdrawn key: %v, want ErrUnauthenticated", err)
	}
	if d, _ := e.idp.fetches(); d != 1 {
		t.Errorf("discovery fetched %d times; want 1 (jwks_uri is kept)", d)
	}
}

func TestOIDCCache(t *testing.T) {
	k := testKeys()
	e := newOIDCEnv(t, auth.OIDCOptions{CacheTTL: time.Minute, Leeway: 5 * time.Second}, k.rsa)
	ctx := context.Background()
	if err := e.o.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// Many distinct tokens, each verified from the kept keys: no fetch.
	for i := range 20 {
		tok := sign(t, k.rsa, e.claims([]string{"ml-readers"}, set("jti", string(rune('a'+i)))))
		for range 5 {
			if _, err := e.o.Authenticate(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d, j := e.idp.fetches(); d != 1 || j != 1 {
		t.Errorf("100 requests fetched the discovery document %d and JWKS %d times; want 1 and 1", d, j)
	}

	// A remembered token answers from the cache: even once its key is
	// withdrawn, until CacheTTL.
	tok := sign(t, k.rsa, e.claims([]string{"ml-readers"}, set("exp", e.clock().Add(90*time.Second).Unix())))
	if _, err := e.o.Authenticate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	e.idp.publish(k.ec)
	if err := e.o.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.o.Authenticate(ctx, tok); err != nil {
		t.Errorf("cached token: %v; want accepted from the cache", err)
	}
	e.advance(61 * time.Second)
	if _, err := e.o.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("after CacheTTL, a token whose key was withdrawn: %v; want ErrUnauthenticated", err)
	}

	// Expiry is honoured while cached: the entry ends at exp (+ leeway).
	e.idp.publish(k.rsa)
	if err := e.o.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	short := sign(t, k.rsa, e.claims([]string{"ml-readers"}, set("exp", e.clock().Add(10*time.Second).Unix())))
	if _, err := e.o.Authenticate(ctx, short); err != nil {
		t.Fatal(err)
	}
	e.advance(16 * time.Second) // past exp and the 5s leeway, within CacheTTL
	if _, err := e.o.Authenticate(ctx, short); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("expired cached token: %v; want ErrUnauthenticated", err)
	}

	// A valid token that maps to nothing is remembered as 403 too.
	none := sign(t, k.rsa, e.claims([]string{"staff"}))
	for range 2 {
		if _, err := e.o.Authenticate(ctx, none); !errors.Is(err, auth.ErrForbidden) {
			t.Errorf("unmapped token: %v; want ErrForbidden", err)
		}
	}
}

func TestOIDCIssuerUnavailable(t *testing.T) {
	k := testKeys()
	e := newOIDCEnv(t, auth.OIDCOptions{MinRefresh: time.Minute}, k.rsa)
	ctx := context.Background()
	e.idp.setDown(true)
	tok := sign(t, k.rsa, e.claims([]string{"ml-readers"}))
	for range 3 {
		_, err := e.o.Authenticate(ctx, tok)
		if status, code, _ := auth.Status(err); !errors.Is(err, auth.ErrIssuerUnavailable) || status != 503 || code != auth.CodeIssuerUnavailable {
			t.Fatalf("issuer down: %v (%d %s); want ErrIssuerUnavailable, 503", err, status, code)
		}
	}
	if d, _ := e.idp.fetches(); d != 1 {
		t.Errorf("issuer down: %d fetches for 3 requests within MinRefresh; want 1", d)
	}
	e.idp.setDown(false)
	e.advance(time.Minute)
	if _, err := e.o.Authenticate(ctx, tok); err != nil {
		t.Errorf("issuer back: %v", err)
	}
}

func TestOIDCDiscovery(t *testing.T) {
	k := testKeys()
	e := newOIDCEnv(t, auth.OIDCOptions{}, k.rsa)
	e.idp.mu.Lock()
	e.idp.issuer = "https://other.example"
	e.idp.mu.Unlock()
	err := e.o.Refresh(context.Background())
	if !errors.Is(err, auth.ErrIssuerUnavailable) || !strings.Contains(err.Error(), `names issuer "https://other.example"`) {
		t.Errorf("discovery naming another issuer: %v", err)
	}

	// An issuer URL with a trailing slash (Auth0's) finds its discovery
	// document and must match its tokens' iss exactly.
	e2 := newOIDCEnv(t, auth.OIDCOptions{}, k.rsa)
	e2.idp.mu.Lock()
	e2.idp.issuer = e2.idp.srv.URL + "/"
	e2.idp.mu.Unlock()
	m, _ := auth.ParseScopeMap([]string{"ml-readers=read"})
	o, err := auth.NewOIDC(auth.OIDCOptions{Issuer: e2.idp.srv.URL + "/", Audience: testAudience, ScopeMap: m})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, k.rsa, claims(e2.idp.srv.URL+"/", time.Now(), []string{"ml-readers"}))
	if _, err := o.Authenticate(context.Background(), tok); err != nil {
		t.Errorf("issuer with a trailing slash: %v", err)
	}
}

func TestNewOIDC(t *testing.T) {
	m, _ := auth.ParseScopeMap([]string{"g=read"})
	tests := []struct {
		name string
		opts auth.OIDCOptions
		want string // in the error; "" for none
	}{
		{"https", auth.OIDCOptions{Issuer: "https://keycloak.example/realms/ml", Audience: "ebb", ScopeMap: m}, ""},
		{"http on loopback", auth.OIDCOptions{Issuer: "http://127.0.0.1:5556/dex", Audience: "ebb", ScopeMap: m}, ""},
		{"http elsewhere", auth.OIDCOptions{Issuer: "http://dex.example/dex", Audience: "ebb", ScopeMap: m}, "use https"},
		{"relative", auth.OIDCOptions{Issuer: "dex.example", Audience: "ebb", ScopeMap: m}, "not an absolute URL"},
		{"no issuer", auth.OIDCOptions{Audience: "ebb", ScopeMap: m}, "no issuer"},
		{"no audience", auth.OIDCOptions{Issuer: "https://dex.example", ScopeMap: m}, "no audience"},
		{"no scope map", auth.OIDCOptions{Issuer: "https://dex.example", Audience: "ebb"}, "no scope map"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := auth.NewOIDC(tt.opts)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("NewOIDC = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseScopeMap(t *testing.T) {
	tests := []struct {
		name    string
		entries []string
		want    auth.ScopeMap
		err     string
	}{
		{"one string", []string{testScopeMap}, auth.ScopeMap{
			"ml-admins": {"admin"}, "ml-deployers": {"deploy", "models:write"},
			"team-fraud": {"predict:fraud-*"}, "ml-readers": {"read"},
		}, ""},
		{"repeated flags add up", []string{"a=read", "a=deploy+read", "/org/ml=exec"}, auth.ScopeMap{"a": {"read", "deploy"}, "/org/ml": {"exec"}}, ""},
		{"any token", []string{"*=predict:public-*"}, auth.ScopeMap{"*": {"predict:public-*"}}, ""},
		{"value with =", []string{"cn=ml-admins=admin"}, auth.ScopeMap{"cn=ml-admins": {"admin"}}, ""},
		{"spaces and empty entries", []string{" a = read , ,"}, auth.ScopeMap{"a": {"read"}}, ""},
		{"no scope", []string{"a="}, nil, "unknown scope"},
		{"bad scope", []string{"a=write"}, nil, `unknown scope "write"`},
		{"bad glob", []string{"a=predict:["}, nil, "bad glob"},
		{"no value", []string{"=admin"}, nil, "names no group"},
		{"no =", []string{"admins"}, nil, "want VALUE=SCOPE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := auth.ParseScopeMap(tt.entries)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("ParseScopeMap = %v, %v; want error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			again, err := auth.ParseScopeMap([]string{got.String()})
			if err != nil || !cmp.Equal(got, again) {
				t.Errorf("String %q parses to %v, %v; want the same map", got.String(), again, err)
			}
		})
	}
	m, _ := auth.ParseScopeMap([]string{"*=predict:public", "a=read", "b=read+deploy"})
	if diff := cmp.Diff([]string{"deploy", "predict:public", "read"}, m.Scopes([]string{"b", "a", "zz"})); diff != "" {
		t.Errorf("Scopes (-want +got):\n%s", diff)
	}
}

// TestOIDCScopesClaim covers where Keycloak, Dex, Auth0 and plain OAuth
// servers put groups and roles.
// TestOIDCTenant: a token's tenant is its tenant claim (a nested one with
// a dotted TenantClaim), or its subject without one.
func TestOIDCTenant(t *testing.T) {
	k := testKeys()
	tests := []struct {
		name  string
		claim string
		mods  []func(map[string]any)
		want  string
	}{
		{"tenant claim", "", []func(map[string]any){set("tenant", "acme")}, "acme"},
		{"no tenant claim: the subject", "", nil, "0b5e-user"},
		{"empty tenant claim: the subject", "", []func(map[string]any){set("tenant", "")}, "0b5e-user"},
		{"non-string tenant claim: the subject", "", []func(map[string]any){set("tenant", 7)}, "0b5e-user"},
		{"nested claim", "org.id", []func(map[string]any){set("org", map[string]any{"id": "globex"})}, "globex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newOIDCEnv(t, auth.OIDCOptions{TenantClaim: tt.claim}, k.rsa)
			p, err := e.o.Authenticate(context.Background(), sign(t, k.rsa, e.claims([]string{"ml-readers"}, tt.mods...)))
			if err != nil {
				t.Fatal(err)
			}
			if p.Tenant != tt.want {
				t.Errorf("tenant %q, want %q", p.Tenant, tt.want)
			}
		})
	}
}

func TestOIDCScopesClaim(t *testing.T) {
	k := testKeys()
	tests := []struct {
		name   string
		claim  string
		mod    func(map[string]any)
		want   []string
		status int
	}{
		{"dex groups", "groups", set("groups", []string{"ml-readers"}), []string{"read"}, 0},
		{"keycloak realm roles", "realm_access.roles", set("realm_access", map[string]any{"roles": []string{"offline_access", "ml-admins"}}), []string{"admin"}, 0},
		{"keycloak, claim missing", "realm_access.roles", set("realm_access", map[string]any{}), nil, 403},
		{"keycloak, path through a string", "realm_access.roles", set("realm_access", "x"), nil, 403},
		{"auth0 namespaced claim", "https://ebb.example/groups", set("https://ebb.example/groups", []string{"team-fraud"}), []string{"predict:fraud-*"}, 0},
		{"oauth scope string", "scope", set("scope", "openid ml-readers profile"), []string{"read"}, 0},
		{"list of numbers", "groups", set("groups", []any{1, 2}), nil, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newOIDCEnv(t, auth.OIDCOptions{ScopesClaim: tt.claim}, k.ec)
			p, err := e.o.Authenticate(context.Background(), sign(t, k.ec, e.claims(nil, del("groups"), tt.mod)))
			if status, _, msg := auth.Status(err); err != nil && status != tt.status || err == nil && tt.status != 0 {
				t.Fatalf("Authenticate = %v (%d %s), want status %d", err, status, msg, tt.status)
			}
			if diff := cmp.Diff(tt.want, p.Scopes); diff != "" {
				t.Errorf("scopes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestByFormat(t *testing.T) {
	ctx := context.Background()
	k := testKeys()
	e := newOIDCEnv(t, auth.OIDCOptions{}, k.rsa)
	st := &memTokens{m: map[string]auth.Token{}}
	ebbTok := newTok(t, st, time.Time{}, "predict:iris")
	jwtTok := sign(t, k.rsa, e.claims([]string{"ml-readers"}))

	both := auth.ByFormat{Token: auth.NewVerifier(st, 0, nil), JWT: e.o}
	tokensOnly := auth.ByFormat{Token: auth.NewVerifier(st, 0, nil)}
	tests := []struct {
		name    string
		a       auth.Authenticator
		token   string
		scopes  []string
		wantMsg string
	}{
		{"ebb token", both, ebbTok, []string{"predict:iris"}, ""},
		{"jwt", both, jwtTok, []string{"read"}, ""},
		{"garbage goes to the token verifier", both, "hunter2", nil, "not an ebb token"},
		{"jwt without oidc", tokensOnly, jwtTok, nil, "accepts no OIDC tokens"},
		{"ebb token without a verifier", auth.ByFormat{JWT: e.o}, ebbTok, nil, "accepts only OIDC tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.a.Authenticate(ctx, tt.token)
			if tt.wantMsg != "" {
				if !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("Authenticate = %v, want ErrUnauthenticated with %q", err, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.scopes, p.Scopes); diff != "" {
				t.Errorf("scopes (-want +got):\n%s", diff)
			}
		})
	}
	for tok, want := range map[string]bool{"a.b.c": true, "ebb_a.b.c": false, ebbTok: false, "a.b": false, "a.b.c.d.e": false} {
		if got := auth.IsJWT(tok); got != want {
			t.Errorf("IsJWT(%q) = %v, want %v", tok, got, want)
		}
	}
}
