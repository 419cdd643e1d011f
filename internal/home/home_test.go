package home

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/api"
)

// TestOpenStoreSQLite checks that without a DSN the store is SQLite in the
// data dir, created with it, readable by ebb's user only.
func TestOpenStoreSQLite(t *testing.T) {
	t.Setenv("EBB_STORE_DSN", "")
	dir := filepath.Join(t.TempDir(), "data")
	st, err := OpenStore(context.Background(), "", dir)
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	defer st.Close()
	fi, err := os.Stat(filepath.Join(dir, "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("ebb.db has mode %v, want 0600: it holds replica secrets and token hashes", fi.Mode().Perm())
	}
	if _, err := st.ListDeployments(context.Background()); err != nil {
		t.Errorf("the opened store does not answer: %v", err)
	}
}

// TestNewAdminAPI checks the routes that depend on the parts: the version
// and home answered, and /v1/tokens only with a token store.
func TestNewAdminAPI(t *testing.T) {
	t.Setenv("EBB_STORE_DSN", "")
	st, err := OpenStore(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, tt := range []struct {
		name       string
		parts      AdminParts
		wantTokens int
	}{
		{"without tokens", AdminParts{Store: st, Home: api.HomeUp, Version: "v1.2.3"}, http.StatusNotFound},
		{"with tokens", AdminParts{Store: st, Home: api.HomeCluster, Version: "v1.2.3", Tokens: st}, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := NewAdminAPI(tt.parts, nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/version", nil))
			var got api.VersionInfo
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK {
				t.Fatalf("GET /v1/version = %d %s", w.Code, w.Body)
			}
			if diff := cmp.Diff(api.VersionInfo{Version: "v1.2.3", Home: tt.parts.Home}, got); diff != "" {
				t.Errorf("version (-want +got):\n%s", diff)
			}
			w = httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/tokens", nil))
			if w.Code != tt.wantTokens {
				t.Errorf("GET /v1/tokens = %d %s, want %d", w.Code, w.Body, tt.wantTokens)
			}
		})
	}
}
