package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/registry"
)

// codeValidator accepts python models as they are (the test has no
// Python) and loads trees models with the real engine.
func codeValidator(ctx context.Context, engine, path string) (registry.Signature, error) {
	if engine == "python" {
		return registry.Signature{}, nil
	}
	return treesValidator(ctx, engine, path)
}

// envSpec is a trees deployment named name whose replicas get env.
func envSpec(name string, env map[string]string) string {
	b, _ := json.Marshal(map[string]any{"name": name, "spec": map[string]any{"model": "/tmp/m.json", "engine": "trees", "env": env}})
	return string(b)
}

// TestExecEnv: spec.env variables that choose what code a replica loads
// (LD_PRELOAD, PATH, PYTHON*, ...) need exec beside deploy, on create,
// replace and patch, whatever the engine; variables that only tune the
// code (OMP_NUM_THREADS) do not, and names are compared case and all.
func TestExecEnv(t *testing.T) {
	e := newAuthEnv(t, "deploy", "deploy,exec")
	deploy, exec := e.tokens["deploy"], e.tokens["deploy,exec"]
	tests := []struct {
		name     string
		token    string
		env      map[string]string
		want     int
		wantName string // the variable a 403 names
	}{
		{name: "LD_PRELOAD", token: deploy, env: map[string]string{"LD_PRELOAD": "/tmp/evil.so"}, want: 403, wantName: "LD_PRELOAD"},
		{name: "LD_LIBRARY_PATH", token: deploy, env: map[string]string{"LD_LIBRARY_PATH": "/tmp"}, want: 403, wantName: "LD_LIBRARY_PATH"},
		{name: "PATH", token: deploy, env: map[string]string{"PATH": "/tmp/bin"}, want: 403, wantName: "PATH"},
		{name: "BASH_ENV", token: deploy, env: map[string]string{"BASH_ENV": "/tmp/rc"}, want: 403, wantName: "BASH_ENV"},
		{name: "bash function", token: deploy, env: map[string]string{"BASH_FUNC_ls%%": "() { id; }"}, want: 403, wantName: "BASH_FUNC_ls%%"},
		{name: "PYTHONWARNINGS and BROWSER", token: deploy, env: map[string]string{"PYTHONWARNINGS": "ignore::antigravity.x", "BROWSER": "sh -c id"}, want: 403, wantName: "BROWSER"},
		{name: "PYTHONSTARTUP", token: deploy, env: map[string]string{"PYTHONSTARTUP": "/tmp/x.py"}, want: 403, wantName: "PYTHONSTARTUP"},
		{name: "NODE_OPTIONS", token: deploy, env: map[string]string{"NODE_OPTIONS": "--require /tmp/x.js"}, want: 403, wantName: "NODE_OPTIONS"},
		{name: "PERL5OPT", token: deploy, env: map[string]string{"PERL5OPT": "-Mx"}, want: 403, wantName: "PERL5OPT"},
		{name: "JAVA_TOOL_OPTIONS", token: deploy, env: map[string]string{"JAVA_TOOL_OPTIONS": "-javaagent:/tmp/x.jar"}, want: 403, wantName: "JAVA_TOOL_OPTIONS"},
		{name: "GIT_SSH_COMMAND", token: deploy, env: map[string]string{"GIT_SSH_COMMAND": "id"}, want: 403, wantName: "GIT_SSH_COMMAND"},
		{name: "OPENSSL_CONF", token: deploy, env: map[string]string{"OPENSSL_CONF": "/tmp/engine.cnf"}, want: 403, wantName: "OPENSSL_CONF"},
		{name: "GCONV_PATH", token: deploy, env: map[string]string{"GCONV_PATH": "/tmp"}, want: 403, wantName: "GCONV_PATH"},
		{name: "HOME", token: deploy, env: map[string]string{"HOME": "/tmp/site"}, want: 403, wantName: "HOME"},
		{name: "onnx runtime library", token: deploy, env: map[string]string{"EBB_ONNXRUNTIME_LIB": "/tmp/evil.so"}, want: 403, wantName: "EBB_ONNXRUNTIME_LIB"},
		{name: "SSL_CERT_FILE", token: deploy, env: map[string]string{"SSL_CERT_FILE": "/tmp/ca.pem"}, want: 403, wantName: "SSL_CERT_FILE"},
		{name: "https_proxy", token: deploy, env: map[string]string{"https_proxy": "http://evil:8080"}, want: 403, wantName: "https_proxy"},
		{name: "OMP_NUM_THREADS", token: deploy, env: map[string]string{"OMP_NUM_THREADS": "2"}, want: 201},
		{name: "tuning only", token: deploy, env: map[string]string{"MALLOC_ARENA_MAX": "2", "GOMAXPROCS": "2", "TZ": "UTC", "NO_PROXY": "*"}, want: 201},
		{name: "lower case is inert", token: deploy, env: map[string]string{"ld_preload": "/tmp/evil.so", "Path": "/tmp"}, want: 201},
		{name: "exec may", token: exec, env: map[string]string{"LD_PRELOAD": "/tmp/evil.so", "PATH": "/opt/bin"}, want: 201},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "env" + string(rune('a'+i))
			code, _, body := e.do(t, tt.token, "POST", "/v1/deployments", envSpec(name, tt.env))
			if code != tt.want {
				t.Fatalf("POST env %v = %d %s; want %d", tt.env, code, body, tt.want)
			}
			if tt.want != http.StatusForbidden {
				return
			}
			d := errorCode(t, body)
			if d.Code != "auth/forbidden" || !strings.Contains(d.Message, `"exec"`) || !strings.Contains(d.Message, "spec.env sets "+strconv.Quote(tt.wantName)) {
				t.Errorf("error %+v; want auth/forbidden naming scope exec and variable %s", d, tt.wantName)
			}
		})
	}

	// An env exec approved stays: deploy may scale the deployment, re-apply
	// it or drop the variable, not set it to another value.
	approved := envSpec("approved", map[string]string{"LD_PRELOAD": "/opt/libjemalloc.so", "OMP_NUM_THREADS": "2"})
	if code, _, body := e.do(t, exec, "POST", "/v1/deployments", approved); code != http.StatusCreated {
		t.Fatalf("exec create = %d %s", code, body)
	}
	steps := []struct {
		name, method, body string
		want               int
	}{
		{"scale", "PATCH", `{"spec":{"scaling":{"maxReplicas":3}}}`, 200},
		{"re-apply", "PUT", approved, 200},
		{"change a tuning variable", "PATCH", `{"spec":{"env":{"OMP_NUM_THREADS":"4"}}}`, 200},
		{"change LD_PRELOAD", "PATCH", `{"spec":{"env":{"LD_PRELOAD":"/tmp/evil.so"}}}`, 403},
		{"add PYTHONPATH", "PATCH", `{"spec":{"env":{"PYTHONPATH":"/tmp"}}}`, 403},
		{"add PATH by put", "PUT", envSpec("approved", map[string]string{"LD_PRELOAD": "/opt/libjemalloc.so", "PATH": "/tmp"}), 403},
		{"drop LD_PRELOAD", "PATCH", `{"spec":{"env":{"LD_PRELOAD":null}}}`, 200},
		{"set it back", "PATCH", `{"spec":{"env":{"LD_PRELOAD":"/opt/libjemalloc.so"}}}`, 403},
		{"create by put", "PUT", envSpec("fresh", map[string]string{"NODE_OPTIONS": "--require x"}), 403},
	}
	for _, s := range steps {
		path := "/v1/deployments/approved"
		if strings.Contains(s.body, `"fresh"`) {
			path = "/v1/deployments/fresh"
		}
		if code, _, body := e.do(t, deploy, s.method, path, s.body); code != s.want {
			t.Errorf("deploy token: %s = %d %s; want %d", s.name, code, body, s.want)
		}
	}
}

// TestExecImage: spec.template.image is the code a replica pod runs.
func TestExecImage(t *testing.T) {
	e := newAuthEnv(t, "deploy", "deploy,exec")
	spec := `{"name":"img","spec":{"model":"/tmp/m.json","engine":"trees","template":{"image":"evil.example/x:1"}}}`
	if code, _, body := e.do(t, e.tokens["deploy"], "POST", "/v1/deployments", spec); code != http.StatusForbidden || !strings.Contains(body, "spec.template.image") {
		t.Errorf("deploy token setting an image = %d %s; want 403 naming spec.template.image", code, body)
	}
	if code, _, body := e.do(t, e.tokens["deploy,exec"], "POST", "/v1/deployments", spec); code != http.StatusCreated {
		t.Fatalf("exec token setting an image = %d %s; want 201", code, body)
	}
	if code, _, body := e.do(t, e.tokens["deploy"], "PATCH", "/v1/deployments/img", `{"spec":{"scaling":{"maxReplicas":2}}}`); code != http.StatusOK {
		t.Errorf("deploy token scaling img = %d %s; want 200", code, body)
	}
}

// push sends a multipart push of content (a file, or a directory as a tar)
// with token.
func (e *authEnv) push(t *testing.T, token, model string, md api.PushMetadata, name string, content []byte) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mdw, _ := mw.CreateFormField("metadata")
	json.NewEncoder(mdw).Encode(md)
	fw, _ := mw.CreateFormFile("artifact", name)
	fw.Write(content)
	mw.Close()
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/models/"+model+"/versions", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func tarDir(t *testing.T, files map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := registry.WriteTar(&buf, dir); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestPushCodeNeedsExec: pushing a python version is pushing code that a
// deployment following an alias runs, so it needs exec beside
// models:write; moving an alias to a version an exec holder pushed does
// not.
func TestPushCodeNeedsExec(t *testing.T) {
	e := newAuthEnv(t, "models:write", "models:write,exec")
	mw, mwExec := e.tokens["models:write"], e.tokens["models:write,exec"]
	pyDir := tarDir(t, map[string]string{"model.py": "class Model: pass\n", "weights.bin": "xx"})
	tests := []struct {
		name    string
		token   string
		md      api.PushMetadata
		file    string
		content []byte
		want    int
	}{
		{name: "directory detected as python", token: mw, md: api.PushMetadata{Packaging: "tar"}, file: "m.tar", content: pyDir, want: 403},
		{name: "declared python", token: mw, md: api.PushMetadata{Packaging: "tar", Engine: "python"}, file: "m.tar", content: tarDir(t, map[string]string{"w.bin": "x"}), want: 403},
		{name: "declared Python", token: mw, md: api.PushMetadata{Engine: "Python"}, file: "m.bin", content: []byte("x"), want: 403},
		{name: "python with exec", token: mwExec, md: api.PushMetadata{Packaging: "tar", Alias: "champion"}, file: "m.tar", content: pyDir, want: 201},
		{name: "trees file", token: mw, md: api.PushMetadata{}, file: "model.json", content: diabetes.Model, want: 201},
		{name: "trees directory", token: mw, md: api.PushMetadata{Packaging: "tar"}, file: "m.tar", content: tarDir(t, map[string]string{"model.json": string(diabetes.Model), "README": "x"}), want: 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.push(t, tt.token, "churn", tt.md, tt.file, tt.content)
			if code != tt.want {
				t.Fatalf("push = %d %s; want %d", code, body, tt.want)
			}
			if code == http.StatusForbidden {
				if d := errorCode(t, body); d.Code != "auth/forbidden" || !strings.Contains(d.Message, `"exec"`) || !strings.Contains(d.Message, "python") {
					t.Errorf("error %+v; want auth/forbidden naming scope exec and python", d)
				}
			}
		})
	}
	// A JSON push names a stored artifact: a directory without an engine
	// may be python.
	code, _, body := e.do(t, mw, "POST", "/v1/models/churn/versions", `{"artifactURI":"file:///x","sha256":"00","packaging":"tar"}`)
	if code != http.StatusForbidden || !strings.Contains(body, "name the engine") {
		t.Errorf("JSON push of a stored directory without engine = %d %s; want 403 asking for the engine", code, body)
	}
	// The python version exists (pushed with exec as version 1): moving an
	// alias onto it needs models:write alone.
	if code, _, body := e.do(t, mw, "PUT", "/v1/models/churn/aliases/stable", `{"version":1}`); code != http.StatusCreated {
		t.Errorf("models:write moving an alias to the python version = %d %s; want 201", code, body)
	}
}
