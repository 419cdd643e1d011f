package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// TestPythonInterpreterConfined: spec.python.interpreter names only a
// Python the server allows (--python-interpreters) or one under the model
// roots, such as a virtualenv's bin/python linking to an allowed Python;
// never /bin/sh or a script of the user's, even for an exec token.
func TestPythonInterpreterConfined(t *testing.T) {
	root := t.TempDir()
	model := filepath.Join(root, "churn")
	if err := os.MkdirAll(filepath.Join(model, "venv", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(model, "model.py"), []byte("class Model: pass\n"), 0o644)
	// An allowed "Python": a file outside the roots the test names in
	// Interpreters, so the test needs no python3 on the machine.
	tools := t.TempDir()
	allowed := filepath.Join(tools, "python3")
	os.WriteFile(allowed, []byte("#!/bin/true\n"), 0o755)
	if err := os.Symlink(allowed, filepath.Join(model, "venv", "bin", "python")); err != nil {
		t.Fatal(err)
	}
	built := filepath.Join(model, "venv", "bin", "python-built")
	os.WriteFile(built, []byte("#!/bin/true\n"), 0o755)
	notExec := filepath.Join(model, "venv", "bin", "python-noexec")
	os.WriteFile(notExec, []byte(""), 0o644)
	other := filepath.Join(tools, "sh")
	os.WriteFile(other, []byte("#!/bin/true\n"), 0o755)
	if err := os.Symlink(other, filepath.Join(model, "venv", "bin", "sh-link")); err != nil {
		t.Fatal(err)
	}

	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := api.New(st, &fakeController{statuses: map[string]serving.Status{}}, nil)
	h.ConfineModelPaths(api.ModelPaths{Roots: []string{root}, Interpreters: []string{allowed}})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	tests := []struct {
		name, interp string
		want         int
		wantMsg      string
	}{
		{name: "default", interp: "", want: 201},
		{name: "allowed", interp: allowed, want: 201},
		{name: "venv link to an allowed python", interp: filepath.Join(model, "venv", "bin", "python"), want: 201},
		{name: "built under a root", interp: built, want: 201},
		{name: "shell", interp: "/bin/sh", want: 400, wantMsg: "is not a Python this server allows"},
		{name: "link under a root to another program", interp: filepath.Join(model, "venv", "bin", "sh-link"), want: 400, wantMsg: "is not a Python this server allows"},
		{name: "relative", interp: "venv/bin/python", want: 400, wantMsg: "relative path"},
		{name: "missing", interp: filepath.Join(root, "absent"), want: 400, wantMsg: "does not exist on the server"},
		{name: "not in PATH", interp: "no-such-python-ebb", want: 400, wantMsg: "not found in this server's PATH"},
		{name: "not executable", interp: notExec, want: 400, wantMsg: "is not executable"},
		{name: "a directory", interp: filepath.Join(model, "venv"), want: 400, wantMsg: "not a regular file"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"name": "interp" + string(rune('a'+i)),
				"spec": map[string]any{"engine": "python", "model": model, "python": map[string]string{"class": "model.py:Model", "interpreter": tt.interp}}})
			code, b := postDeployment(t, srv, "/v1/deployments", string(body))
			if code != tt.want || !strings.Contains(string(b), tt.wantMsg) {
				t.Fatalf("POST interpreter %q = %d %s; want %d with %q", tt.interp, code, b, tt.want, tt.wantMsg)
			}
			if code == http.StatusBadRequest && !strings.Contains(string(b), "spec.python.interpreter") {
				t.Errorf("refusal does not name spec.python.interpreter: %s", b)
			}
		})
	}
	t.Run("patch checks a changed interpreter", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPatch, srv.URL+"/v1/deployments/interpa", strings.NewReader(`{"spec":{"python":{"interpreter":"/bin/sh"}}}`))
		req.Header.Set("Content-Type", "application/merge-patch+json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("PATCH interpreter /bin/sh = %d; want 400", resp.StatusCode)
		}
	})
}
