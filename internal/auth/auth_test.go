package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/store"
)

func TestAuthorize(t *testing.T) {
	tests := []struct {
		scopes   []string
		action   auth.Action
		resource string
		allow    bool
		missing  string
	}{
		{[]string{"admin"}, auth.Admin, "", true, ""},
		{[]string{"admin"}, auth.Exec, "", true, ""},
		{[]string{"admin"}, auth.Predict, "iris", true, ""},
		{[]string{"read"}, auth.Read, "", true, ""},
		{[]string{"read"}, auth.Deploy, "", false, "deploy"},
		{[]string{"read"}, auth.Predict, "iris", false, "predict:iris"},
		{[]string{"deploy"}, auth.Deploy, "", true, ""},
		{[]string{"deploy"}, auth.Read, "", true, ""},
		{[]string{"deploy"}, auth.Exec, "", false, "exec"},
		{[]string{"deploy"}, auth.ModelsWrite, "", false, "models:write"},
		{[]string{"deploy"}, auth.Admin, "", false, "admin"},
		{[]string{"deploy", "exec"}, auth.Exec, "", true, ""},
		{[]string{"exec"}, auth.Deploy, "", false, "deploy"},
		{[]string{"models:write"}, auth.ModelsWrite, "", true, ""},
		{[]string{"models:write"}, auth.Read, "", true, ""},
		{[]string{"models:write"}, auth.Deploy, "", false, "deploy"},
		{[]string{"predict:iris"}, auth.Predict, "iris", true, ""},
		{[]string{"predict:iris"}, auth.Predict, "iris2", false, "predict:iris2"},
		{[]string{"predict:fraud-*"}, auth.Predict, "fraud-eu", true, ""},
		{[]string{"predict:iri?"}, auth.Predict, "iris", true, ""},
		{[]string{"predict:[ik]ris"}, auth.Predict, "kris", true, ""},
		{[]string{"predict:[ik]ris"}, auth.Predict, "bris", false, "predict:bris"},
		{[]string{"predict:iris"}, auth.Predict, "Iris", false, "predict:Iris"},
		{[]string{"predict:fraud-*"}, auth.Predict, "iris", false, "predict:iris"},
		{[]string{"predict:*"}, auth.Predict, "anything", true, ""},
		{[]string{"predict:*"}, auth.Read, "", false, "read"},
		{[]string{"predict:*"}, auth.Deploy, "", false, "deploy"},
		{[]string{"predict:*"}, auth.ModelsWrite, "", false, "models:write"},
		{[]string{"predict:*"}, auth.Exec, "", false, "exec"},
		{[]string{"admin"}, auth.Gateway, "", true, ""},
		{[]string{"gateway"}, auth.Gateway, "", true, ""},
		{[]string{"gateway"}, auth.Read, "", false, "read"},
		{[]string{"gateway"}, auth.Admin, "", false, "admin"},
		{[]string{"gateway"}, auth.Predict, "iris", false, "predict:iris"},
		{[]string{"predict:*", "deploy"}, auth.Gateway, "", false, "gateway"},
		{nil, auth.Read, "", false, "read"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/%d/%s", tt.scopes, tt.action, tt.resource), func(t *testing.T) {
			d := auth.Authorize(tt.scopes, tt.action, tt.resource)
			if d.Allow != tt.allow || d.Missing != tt.missing || d.Reason == "" {
				t.Errorf("Authorize = %+v, want allow %v missing %q and a reason", d, tt.allow, tt.missing)
			}
		})
	}
}

func TestValidateScope(t *testing.T) {
	for s, ok := range map[string]bool{
		"admin": true, "read": true, "deploy": true, "models:write": true, "exec": true, "gateway": true,
		"predict:iris": true, "predict:*": true, "predict:fraud-*": true,
		"predict:": false, "predict:[": false, "write": false, "": false, "Admin": false,
	} {
		if err := auth.ValidateScope(s); (err == nil) != ok {
			t.Errorf("ValidateScope(%q) = %v, want ok %v", s, err, ok)
		}
	}
}

func TestTokenFormat(t *testing.T) {
	secret, tok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	id, sec, ok := auth.ParseToken(secret)
	if !ok || id != tok.ID || auth.HashSecret(sec) != tok.Hash {
		t.Fatalf("ParseToken(%q) = %q, %q, %v; want the id %q and a secret hashing to the record's hash", secret, id, sec, ok, tok.ID)
	}
	if _, again, _ := auth.NewToken(); again.ID == tok.ID {
		t.Error("two tokens got the same id")
	}
	for _, bad := range []string{"", "ebb_", "ebb_x_y", "xyz_" + id + "_" + sec, "ebb_" + id + sec, secret + "0"} {
		if _, _, ok := auth.ParseToken(bad); ok {
			t.Errorf("ParseToken(%q) ok; want refused", bad)
		}
	}
}

// memTokens is an auth.TokenStore in memory that counts reads.
type memTokens struct {
	mu    sync.Mutex
	m     map[string]auth.Token
	reads int
	err   error
}

func (s *memTokens) CreateToken(_ context.Context, t auth.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[t.ID] = t
	return nil
}

func (s *memTokens) GetToken(_ context.Context, id string) (auth.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if s.err != nil {
		return auth.Token{}, s.err
	}
	t, ok := s.m[id]
	if !ok {
		return auth.Token{}, store.ErrNotFound
	}
	return t, nil
}

func (s *memTokens) ListTokens(context.Context) ([]auth.Token, error) { return nil, nil }

func (s *memTokens) DeleteToken(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}

func newTok(t *testing.T, st *memTokens, expires time.Time, scopes ...string) string {
	t.Helper()
	secret, tok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tok.Name, tok.Scopes, tok.ExpiresAt = "t", scopes, expires
	st.CreateToken(context.Background(), tok)
	return secret
}

func TestVerifier(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	st := &memTokens{m: map[string]auth.Token{}}
	v := auth.NewVerifier(st, 10*time.Second, func() time.Time { return now })
	good := newTok(t, st, time.Time{}, "read")
	expiring := newTok(t, st, now.Add(30*time.Second), "read")

	p, err := v.Authenticate(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"read"}, p.Scopes); diff != "" || p.TokenID == "" {
		t.Errorf("principal %+v (-want +got scopes):\n%s", p, diff)
	}
	for range 100 {
		v.Authenticate(ctx, good)
	}
	if st.reads != 1 {
		t.Errorf("101 authentications read the store %d times; want 1 (cached)", st.reads)
	}

	id, sec, _ := auth.ParseToken(good)
	wrong := "ebb_" + id + "_" + string(rune(sec[0]^1)) + sec[1:]
	for name, tok := range map[string]string{"wrong secret": wrong, "garbage": "hunter2", "unknown": newTokNotStored(t)} {
		if _, err := v.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: Authenticate = %v, want ErrUnauthenticated", name, err)
		}
	}

	// Expiry is exact, even while cached.
	if _, err := v.Authenticate(ctx, expiring); err != nil {
		t.Fatal(err)
	}
	now = now.Add(31 * time.Second)
	if _, err := v.Authenticate(ctx, expiring); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("expired token: Authenticate = %v, want ErrUnauthenticated", err)
	}

	// Revocation: at once after Forget, else within the TTL.
	if _, err := v.Authenticate(ctx, good); err != nil {
		t.Fatal(err)
	}
	st.DeleteToken(ctx, id)
	if _, err := v.Authenticate(ctx, good); err != nil {
		t.Errorf("revoked token within the cache TTL: %v; want still cached", err)
	}
	v.Forget(id)
	if _, err := v.Authenticate(ctx, good); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("revoked and forgotten token: Authenticate = %v, want ErrUnauthenticated", err)
	}

	// A store outage is not "unauthenticated".
	st.err = fmt.Errorf("db down: %w", store.ErrUnavailable)
	if _, err := v.Authenticate(ctx, newTok(t, st, time.Time{}, "read")); !errors.Is(err, store.ErrUnavailable) || errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("store down: Authenticate = %v, want store.ErrUnavailable", err)
	}
}

func newTokNotStored(t *testing.T) string {
	s, _, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer abc": "abc", "Basic abc": "", "Bearer ": "", "abc": ""} {
		got, ok := auth.BearerToken(h)
		if got != want || ok != (want != "") {
			t.Errorf("BearerToken(%q) = %q, %v; want %q", h, got, ok, want)
		}
	}
}

func TestHosts(t *testing.T) {
	tests := []struct {
		name         string
		bound        string
		extra        []string
		host, origin string
		want         int
	}{
		{"loopback", "127.0.0.1:8080", nil, "127.0.0.1:8080", "", 200},
		{"loopback localhost", "127.0.0.1:8080", nil, "localhost:8080", "", 200},
		{"loopback ipv6", "127.0.0.1:8080", nil, "[::1]:8080", "", 200},
		{"dns rebinding", "127.0.0.1:8080", nil, "evil.example:8080", "", 403},
		{"other port", "127.0.0.1:8080", nil, "127.0.0.1:9090", "", 403},
		{"allowed name", "127.0.0.1:8080", []string{"ebb.internal"}, "ebb.internal:8080", "", 200},
		{"same origin", "127.0.0.1:8080", nil, "127.0.0.1:8080", "http://127.0.0.1:8080", 200},
		{"localhost origin", "127.0.0.1:8080", nil, "127.0.0.1:8080", "http://localhost:8080", 200},
		{"cross-site origin", "127.0.0.1:8080", nil, "127.0.0.1:8080", "https://evil.example", 403},
		{"null origin", "127.0.0.1:8080", nil, "127.0.0.1:8080", "null", 403},
		{"all interfaces, any host", "0.0.0.0:8080", nil, "ebb.example.com:8080", "", 200},
		{"all interfaces, cross-site", "0.0.0.0:8080", nil, "ebb.example.com:8080", "https://evil.example", 403},
		{"all interfaces, same origin", "0.0.0.0:8080", nil, "ebb.example.com:8080", "https://ebb.example.com:8080", 200},
		{"all interfaces, allowed list", "0.0.0.0:8080", []string{"ebb.example.com"}, "10.0.0.5:8080", "", 403},
		{"specific address", "10.0.0.5:8080", nil, "10.0.0.5:8080", "", 200},
		{"specific address, other name", "10.0.0.5:8080", nil, "evil.example:8080", "", 403},
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/v1/deployments", nil)
			r.Host = tt.host
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			w := httptest.NewRecorder()
			auth.NewHosts(tt.bound, tt.extra).Handler(ok).ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("Host %s Origin %q = %d %s, want %d", tt.host, tt.origin, w.Code, w.Body, tt.want)
			}
		})
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:0": true, "[::1]:80": true, "127.0.0.2:1": true,
		":8080": false, "0.0.0.0:8080": false, "10.0.0.5:8080": false, "ebb.example.com:80": false,
	} {
		if got := auth.IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestTokenTenant: a token's requests count against its tenant, or its
// name without one, and the verifier's principal carries it.
func TestTokenTenant(t *testing.T) {
	for _, tt := range []struct {
		tok  auth.Token
		want string
	}{
		{auth.Token{Name: "ci"}, "ci"},
		{auth.Token{Name: "acme-prod", Tenant: "acme"}, "acme"},
		{auth.Token{ID: "0a1b", Name: "admin (ebb operator)"}, "token-0a1b"},
		{auth.Token{ID: "0a1b"}, "token-0a1b"},
	} {
		if got := tt.tok.TenantOf(); got != tt.want {
			t.Errorf("%+v.TenantOf() = %q, want %q", tt.tok, got, tt.want)
		}
	}
	for name, ok := range map[string]bool{"acme": true, "team/fraud@eu": true, "": false, "a b": false, "é": false, strings.Repeat("x", auth.MaxTenantLen+1): false} {
		if err := auth.ValidateTenant(name); (err == nil) != ok {
			t.Errorf("ValidateTenant(%q) = %v, want ok=%v", name, err, ok)
		}
	}

	st := &memTokens{m: map[string]auth.Token{}}
	v := auth.NewVerifier(st, 10*time.Second, time.Now)
	secret, tok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tok.Name, tok.Tenant, tok.Scopes = "acme-prod", "acme", []string{"read"}
	st.CreateToken(context.Background(), tok)
	p, err := v.Authenticate(context.Background(), secret)
	if err != nil {
		t.Fatal(err)
	}
	if p.Tenant != "acme" {
		t.Errorf("principal tenant %q, want acme", p.Tenant)
	}
}
