package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ebb-ml/ebb/internal/auth"
)

// The fuzz target's issuer: fixed, so that the seed corpus in
// testdata/fuzz/FuzzOIDCToken holds tokens that are valid at fuzzNow.
const fuzzIssuer = "https://issuer.test"

var fuzzNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// fuzzKey is the issuer's Ed25519 key, derived from a fixed seed so the
// seed corpus's signatures stay valid. A test key; it signs nothing else.
func fuzzKey() signingKey {
	seed := sha256.Sum256([]byte("ebb auth fuzz issuer key"))
	return signingKey{kid: "fuzz1", alg: jose.EdDSA, priv: ed25519.NewKeyFromSeed(seed[:])}
}

// fuzzClaims are valid claims at fuzzNow.
func fuzzClaims(groups ...string) map[string]any {
	return map[string]any{
		"iss": fuzzIssuer, "aud": testAudience, "sub": "u1", "groups": groups,
		"iat": fuzzNow.Unix(), "exp": fuzzNow.Add(time.Hour).Unix(),
	}
}

// handlerTransport serves HTTP requests with a handler in this process,
// so that the fuzz target's issuer needs no network.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	return w.Result(), nil
}

func newFuzzOIDC(f testing.TB) *auth.OIDC {
	pub := fuzzKey().public()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": fuzzIssuer, "jwks_uri": fuzzIssuer + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	})
	m, err := auth.ParseScopeMap([]string{testScopeMap})
	if err != nil {
		f.Fatal(err)
	}
	o, err := auth.NewOIDC(auth.OIDCOptions{
		Issuer: fuzzIssuer, Audience: testAudience, ScopeMap: m,
		HTTPClient: &http.Client{Transport: handlerTransport{mux}},
		Now:        func() time.Time { return fuzzNow },
	})
	if err != nil {
		f.Fatal(err)
	}
	return o
}

// FuzzOIDCToken feeds arbitrary bearer tokens to the OIDC authenticator:
// it must not panic, must refuse with 401 or 403 (never another error),
// and must accept only tokens whose signature verifies with the issuer's
// key under an asymmetric algorithm: nothing unsigned, HMAC-signed or
// signed by another key gets in.
func FuzzOIDCToken(f *testing.F) {
	o := newFuzzOIDC(f)
	pub := fuzzKey().public()
	f.Add("")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		p, err := o.Authenticate(context.Background(), token)
		if err != nil {
			if !errors.Is(err, auth.ErrUnauthenticated) && !errors.Is(err, auth.ErrForbidden) {
				t.Fatalf("Authenticate(%q) = %v; want 401 or 403", token, err)
			}
			if p.Scopes != nil {
				t.Fatalf("refused token %q has scopes %v", token, p.Scopes)
			}
			return
		}
		jws, perr := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.EdDSA})
		if perr != nil {
			t.Fatalf("accepted %q, which is not a compact JWS signed with EdDSA: %v", token, perr)
		}
		if _, verr := jws.Verify(pub.Key); verr != nil {
			t.Fatalf("accepted %q, whose signature does not verify with the issuer's key: %v", token, verr)
		}
		if len(p.Scopes) == 0 {
			t.Fatalf("accepted %q with no scopes", token)
		}
	})
}

// TestFuzzOIDCCorpus keeps the seed corpus meaningful: its valid tokens
// are accepted at fuzzNow, so the fuzzer mutates tokens that get in.
func TestFuzzOIDCCorpus(t *testing.T) {
	o := newFuzzOIDC(t)
	for name, wantOK := range map[string]bool{"valid": true, "valid_admin": true, "no_kid": true, "alg_none": false, "tampered_payload": false, "hs256_public_key": false} {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzOIDCToken", name))
		if err != nil {
			t.Fatal(err)
		}
		_, quoted, _ := strings.Cut(strings.TrimSpace(string(b)), "\nstring(")
		tok, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := o.Authenticate(context.Background(), tok); (err == nil) != wantOK {
			t.Errorf("seed %s: Authenticate = %v; want accepted %v", name, err, wantOK)
		}
	}
}
