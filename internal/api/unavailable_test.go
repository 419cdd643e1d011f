package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/file"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
	"github.com/ebb-ml/ebb/internal/store/postgres"
)

// fileArtifacts is the registry's view of the real artifact file store.
type fileArtifacts struct{ s *file.Store }

func (a fileArtifacts) Put(ctx context.Context, r io.Reader) (string, string, int64, error) {
	ref, err := a.s.Put(ctx, r)
	return ref.URI, ref.SHA256, ref.Size, err
}

func (a fileArtifacts) Open(ctx context.Context, uri, sum string) (io.ReadCloser, error) {
	return artifact.OpenVerified(ctx, a.s, uri, sum)
}

// pushForm is a multipart push of the diabetes model that moves alias
// champion to it: its Content-Type and body.
func pushForm(t *testing.T) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mdw, err := mw.CreateFormField("metadata")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewEncoder(mdw).Encode(api.PushMetadata{Alias: "champion", CreatedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("artifact", "model.json")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(diabetes.Model)
	mw.Close()
	return mw.FormDataContentType(), buf.String()
}

// TestStoreUnavailable runs the admin API over a PostgreSQL store whose
// server is stopped: pushes, deploys and reads answer 503 store/unavailable
// with Retry-After and a message that names the database (and not the
// password), and write nothing; once the server is back on the same data
// and port, the same requests succeed, and nothing of the failed ones is
// there.
func TestStoreUnavailable(t *testing.T) {
	const password = "hunter2-not-shown"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := pgtest.NewCluster(t)
	st, err := postgres.Open(ctx, fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", password, c.Port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	arts, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc := registry.NewService(st, fileArtifacts{arts}, registry.Options{Validator: treesValidator})
	h := api.New(st, &fakeController{statuses: map[string]serving.Status{}}, nil)
	h.MountModels(svc)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e := &env{st: st, srv: srv}
	wantName := fmt.Sprintf("PostgreSQL at 127.0.0.1:%d/postgres", c.Port)

	pushType, pushBody := pushForm(t)
	requests := []struct {
		name                    string
		method, path, ctype, in string
		wantUp                  int // the status once the server is back
	}{
		{"push", "POST", "/v1/models/diabetes/versions", pushType, pushBody, http.StatusCreated},
		{"deploy", "POST", "/v1/deployments", "application/json",
			`{"name":"diabetes","spec":{"model":"diabetes@champion","scaling":{"minReplicas":0,"maxReplicas":2}}}`, http.StatusCreated},
		{"create model", "POST", "/v1/models", "application/json", `{"name":"other"}`, http.StatusCreated},
		{"move alias", "PUT", "/v1/models/diabetes/aliases/stable", "application/json", `{"version":1}`, http.StatusCreated},
		{"list deployments", "GET", "/v1/deployments", "", "", http.StatusOK},
		{"get deployment", "GET", "/v1/deployments/diabetes", "", "", http.StatusOK},
		{"get model", "GET", "/v1/models/diabetes", "", "", http.StatusOK},
		{"get version", "GET", "/v1/models/diabetes/versions/1", "", "", http.StatusOK},
		{"list versions", "GET", "/v1/models/diabetes/versions", "", "", http.StatusOK},
		{"get alias", "GET", "/v1/models/diabetes/aliases/champion", "", "", http.StatusOK},
	}

	if err := c.StopServer(); err != nil {
		t.Fatal(err)
	}
	for _, rq := range requests {
		code, hdr, body := e.do(t, rq.method, rq.path, rq.ctype, rq.in)
		if code != http.StatusServiceUnavailable {
			t.Errorf("%s with the store down: status %d, want 503 (%s)", rq.name, code, body)
			continue
		}
		got := decode[api.ErrorBody](t, body)
		if got.Error.Code != "store/unavailable" {
			t.Errorf("%s with the store down: code %q, want store/unavailable", rq.name, got.Error.Code)
		}
		if !strings.Contains(got.Error.Message, wantName+": ") {
			t.Errorf("%s with the store down: message %q does not name the store (%s)", rq.name, got.Error.Message, wantName)
		}
		if strings.Contains(string(body), password) {
			t.Errorf("%s with the store down: the response shows the password: %s", rq.name, body)
		}
		if hdr.Get("Retry-After") == "" {
			t.Errorf("%s with the store down: no Retry-After header", rq.name)
		}
		if rq.name == "push" {
			t.Logf("push with the store down: %s", got.Error.Message)
		}
	}

	if err := c.StartServer(); err != nil {
		t.Fatal(err)
	}
	if ds, err := st.ListDeployments(ctx); err != nil || len(ds) != 0 {
		t.Errorf("deployments after the failed requests = %+v, %v; want none", ds, err)
	}
	if ms, err := st.ListModels(ctx, registry.ListOptions{}); err != nil || len(ms) != 0 {
		t.Errorf("models after the failed requests = %+v, %v; want none", ms, err)
	}
	for _, rq := range requests {
		code, _, body := e.do(t, rq.method, rq.path, rq.ctype, rq.in)
		if code != rq.wantUp {
			t.Errorf("%s with the store back: status %d, want %d (%s)", rq.name, code, rq.wantUp, body)
		}
		if rq.name == "push" && code == http.StatusCreated {
			v := decode[registry.Version](t, body)
			if v.Version != 1 {
				t.Errorf("push with the store back made version %d, want 1: the failed push must not have taken a number", v.Version)
			}
			// The failed push's blob, if it stayed, is this one: same content, same key.
			p, err := arts.Path(v.ArtifactURI)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("artifact of the pushed version: %v", err)
			}
		}
	}
}
