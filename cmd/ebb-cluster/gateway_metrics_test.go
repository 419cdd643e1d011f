package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/store"
)

// memTokens is a token store in memory, for a Verifier.
type memTokens map[string]auth.Token

func (m memTokens) GetToken(_ context.Context, id string) (auth.Token, error) {
	t, ok := m[id]
	if !ok {
		return auth.Token{}, store.ErrNotFound
	}
	return t, nil
}

// add creates a token with scopes and returns its secret.
func (m memTokens) add(t *testing.T, scopes ...string) string {
	t.Helper()
	secret, tok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tok.Name, tok.Scopes = strings.Join(scopes, "+"), scopes
	m[tok.ID] = tok
	return secret
}

// TestGatewayMetricsAuth checks who may read a gateway's /metrics, through
// the path a gateway takes: tokens verified by the operator (a fake one
// serving the real verification endpoint) with the gateway's own token.
// With --metrics-auth=token (the default) it needs scope read or one that
// includes it; open, or with --auth=off, anyone may read it.
func TestGatewayMetricsAuth(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tokens := memTokens{}
	gwToken := tokens.add(t, auth.ScopeGateway)
	secrets := map[string]string{
		"read":         tokens.add(t, auth.ScopeRead),
		"admin":        tokens.add(t, auth.ScopeAdmin),
		"deploy":       tokens.add(t, auth.ScopeDeploy),
		"models:write": tokens.add(t, auth.ScopeModelsWrite),
		"predict:*":    tokens.add(t, "predict:*"),
		"gateway":      gwToken,
		"exec":         tokens.add(t, auth.ScopeExec),
		"unknown":      "ebb_0123456789abcdef_00112233445566778899aabbccddeeff",
		"malformed":    "not-a-token",
		"none":         "",
	}
	v := auth.NewVerifier(tokens, 0, nil)
	mux := http.NewServeMux()
	mux.Handle(operator.TokenVerifyPath, auth.Require(v, auth.Gateway, auth.VerifyHandler(v, nil)))
	op := httptest.NewServer(mux)
	defer op.Close()
	hc := &http.Client{Transport: tokenTransport{base: http.DefaultTransport, token: func() string { return gwToken }}}
	infAuth, _, err := gatewayAuth(context.Background(), "on", op.URL, hc, gwToken, auth.OIDCFlags{}, log)
	if err != nil {
		t.Fatal(err)
	}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ebb_metric 1\n") })

	tests := []struct {
		name   string
		mode   string
		authn  auth.Authenticator
		status map[string]int // by token; missing: 200
	}{
		{name: "token (the default)", mode: metricsAuthToken, authn: infAuth, status: map[string]int{
			"predict:*": 403, "gateway": 403, "exec": 403, "unknown": 401, "malformed": 401, "none": 401,
		}},
		{name: "open", mode: metricsAuthOpen, authn: infAuth},
		{name: "auth off", mode: metricsAuthToken, authn: nil},
		{name: "auth off and open", mode: metricsAuthOpen, authn: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := metricsHandler(tt.mode, tt.authn, metrics, log)
			if err != nil {
				t.Fatal(err)
			}
			for who, secret := range secrets {
				want := http.StatusOK
				if s, ok := tt.status[who]; ok {
					want = s
				}
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				if secret != "" {
					req.Header.Set("Authorization", "Bearer "+secret)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				body := rec.Body.String()
				if rec.Code != want {
					t.Errorf("token %s: HTTP %d %s; want %d", who, rec.Code, body, want)
					continue
				}
				switch {
				case want == http.StatusOK && body != "ebb_metric 1\n":
					t.Errorf("token %s: body %q, want the metrics", who, body)
				case want != http.StatusOK && strings.Contains(body, "ebb_metric"):
					t.Errorf("token %s: refused with %d but the metrics leaked: %q", who, want, body)
				case want == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "":
					t.Errorf("token %s: 401 without WWW-Authenticate", who)
				case want == http.StatusForbidden && !strings.Contains(body, `scope \"read\"`):
					t.Errorf("token %s: 403 %s does not name the scope read", who, body)
				}
			}
		})
	}
}

// TestGatewayMetricsAuthFlag checks --metrics-auth's help and that a bad
// value stops the gateway before it looks for a cluster.
func TestGatewayMetricsAuthFlag(t *testing.T) {
	out, err := run("gateway", "--help")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "--metrics-auth string") || !strings.Contains(out, `(default "token")`) {
		t.Errorf("ebb-cluster gateway --help lacks --metrics-auth with default token:\n%s", out)
	}
	for _, tt := range []struct {
		value, wantErr string
	}{
		{"maybe", `invalid --metrics-auth "maybe": use token`},
		{"", `invalid --metrics-auth ""`},
		{"token", "no Kubernetes cluster to talk to"}, // valid: it goes on to the cluster
		{"open", "no Kubernetes cluster to talk to"},
	} {
		_, err := run("gateway", "--metrics-auth="+tt.value, "--kubeconfig="+t.TempDir()+"/none")
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ebb-cluster gateway --metrics-auth=%s = %v, want %q", tt.value, err, tt.wantErr)
		}
	}
}
