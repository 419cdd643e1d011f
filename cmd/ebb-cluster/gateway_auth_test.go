package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/auth"
)

// TestGatewayTokenRotation checks that a gateway's calls to the operator
// carry the token its --token-file holds now: a rewritten file is picked
// up by reload, an empty or vanished one keeps the token in use, and the
// caller's own Authorization is replaced.
func TestGatewayTokenRotation(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	op := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
	}))
	defer op.Close()
	file := filepath.Join(t.TempDir(), "token")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	write("ebb_one_secret\n")
	t.Setenv(gatewayTokenEnv, "ebb_env_ignored") // the file wins
	tok, err := newGatewayToken(file, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: tokenTransport{base: http.DefaultTransport, token: tok.get}}
	call := func() {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, op.URL, nil)
		req.Header.Set("Authorization", "Bearer stale") // as auth.Remote sets its own
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	steps := []struct {
		do          func()
		wantChanged bool
		wantErr     bool
	}{
		{func() {}, false, false},
		{func() { write("ebb_two_secret") }, true, false},
		{func() { write("  \n") }, false, true},   // being rewritten: keep the token
		{func() { os.Remove(file) }, false, true}, // gone: keep the token
		{func() { write("ebb_three_secret") }, true, false},
	}
	for i, s := range steps {
		s.do()
		changed, err := tok.reload()
		if changed != s.wantChanged || (err != nil) != s.wantErr {
			t.Errorf("step %d: reload = %v, %v; want changed %v, error %v", i, changed, err, s.wantChanged, s.wantErr)
		}
		call()
	}
	want := []string{"Bearer ebb_one_secret", "Bearer ebb_two_secret", "Bearer ebb_two_secret", "Bearer ebb_two_secret", "Bearer ebb_three_secret"}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("tokens the operator saw (-want +got):\n%s", diff)
	}

	// Without a file: $EBB_GATEWAY_TOKEN, fixed.
	tok, err = newGatewayToken("", nil)
	if err != nil || tok.get() != "ebb_env_ignored" {
		t.Errorf("newGatewayToken without a file = %q, %v; want the environment's", tok.get(), err)
	}
	for _, content := range []string{"", " \n"} {
		write(content)
		if _, err := newGatewayToken(file, nil); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("newGatewayToken with file %q = %v, want an error saying it is empty", content, err)
		}
	}
	if _, err := newGatewayToken(filepath.Join(t.TempDir(), "none"), nil); err == nil {
		t.Error("newGatewayToken with a missing file: no error")
	}
}

func TestGatewayAuthModes(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	oidc := auth.OIDCFlags{Issuer: "http://127.0.0.1:1", Audience: "ebb", ScopesClaim: "groups", ScopeMap: []string{"a=predict:*"}}
	tests := []struct {
		name, mode, token string
		oidc              auth.OIDCFlags
		wantNil, wantJWT  bool
		wantErr           string
	}{
		{name: "off", mode: "off", wantNil: true},
		{name: "off with OIDC", mode: "off", oidc: oidc, wantErr: "--auth=off"},
		{name: "on without a token", mode: "on", wantErr: "no token"},
		{name: "on", mode: "on", token: "ebb_a_b"},
		{name: "on with OIDC", mode: "on", token: "ebb_a_b", oidc: oidc, wantJWT: true},
		{name: "bad mode", mode: "maybe", wantErr: "invalid --auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, jwt, err := gatewayAuth(context.Background(), tt.mode, "http://op:8090", http.DefaultClient, tt.token, tt.oidc, log)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("gatewayAuth = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (a == nil) != tt.wantNil || (jwt != nil) != tt.wantJWT {
				t.Errorf("gatewayAuth = %v, %v; want nil %v, OIDC %v", a, jwt, tt.wantNil, tt.wantJWT)
			}
		})
	}
}
