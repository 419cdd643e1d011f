package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ebb-ml/ebb/internal/auth"
)

// idp is a local OIDC provider: a real HTTP server on loopback serving a
// discovery document and a JWKS, counting fetches.
type idp struct {
	srv *httptest.Server

	mu        sync.Mutex
	keys      []jose.JSONWebKey // published
	issuer    string            // the discovery document's issuer; default srv.URL
	down      bool              // answer 503
	discovery int               // fetches of the discovery document
	jwks      int               // fetches of the JWKS
}

func newIDP(t *testing.T, keys ...signingKey) *idp {
	t.Helper()
	p := &idp{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.discovery++
		if p.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		iss := p.issuer
		if iss == "" {
			iss = p.srv.URL
		}
		json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": p.srv.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.jwks++
		if p.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: p.keys})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	p.publish(keys...)
	return p
}

// publish replaces the published keys.
func (p *idp) publish(keys ...signingKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = nil
	for _, k := range keys {
		p.keys = append(p.keys, k.public())
	}
}

func (p *idp) fetches() (discovery, jwks int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.discovery, p.jwks
}

func (p *idp) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// signingKey is a private key with its kid and algorithm.
type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv any
}

func (k signingKey) public() jose.JSONWebKey {
	pub := jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
	return pub.Public()
}

// withKid returns k under another kid (a key the issuer never published
// under that name, or a forger claiming a published kid).
func (k signingKey) withKid(kid string) signingKey { k.kid = kid; return k }

var testKeys = sync.OnceValue(func() (keys struct{ rsa, rsaOther, ec, ec2 signingKey }) {
	gen := func(bits int) *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		return k
	}
	genEC := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	}
	keys.rsa = signingKey{"rsa1", jose.RS256, gen(2048)}
	keys.rsaOther = signingKey{"rsa-other", jose.RS256, gen(2048)}
	keys.ec = signingKey{"ec1", jose.ES256, genEC()}
	keys.ec2 = signingKey{"ec2", jose.ES256, genEC()}
	return keys
})

// sign returns a compact JWT of claims signed by k, with k's kid.
func sign(t testing.TB, k signingKey, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned returns a JWT with header alg none and claims.
func unsigned(t testing.TB, header, claims map[string]any, sig string) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "." + sig
}

const (
	testAudience = "ebb"
	testScopeMap = "ml-admins=admin,ml-deployers=deploy+models:write,team-fraud=predict:fraud-*,ml-readers=read"
)

// claims returns valid claims from iss at now with groups, changed by mods.
func claims(iss string, now time.Time, groups []string, mods ...func(map[string]any)) map[string]any {
	c := map[string]any{
		"iss": iss, "aud": testAudience, "sub": "0b5e-user", "preferred_username": "alice",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "groups": groups,
	}
	for _, m := range mods {
		m(c)
	}
	return c
}

func set(k string, v any) func(map[string]any) { return func(c map[string]any) { c[k] = v } }

func del(k string) func(map[string]any) { return func(c map[string]any) { delete(c, k) } }

// oidcEnv is an OIDC authenticator against a local idp, on a clock the
// test moves.
type oidcEnv struct {
	idp *idp
	o   *auth.OIDC

	mu  sync.Mutex
	now time.Time
}

func newOIDCEnv(t *testing.T, opts auth.OIDCOptions, keys ...signingKey) *oidcEnv {
	t.Helper()
	e := &oidcEnv{idp: newIDP(t, keys...), now: time.Now().Truncate(time.Second)}
	if opts.Issuer == "" {
		opts.Issuer = e.idp.srv.URL
	}
	if opts.Audience == "" {
		opts.Audience = testAudience
	}
	if opts.ScopeMap == nil {
		m, err := auth.ParseScopeMap([]string{testScopeMap})
		if err != nil {
			t.Fatal(err)
		}
		opts.ScopeMap = m
	}
	opts.Now = e.clock
	o, err := auth.NewOIDC(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.o = o
	return e
}

func (e *oidcEnv) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *oidcEnv) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
}

func (e *oidcEnv) claims(groups []string, mods ...func(map[string]any)) map[string]any {
	return claims(e.idp.srv.URL, e.clock(), groups, mods...)
}
