package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// dirArtifacts is a content-addressed artifact store in a directory.
type dirArtifacts struct{ dir string }

func (a dirArtifacts) Put(ctx context.Context, r io.Reader) (string, string, int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", "", 0, err
	}
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:])
	p := filepath.Join(a.dir, h)
	return "file://" + p, h, int64(len(b)), os.WriteFile(p, b, 0o644)
}

func (a dirArtifacts) Open(ctx context.Context, uri, sum string) (io.ReadCloser, error) {
	b, err := os.ReadFile(strings.TrimPrefix(uri, "file://"))
	if err != nil {
		return nil, err
	}
	if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
		return nil, fmt.Errorf("artifact %s does not match its sha256", uri)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// treesValidator loads models with the real trees engine.
func treesValidator(ctx context.Context, engine, path string) (registry.Signature, error) {
	if engine != "trees" {
		return registry.Signature{}, fmt.Errorf("no %s engine in this test", engine)
	}
	m, err := trees.Load(path)
	if err != nil {
		return registry.Signature{}, err
	}
	md := m.Metadata()
	return registry.Signature{Inputs: md.Inputs, Outputs: md.Outputs}, nil
}

type modelsEnv struct {
	st  *sqlite.Store
	svc *registry.Service
	srv *httptest.Server
	env *env
}

func newModelsEnv(t *testing.T) *modelsEnv {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	svc := registry.NewService(st, dirArtifacts{t.TempDir()}, registry.Options{Validator: treesValidator})
	h := api.New(st, &fakeController{statuses: map[string]serving.Status{}}, nil)
	h.MountModels(svc)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &modelsEnv{st: st, svc: svc, srv: srv, env: &env{st: st, srv: srv}}
}

func (e *modelsEnv) do(t *testing.T, method, path, contentType, body string) (int, http.Header, []byte) {
	t.Helper()
	return e.env.do(t, method, path, contentType, body)
}

// upload pushes content as the artifact file name with metadata md.
func (e *modelsEnv) upload(t *testing.T, model, name string, content []byte, md api.PushMetadata) (int, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mdw, _ := mw.CreateFormField("metadata")
	json.NewEncoder(mdw).Encode(md)
	fw, _ := mw.CreateFormFile("artifact", name)
	fw.Write(content)
	mw.Close()
	code, _, body := e.do(t, "POST", "/v1/models/"+model+"/versions", mw.FormDataContentType(), buf.String())
	return code, body
}

var diabetesSig = registry.Signature{
	Inputs:  []oip.TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 10}}},
	Outputs: []oip.TensorMetadata{{Name: "predict", Datatype: "FP32", Shape: []int64{-1}}},
}

func wantError(t *testing.T, what string, code int, body []byte, wantCode int, wantErr, wantMsg string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: status %d, want %d (%s)", what, code, wantCode, body)
		return
	}
	got := decode[api.ErrorBody](t, body)
	if got.Error.Code != wantErr || !strings.Contains(got.Error.Message, wantMsg) {
		t.Errorf("%s: error %+v, want code %q and a message containing %q", what, got.Error, wantErr, wantMsg)
	}
}

func TestModelPush(t *testing.T) {
	e := newModelsEnv(t)
	lin := registry.Lineage{DataURI: "s3://data/diabetes.csv", Parameters: map[string]string{"max_depth": "4"},
		Metrics: map[string]float64{"rmse": 54.1}, CodeCommit: "abc123"}
	code, body := e.upload(t, "diabetes", "model.json", diabetes.Model, api.PushMetadata{
		Lineage: lin, Tags: map[string]string{"team": "health"}, Alias: "champion", CreatedBy: "alice"})
	if code != http.StatusCreated {
		t.Fatalf("push = %d %s, want 201", code, body)
	}
	v := decode[registry.Version](t, body)
	sum := sha256.Sum256(diabetes.Model)
	want := registry.Version{Model: "diabetes", Version: 1, ArtifactURI: v.ArtifactURI, SHA256: hex.EncodeToString(sum[:]),
		Size: int64(len(diabetes.Model)), Engine: "trees", Signature: diabetesSig, Lineage: lin,
		Tags: map[string]string{"team": "health"}, CreatedBy: "alice", State: registry.StateActive,
		CreatedAt: v.CreatedAt, StateChangedAt: v.CreatedAt}
	if diff := cmp.Diff(want, v); diff != "" {
		t.Errorf("pushed version (-want +got):\n%s", diff)
	}
	code, _, body = e.do(t, "GET", "/v1/models/diabetes", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET model = %d %s", code, body)
	}
	detail := decode[api.ModelDetail](t, body)
	if detail.LatestVersion != 1 || len(detail.Aliases) != 1 || detail.Aliases[0].Name != "champion" || detail.Aliases[0].Version != 1 {
		t.Errorf("model detail = %+v, want latest version 1 and alias champion=1", detail)
	}

	// A directory, as a tar archive.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "model.json"), diabetes.Model, 0o644)
	os.WriteFile(filepath.Join(dir, "README"), []byte("notes"), 0o644)
	var tarball bytes.Buffer
	if err := registry.WriteTar(&tarball, dir); err != nil {
		t.Fatal(err)
	}
	code, body = e.upload(t, "diabetes", "model.tar", tarball.Bytes(), api.PushMetadata{Packaging: "tar"})
	if code != http.StatusCreated {
		t.Fatalf("push directory = %d %s, want 201", code, body)
	}
	v2 := decode[registry.Version](t, body)
	if v2.Version != 2 || v2.Packaging != "tar" || v2.Entry != "model.json" || v2.SHA256 != hex.EncodeToString(sha256Of(tarball.Bytes())) {
		t.Errorf("pushed directory = %+v; want version 2, tar, entry model.json, the archive's sha256", v2)
	}

	// An artifact already in the store, by URI.
	in := fmt.Sprintf(`{"artifactURI":%q,"sha256":%q,"engine":"trees","tags":{"copy":"yes"}}`, v.ArtifactURI, v.SHA256)
	code, _, body = e.do(t, "POST", "/v1/models/copy/versions", "application/json", in)
	if code != http.StatusCreated {
		t.Fatalf("push by URI = %d %s, want 201", code, body)
	}
	if v3 := decode[registry.Version](t, body); v3.Model != "copy" || v3.SHA256 != v.SHA256 || v3.Signature.Inputs == nil {
		t.Errorf("push by URI = %+v", v3)
	}
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func TestModelPushRefused(t *testing.T) {
	e := newModelsEnv(t)
	code, body := e.upload(t, "diabetes", "model.json", []byte(`{"learner":{}}`), api.PushMetadata{})
	wantError(t, "push of a broken model", code, body, http.StatusBadRequest, "model/invalid",
		"engine trees cannot load the model: xgboost model")
	code, body = e.upload(t, "Bad_Name", "model.json", diabetes.Model, api.PushMetadata{})
	wantError(t, "push to a bad name", code, body, http.StatusBadRequest, "model/invalid", `model name "Bad_Name"`)
	code, body = e.upload(t, "m", "model.json", diabetes.Model, api.PushMetadata{Packaging: "zip"})
	wantError(t, "push with unknown packaging", code, body, http.StatusBadRequest, "model/invalid", `unknown packaging "zip"`)
	code, _, body = e.do(t, "POST", "/v1/models/m/versions", "application/json", `{"engine":"trees"}`)
	wantError(t, "JSON push without a URI", code, body, http.StatusBadRequest, "model/invalid", "artifactURI and sha256")
	code, _, body = e.do(t, "POST", "/v1/models/m/versions", "application/json",
		`{"artifactURI":"file:///nope","sha256":"00","engine":"trees"}`)
	wantError(t, "JSON push of a missing artifact", code, body, http.StatusBadRequest, "model/invalid", "cannot open artifact file:///nope")
	code, _, body = e.do(t, "POST", "/v1/models/m/versions", "text/plain", `x`)
	wantError(t, "push as text", code, body, http.StatusUnsupportedMediaType, "request/unsupported_media_type", "")
	if ms, _ := e.st.ListModels(context.Background(), registry.ListOptions{}); len(ms) != 0 {
		t.Errorf("refused pushes created models %+v", ms)
	}
}

func TestModelList(t *testing.T) {
	e := newModelsEnv(t)
	for i := range 12 {
		code, _, body := e.do(t, "POST", "/v1/models", "application/json", fmt.Sprintf(`{"name":"m-%02d","description":"d"}`, i))
		if code != http.StatusCreated {
			t.Fatalf("create = %d %s", code, body)
		}
	}
	e.do(t, "POST", "/v1/models", "application/json", `{"name":"other"}`)
	code, _, body := e.do(t, "POST", "/v1/models", "application/json", `{"name":"other"}`)
	wantError(t, "create twice", code, body, http.StatusConflict, "model/exists", `model "other" already exists`)

	var names []string
	path := "/v1/models?prefix=m-&limit=5"
	for range 5 {
		code, _, body := e.do(t, "GET", path, "", "")
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, code, body)
		}
		page := decode[api.ModelList](t, body)
		for _, m := range page.Items {
			names = append(names, m.Name)
		}
		if page.Next == "" {
			break
		}
		path = "/v1/models?prefix=m-&limit=5&after=" + page.Next
	}
	if len(names) != 12 || names[0] != "m-00" || names[11] != "m-11" {
		t.Errorf("paged names = %v, want m-00..m-11", names)
	}
	code, _, body = e.do(t, "GET", "/v1/models?limit=0", "", "")
	wantError(t, "limit 0", code, body, http.StatusBadRequest, "request/malformed", "limit")
}

func TestModelAliases(t *testing.T) {
	e := newModelsEnv(t)
	for range 3 {
		if code, body := e.upload(t, "diabetes", "model.json", diabetes.Model, api.PushMetadata{}); code != http.StatusCreated {
			t.Fatalf("push = %d %s", code, body)
		}
	}
	put := func(body string, header ...string) (int, http.Header, []byte) {
		t.Helper()
		req, _ := http.NewRequest("PUT", e.srv.URL+"/v1/models/diabetes/aliases/champion", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	code, hdr, body := put(`{"version":1,"updatedBy":"alice"}`, "If-None-Match", "*")
	if code != http.StatusCreated || hdr.Get("ETag") != `"1"` {
		t.Fatalf("create alias = %d %v %s, want 201 with ETag \"1\"", code, hdr, body)
	}
	if m := decode[registry.AliasMove](t, body); m.From != 0 || m.To != 1 || m.By != "alice" {
		t.Errorf("creating move = %+v", m)
	}
	code, _, body = put(`{"version":2}`, "If-Match", `"3"`)
	wantError(t, "move with a stale If-Match", code, body, http.StatusConflict, "alias/conflict",
		"alias diabetes@champion points at version 1, expected version 3")
	code, _, body = put(`{"version":2,"expectedVersion":0}`)
	wantError(t, "move expecting no alias", code, body, http.StatusConflict, "alias/conflict", "points at version 1")
	code, _, body = put(`{"version":9}`)
	wantError(t, "move to a missing version", code, body, http.StatusNotFound, "version/not_found", "version 9")
	code, _, body = put(`{"version":2,"expectedVersion":1}`, "If-Match", `"2"`)
	wantError(t, "disagreeing conditions", code, body, http.StatusBadRequest, "request/malformed", "disagrees")

	// Two moves from version 1 at once: one wins, the other gets 409.
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range 2 {
		wg.Go(func() {
			c, _, _, err := e.env.send("PUT", "/v1/models/diabetes/aliases/champion", "application/json",
				fmt.Sprintf(`{"version":%d,"expectedVersion":1,"updatedBy":"ci-%d"}`, i+2, i))
			if err != nil {
				t.Error(err)
			}
			codes[i] = c
		})
	}
	wg.Wait()
	if !(codes[0] == 200 && codes[1] == 409) && !(codes[0] == 409 && codes[1] == 200) {
		t.Errorf("concurrent moves answered %v, want one 200 and one 409", codes)
	}

	code, _, body = e.do(t, "GET", "/v1/models/diabetes/aliases/champion/history", "", "")
	if code != http.StatusOK {
		t.Fatalf("history = %d %s", code, body)
	}
	hist := decode[api.MoveList](t, body).Items
	if len(hist) != 2 || hist[0].To != 1 || hist[1].From != 1 {
		t.Errorf("history = %+v, want the creation and the winning move", hist)
	}
	code, _, body = e.do(t, "GET", "/v1/models/diabetes/aliases/champion", "", "")
	if a := decode[registry.Alias](t, body); code != 200 || a.Version != hist[1].To {
		t.Errorf("GET alias = %d %+v, want version %d", code, a, hist[1].To)
	}
	req, _ := http.NewRequest("DELETE", e.srv.URL+"/v1/models/diabetes/aliases/champion", nil)
	req.Header.Set("If-Match", `"1"`)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, "DELETE with a stale If-Match", resp.StatusCode, b, http.StatusConflict, "alias/conflict",
		fmt.Sprintf("points at version %d, expected version 1", hist[1].To))
	code, _, body = e.do(t, "DELETE", "/v1/models/diabetes/aliases/champion?by=carol", "", "")
	if code != http.StatusNoContent {
		t.Errorf("DELETE alias = %d %s", code, body)
	}
	code, _, body = e.do(t, "GET", "/v1/models/diabetes/aliases/champion", "", "")
	wantError(t, "GET deleted alias", code, body, http.StatusNotFound, "alias/not_found", "ebb models alias diabetes champion")
	code, _, body = e.do(t, "GET", "/v1/models/diabetes/aliases", "", "")
	if l := decode[api.AliasList](t, body); code != 200 || len(l.Items) != 0 {
		t.Errorf("aliases after delete = %d %s", code, body)
	}
}

func TestModelVersions(t *testing.T) {
	e := newModelsEnv(t)
	for range 3 {
		e.upload(t, "diabetes", "model.json", diabetes.Model, api.PushMetadata{Tags: map[string]string{"a": "1", "b": "2"}})
	}
	code, _, body := e.do(t, "GET", "/v1/models/diabetes/versions?limit=2", "", "")
	l := decode[api.VersionList](t, body)
	if code != 200 || len(l.Items) != 2 || l.Next != 2 {
		t.Errorf("versions page 1 = %d %+v, want 2 items and next 2", code, l)
	}
	code, _, body = e.do(t, "GET", "/v1/models/diabetes/versions?after=2", "", "")
	if l := decode[api.VersionList](t, body); code != 200 || len(l.Items) != 1 || l.Items[0].Version != 3 {
		t.Errorf("versions after 2 = %d %s", code, body)
	}
	code, _, body = e.do(t, "PATCH", "/v1/models/diabetes/versions/2", "application/merge-patch+json", `{"tags":{"b":null,"c":"3"}}`)
	if v := decode[registry.Version](t, body); code != 200 || !cmp.Equal(v.Tags, map[string]string{"a": "1", "c": "3"}) {
		t.Errorf("PATCH tags = %d %s", code, body)
	}
	code, _, body = e.do(t, "PATCH", "/v1/models/diabetes/versions/2", "application/merge-patch+json", `{"engine":"onnx"}`)
	wantError(t, "PATCH engine", code, body, http.StatusBadRequest, "model/invalid", "versions are immutable except their tags")

	tests := []struct {
		path, code, msg string
		status          int
	}{
		{"/v1/models/nope", "model/not_found", `model "nope" not found`, 404},
		{"/v1/models/nope/versions", "model/not_found", `model "nope" not found`, 404},
		{"/v1/models/nope/versions/1", "model/not_found", `model "nope" not found`, 404},
		{"/v1/models/diabetes/versions/7", "version/not_found", `version 7 of model "diabetes" not found`, 404},
		{"/v1/models/diabetes/versions/x", "request/malformed", `version "x"`, 400},
		{"/v1/models/diabetes/aliases/none/history", "alias/not_found", `alias "none"`, 404},
		{"/v1/models/nope/aliases", "model/not_found", `model "nope" not found`, 404},
	}
	for _, tt := range tests {
		code, _, body := e.do(t, "GET", tt.path, "", "")
		wantError(t, "GET "+tt.path, code, body, tt.status, tt.code, tt.msg)
	}
	code, hdr, body := e.do(t, "PATCH", "/v1/models/diabetes", "", "")
	if code != http.StatusMethodNotAllowed || hdr.Get("Allow") == "" {
		t.Errorf("PATCH model = %d %v %s, want 405 with Allow", code, hdr, body)
	}
}

func TestServingHistoryRoute(t *testing.T) {
	e := newModelsEnv(t)
	e.upload(t, "diabetes", "model.json", diabetes.Model, api.PushMetadata{})
	if err := e.svc.RecordServing(context.Background(), "web", "diabetes", 1); err != nil {
		t.Fatal(err)
	}
	code, _, body := e.do(t, "GET", "/v1/deployments/web/history", "", "")
	l := decode[api.ServingList](t, body)
	if code != 200 || len(l.Items) != 1 || l.Items[0].Version != 1 || time.Since(l.Items[0].At) > time.Hour {
		t.Errorf("serving history = %d %s", code, body)
	}
}
