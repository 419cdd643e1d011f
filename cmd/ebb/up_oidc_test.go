package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// TestUpOIDC checks the OIDC flags of ebb up: their errors, and that with
// an issuer set /metrics on a non-loopback address takes a JWT whose
// group maps to read beside the admin token.
func TestUpOIDC(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var issuer string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": issuer, "jwks_uri": issuer + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	idp := httptest.NewServer(mux)
	defer idp.Close()
	issuer = idp.URL
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jwtFor := func(groups ...string) string {
		s, err := jwt.Signed(signer).Claims(map[string]any{"iss": issuer, "aud": "ebb", "sub": "u", "groups": groups, "exp": time.Now().Add(time.Hour).Unix()}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	tests := []struct {
		name    string
		mode    string
		oidc    auth.OIDCFlags
		wantErr string
	}{
		{"on", "on", auth.OIDCFlags{Issuer: issuer, Audience: "ebb", ScopesClaim: "groups", ScopeMap: []string{"ml-readers=read,ml-admins=admin"}}, ""},
		{"issuer down at start is a warning", "on", auth.OIDCFlags{Issuer: "http://127.0.0.1:1", Audience: "ebb", ScopeMap: []string{"a=read"}}, ""},
		{"no audience", "on", auth.OIDCFlags{Issuer: issuer, ScopeMap: []string{"a=read"}}, "no audience"},
		{"no scope map", "on", auth.OIDCFlags{Issuer: issuer, Audience: "ebb"}, "no scope map"},
		{"bad scope map", "on", auth.OIDCFlags{Issuer: issuer, Audience: "ebb", ScopeMap: []string{"a=write"}}, `--oidc-scope-map: scope map entry "a=write": unknown scope`},
		{"map without issuer", "on", auth.OIDCFlags{ScopeMap: []string{"a=read"}}, "need --oidc-issuer"},
		{"auth off", "off", auth.OIDCFlags{Issuer: issuer, Audience: "ebb", ScopeMap: []string{"a=read"}}, "--auth=off"},
		{"plain http elsewhere", "on", auth.OIDCFlags{Issuer: "http://dex.example", Audience: "ebb", ScopeMap: []string{"a=read"}}, "use https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := sqlite.Open(context.Background(), ":memory:")
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			o := upOptions{addr: "0.0.0.0:8080", dataDir: dir, authMode: tt.mode, oidc: tt.oidc}
			ua, err := newUpAuth(ctx, o, st, slog.New(slog.DiscardHandler))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("newUpAuth = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.name != "on" {
				return
			}
			admin, err := os.ReadFile(filepath.Join(dir, adminTokenFile))
			if err != nil {
				t.Fatal(err)
			}
			metrics := ua.metrics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			for token, want := range map[string]int{
				jwtFor("ml-readers"):             200,
				jwtFor("ml-admins", "x"):         200,
				strings.TrimSpace(string(admin)): 200,
				jwtFor("staff"):                  403,
				"":                               401,
			} {
				r := httptest.NewRequest("GET", "/metrics", nil)
				if token != "" {
					r.Header.Set("Authorization", "Bearer "+token)
				}
				w := httptest.NewRecorder()
				metrics.ServeHTTP(w, r)
				if w.Code != want {
					t.Errorf("/metrics with %.20s... = %d %s, want %d", token, w.Code, w.Body, want)
				}
			}
		})
	}
}
