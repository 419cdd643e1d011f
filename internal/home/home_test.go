package home

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/traffic"
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

// TestShadowRoutes checks that a home with rollouts serves shadows too,
// and that without a source of gateway figures (a cluster before its
// operator merges them) a shadow's verdict stays pending.
func TestShadowRoutes(t *testing.T) {
	t.Setenv("EBB_STORE_DSN", "")
	ctx := context.Background()
	st, err := OpenStore(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d := serving.Deployment{Name: "m", Spec: serving.Spec{Model: "/models/a.json", Engine: "trees"}}
	d.Spec.Default()
	if _, err := st.CreateDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}
	ro := NewRollouts(RolloutParts{Store: st, Deployments: st}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	serve := func(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		h.ServeHTTP(w, r)
		return w
	}
	without := NewAdminAPI(AdminParts{Store: st}, nil)
	if w := serve(without, "GET", "/v1/deployments/m/shadow", ""); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "request/not_found") {
		t.Errorf("without rollouts: GET shadow = %d %s; want no such route", w.Code, w.Body)
	}
	h := NewAdminAPI(AdminParts{Store: st, Rollouts: ro}, nil)
	if w := serve(h, "POST", "/v1/deployments/m/shadow", `{"to":"/models/b.json","duration":"10m"}`); w.Code != http.StatusCreated {
		t.Fatalf("POST shadow = %d %s", w.Code, w.Body)
	}
	w := serve(h, "GET", "/v1/deployments/m/shadow", "")
	var got rollout.ShadowStatus
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusOK {
		t.Fatalf("GET shadow = %d %s", w.Code, w.Body)
	}
	if got.Model != "/models/b.json" || !got.Active || got.Reported || got.Verdict.Outcome != traffic.Pending || !strings.Contains(got.Verdict.Reason, "no gateway reported") {
		t.Errorf("status without a source = %+v; want active, pending as no gateway reported", got)
	}
}

// TestRelativeDataDir opens what ebb up opens in a relative --data-dir
// (its default is .ebb): the async payload store and the registry's
// artifact store take it as the absolute directory it names.
func TestRelativeDataDir(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	st := openTestStore(t)
	q, closeQ, err := AsyncFlags{}.Open(context.Background(), st, "", ".ebb")
	if err != nil {
		t.Fatalf("async queue in a relative data dir: %v", err)
	}
	defer closeQ()
	if q == nil {
		t.Fatal("async queue in a relative data dir: nil")
	}
	got, err := dirLocation("arts")
	if want := filepath.Join(dir, "arts"); err != nil || got != want {
		t.Errorf("dirLocation(arts) = %q, %v; want %q", got, err, want)
	}
	if got, _ := dirLocation("s3://b/p"); got != "s3://b/p" {
		t.Errorf("dirLocation(s3://b/p) = %q; want it as it is", got)
	}
}
