package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// fakeController records notifications and reports canned statuses.
type fakeController struct {
	mu       sync.Mutex
	statuses map[string]serving.Status
	notified []string
}

func (c *fakeController) Status(name string) serving.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statuses[name]
}

func (c *fakeController) Notify(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notified = append(c.notified, name)
}

func (c *fakeController) takeNotified() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.notified
	c.notified = nil
	return n
}

type env struct {
	st  *sqlite.Store
	ctl *fakeController
	srv *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	ctl := &fakeController{statuses: map[string]serving.Status{}}
	srv := httptest.NewServer(api.New(st, ctl, nil))
	t.Cleanup(srv.Close)
	return &env{st: st, ctl: ctl, srv: srv}
}

// do sends a request and returns the status, headers and body.
func (e *env) do(t *testing.T, method, path, contentType, body string) (int, http.Header, []byte) {
	t.Helper()
	code, hdr, b, err := e.send(method, path, contentType, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, hdr, b
}

// send is do for goroutines other than the test's: it returns errors.
func (e *env) send(method, path, contentType, body string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

func (e *env) snapshot(t *testing.T) []serving.Deployment {
	t.Helper()
	ds, err := e.st.ListDeployments(context.Background())
	if err != nil {
		t.Fatalf("ListDeployments: %v", err)
	}
	return ds
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, b, err)
	}
	return v
}

const diabetesJSON = `{"name":"diabetes","spec":{"model":"examples/diabetes/model.json","scaling":{"minReplicas":0,"maxReplicas":3,"scaleToZeroAfter":"2m"}}}`

func defaulted(spec serving.Spec) serving.Spec {
	spec.Default()
	return spec
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	wantSpec := defaulted(serving.Spec{Model: "examples/diabetes/model.json",
		Scaling: serving.Scaling{MaxReplicas: 3, ScaleToZeroAfter: serving.D(2 * time.Minute)}})
	status := serving.Status{Replicas: 2, ReadyReplicas: 1, DesiredReplicas: 2, Reason: "scaling up"}
	e.ctl.statuses["diabetes"] = status

	// Create.
	code, hdr, body := e.do(t, "POST", "/v1/deployments", "application/json", diabetesJSON)
	if code != http.StatusCreated {
		t.Fatalf("POST = %d %s, want 201", code, body)
	}
	if got := hdr.Get("Location"); got != "/v1/deployments/diabetes" {
		t.Errorf("Location = %q", got)
	}
	created := decode[serving.Deployment](t, body)
	if diff := cmp.Diff(wantSpec, created.Spec); diff != "" {
		t.Errorf("created spec (-want +got):\n%s", diff)
	}
	if created.Generation != 1 || created.CreatedAt.IsZero() {
		t.Errorf("created generation %d, createdAt %v; want 1 and a time", created.Generation, created.CreatedAt)
	}
	if diff := cmp.Diff(status, created.Status); diff != "" {
		t.Errorf("created status (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"diabetes"}, e.ctl.takeNotified()); diff != "" {
		t.Errorf("notified after create (-want +got):\n%s", diff)
	}
	// The response uses RFC 3339 times.
	raw := decode[map[string]any](t, body)
	if _, err := time.Parse(time.RFC3339, raw["createdAt"].(string)); err != nil {
		t.Errorf("createdAt %v is not RFC 3339: %v", raw["createdAt"], err)
	}

	// Get.
	code, _, body = e.do(t, "GET", "/v1/deployments/diabetes", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET = %d %s", code, body)
	}
	if diff := cmp.Diff(created, decode[serving.Deployment](t, body)); diff != "" {
		t.Errorf("GET (-want +got):\n%s", diff)
	}

	// Patch with a merge patch: set maxReplicas, remove scaleToZeroAfter
	// (back to its default).
	code, _, body = e.do(t, "PATCH", "/v1/deployments/diabetes", "application/merge-patch+json",
		`{"spec":{"scaling":{"maxReplicas":5,"scaleToZeroAfter":null}}}`)
	if code != http.StatusOK {
		t.Fatalf("PATCH = %d %s", code, body)
	}
	patched := decode[serving.Deployment](t, body)
	want := wantSpec
	want.Scaling.MaxReplicas = 5
	want.Scaling.ScaleToZeroAfter = serving.D(serving.DefaultScaleToZeroAfter)
	if diff := cmp.Diff(want, patched.Spec); diff != "" {
		t.Errorf("patched spec (-want +got):\n%s", diff)
	}
	if patched.Generation != 2 {
		t.Errorf("patched generation = %d, want 2", patched.Generation)
	}
	if diff := cmp.Diff([]string{"diabetes"}, e.ctl.takeNotified()); diff != "" {
		t.Errorf("notified after patch (-want +got):\n%s", diff)
	}

	// Put replaces the spec of an existing deployment: 200.
	code, _, body = e.do(t, "PUT", "/v1/deployments/diabetes", "application/json",
		`{"spec":{"model":"v2.json"}}`)
	if code != http.StatusOK {
		t.Fatalf("PUT existing = %d %s, want 200", code, body)
	}
	replaced := decode[serving.Deployment](t, body)
	if diff := cmp.Diff(defaulted(serving.Spec{Model: "v2.json"}), replaced.Spec); diff != "" {
		t.Errorf("replaced spec (-want +got):\n%s", diff)
	}
	if replaced.Generation != 3 || !replaced.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("replaced generation %d createdAt %v, want 3 and %v", replaced.Generation, replaced.CreatedAt, created.CreatedAt)
	}

	// Put creates a missing deployment: 201. What GET returns can be sent
	// back as is: output-only fields are ignored.
	getBody, _ := json.Marshal(replaced)
	getBody = bytes.Replace(getBody, []byte(`"diabetes"`), []byte(`"iris"`), 1)
	code, _, body = e.do(t, "PUT", "/v1/deployments/iris", "", string(getBody))
	if code != http.StatusCreated {
		t.Fatalf("PUT new = %d %s, want 201", code, body)
	}
	if got := decode[serving.Deployment](t, body); got.Generation != 1 || got.Name != "iris" {
		t.Errorf("PUT new returned %+v, want iris generation 1", got)
	}

	// List, sorted by name, with statuses.
	code, _, body = e.do(t, "GET", "/v1/deployments", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET list = %d %s", code, body)
	}
	list := decode[api.List](t, body)
	var names []string
	for _, d := range list.Items {
		names = append(names, d.Name)
	}
	if diff := cmp.Diff([]string{"diabetes", "iris"}, names); diff != "" {
		t.Errorf("listed names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(status, list.Items[0].Status); diff != "" {
		t.Errorf("listed status (-want +got):\n%s", diff)
	}
	e.ctl.takeNotified()

	// Delete.
	code, _, body = e.do(t, "DELETE", "/v1/deployments/diabetes", "", "")
	if code != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("DELETE = %d %q, want 204 and no body", code, body)
	}
	if diff := cmp.Diff([]string{"diabetes"}, e.ctl.takeNotified()); diff != "" {
		t.Errorf("notified after delete (-want +got):\n%s", diff)
	}
	if code, _, _ := e.do(t, "GET", "/v1/deployments/diabetes", "", ""); code != http.StatusNotFound {
		t.Errorf("GET after delete = %d, want 404", code)
	}
}

func TestEmptyList(t *testing.T) {
	e := newEnv(t)
	code, _, body := e.do(t, "GET", "/v1/deployments", "", "")
	if code != http.StatusOK {
		t.Fatalf("GET = %d %s", code, body)
	}
	if got := strings.Join(strings.Fields(string(body)), ""); got != `{"items":[]}` {
		t.Errorf("empty list body = %s, want {\"items\":[]}", got)
	}
}
