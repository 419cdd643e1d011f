package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// newAuthServer serves the admin API as ebb up does, behind tokens, on
// loopback, with the admin token written to dataDir/admin.token.
func newAuthServer(t *testing.T, dataDir string) (url string, st *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	v := auth.NewVerifier(st, 0, nil)
	if created, err := ensureAdminToken(context.Background(), st, v, filepath.Join(dataDir, adminTokenFile)); err != nil || !created {
		t.Fatalf("ensureAdminToken = %v, %v; want a new token", created, err)
	}
	h := home.NewAdminAPI(home.AdminParts{Store: st, Ctl: &cliController{statuses: map[string]serving.Status{}}, Home: api.HomeUp, Version: version, Tokens: st, OnRevoke: v.Forget}, nil)
	srv := httptest.NewServer(api.Authorize(h, v))
	t.Cleanup(srv.Close)
	t.Setenv(serverEnv, "")
	t.Setenv(tokenEnv, "")
	return srv.URL, st
}

// TestTokensCLI creates, lists, uses and revokes a token with the CLI,
// which finds the admin token of a local server in $EBB_DATA_DIR.
func TestTokensCLI(t *testing.T) {
	dataDir := t.TempDir()
	url, _ := newAuthServer(t, dataDir)
	t.Setenv(dataDirEnv, dataDir)
	run := func(args ...string) (string, error) { return runEbb(t, "", append(args, "--server", url)...) }

	out, err := run("tokens", "create", "--scope", "read,predict:fraud-*", "--name", "ci", "-o", "json")
	if err != nil {
		t.Fatalf("tokens create: %v", err)
	}
	var created api.CreatedToken
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("tokens create -o json: %v\n%s", err, out)
	}
	if !strings.HasPrefix(created.Secret, "ebb_"+created.ID+"_") || strings.Join(created.Scopes, " ") != "read predict:fraud-*" {
		t.Fatalf("created %+v; want a secret for its id and scopes read, predict:fraud-*", created)
	}
	out, err = run("tokens", "list")
	if err != nil || !strings.Contains(out, created.ID) || !strings.Contains(out, "ci") || strings.Contains(out, created.Secret) {
		t.Errorf("tokens list = %v\n%s\nwant the token listed without its secret", err, out)
	}

	// --token wins over the admin token found locally: a read token
	// cannot create tokens, and may list deployments.
	if _, err := run("get", "deployments", "--token", created.Secret); err != nil {
		t.Errorf("get deployments with the read token: %v", err)
	}
	if _, err := run("tokens", "create", "--scope", "admin", "--token", created.Secret); err == nil || !strings.Contains(err.Error(), `"admin"`) {
		t.Errorf("tokens create with a read token = %v; want refused, naming scope admin", err)
	}
	t.Setenv(tokenEnv, created.Secret) // $EBB_TOKEN too
	if _, err := run("tokens", "list"); err == nil {
		t.Error("tokens list with $EBB_TOKEN a read token succeeded; want refused")
	}
	t.Setenv(tokenEnv, "")

	if out, err := run("tokens", "revoke", created.ID); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("tokens revoke = %v\n%s", err, out)
	}
	if _, err := run("get", "deployments", "--token", created.Secret); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("get deployments with a revoked token = %v; want refused saying so", err)
	}

	// Without the local admin token, the CLI sends none and is told how
	// to get one.
	t.Setenv(dataDirEnv, t.TempDir())
	if _, err := run("get", "deployments"); err == nil || !strings.Contains(err.Error(), "ebb tokens create") {
		t.Errorf("get deployments without a token = %v; want 401 saying how to get a token", err)
	}
	if _, err := run("tokens", "create", "--scope", "root"); err == nil || !strings.Contains(err.Error(), "unknown scope") {
		t.Errorf("tokens create --scope root = %v; want refused before sending", err)
	}
}

func TestEnsureAdminToken(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v := auth.NewVerifier(st, 0, nil)
	path := filepath.Join(t.TempDir(), adminTokenFile)
	if created, err := ensureAdminToken(ctx, st, v, path); err != nil || !created {
		t.Fatalf("first start: ensureAdminToken = %v, %v; want created", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, mode %v; want 0600", err, fi.Mode())
	}
	first, _ := os.ReadFile(path)
	if created, err := ensureAdminToken(ctx, st, v, path); err != nil || created {
		t.Errorf("second start: ensureAdminToken = %v, %v; want the token kept", created, err)
	}
	id, _, _ := auth.ParseToken(strings.TrimSpace(string(first)))
	if err := st.DeleteToken(ctx, id); err != nil {
		t.Fatal(err)
	}
	v.Forget(id)
	if created, err := ensureAdminToken(ctx, st, v, path); err != nil || !created {
		t.Errorf("after revocation: ensureAdminToken = %v, %v; want a new token", created, err)
	}
	if again, _ := os.ReadFile(path); string(again) == string(first) {
		t.Error("the revoked token was kept in the file")
	}
}

func TestResolveTokenLocal(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, adminTokenFile), []byte("ebb_local\n"), 0o600)
	t.Setenv(dataDirEnv, dir)
	t.Setenv(tokenEnv, "")
	tests := []struct {
		name, flag, env, ctxToken, server string
		want                              string
	}{
		{"flag wins", "ebb_flag", "ebb_env", "ebb_ctx", "http://127.0.0.1:8080", "ebb_flag"},
		{"env next", "", "ebb_env", "ebb_ctx", "http://127.0.0.1:8080", "ebb_env"},
		{"context next", "", "", "ebb_ctx", "http://127.0.0.1:8080", "ebb_ctx"},
		{"local admin token on loopback", "", "", "", "http://127.0.0.1:8080", "ebb_local"},
		{"localhost is loopback", "", "", "", "http://localhost:8080", "ebb_local"},
		{"never sent elsewhere", "", "", "", "https://ebb.example.com", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tokenEnv, tt.env)
			got, _ := resolveToken(tt.flag, target{server: tt.server, token: tt.ctxToken})
			if got != tt.want {
				t.Errorf("resolveToken = %q, want %q", got, tt.want)
			}
		})
	}
}
