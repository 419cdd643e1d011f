package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// TestModelPaths covers the hostile model paths of issue 10: /dev/zero was
// read without limit and /etc/shadow was accepted at create. A model given
// by path is checked at create, put and patch, and refusals never quote the
// file.
func TestModelPaths(t *testing.T) {
	root := t.TempDir()
	write := func(name string, size int) string {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Repeat("x", size)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", 10)
	write("dir/a.bin", 60)
	write("bigdir/a.bin", 60)
	write("bigdir/b.bin", 60)
	big := write("big.json", 101)
	link := filepath.Join(root, "link.json")
	if err := os.Symlink("/etc/passwd", link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(root, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}

	newServer := func(roots ...string) *httptest.Server {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		h := api.New(st, &fakeController{statuses: map[string]serving.Status{}}, nil)
		h.ConfineModelPaths(api.ModelPaths{Roots: roots, MaxBytes: 100})
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv
	}
	confined := newServer(root)
	everywhere := newServer("/")

	tests := []struct {
		name    string
		srv     *httptest.Server
		model   string
		want    int
		wantMsg string
	}{
		{name: "file under a root", srv: confined, model: good, want: http.StatusCreated},
		{name: "directory under a root", srv: confined, model: filepath.Join(root, "dir"), want: http.StatusCreated},
		{name: "file:// URI", srv: confined, model: "file://" + good, want: http.StatusCreated},
		{name: "s3 URI is not a path", srv: confined, model: "s3://bucket/m.json", want: http.StatusCreated},
		{name: "dev zero", srv: confined, model: "/dev/zero", want: http.StatusBadRequest, wantMsg: "is outside the directories models may be read from"},
		{name: "etc shadow", srv: confined, model: "/etc/shadow", want: http.StatusBadRequest, wantMsg: "is outside the directories"},
		{name: "dot-dot escape", srv: confined, model: filepath.Join(root, "../../etc/passwd"), want: http.StatusBadRequest, wantMsg: "is outside"},
		{name: "symlink out of the root", srv: confined, model: link, want: http.StatusBadRequest, wantMsg: "links to a file outside"},
		{name: "missing", srv: confined, model: filepath.Join(root, "nope.json"), want: http.StatusBadRequest, wantMsg: "does not exist on the server"},
		{name: "fifo", srv: confined, model: fifo, want: http.StatusBadRequest, wantMsg: "not a regular file or a directory (it is a named pipe)"},
		{name: "file too big", srv: confined, model: big, want: http.StatusBadRequest, wantMsg: "holds more than 100 bytes"},
		{name: "directory too big", srv: confined, model: filepath.Join(root, "bigdir"), want: http.StatusBadRequest, wantMsg: "holds more than 100 bytes"},
		{name: "dev zero under a root of /", srv: everywhere, model: "/dev/zero", want: http.StatusBadRequest, wantMsg: "(it is a character device)"},
	}
	if os.Geteuid() != 0 {
		tests = append(tests, struct {
			name    string
			srv     *httptest.Server
			model   string
			want    int
			wantMsg string
		}{name: "etc shadow under a root of /", srv: everywhere, model: "/etc/shadow", want: http.StatusBadRequest, wantMsg: "cannot be read by ebb"})
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Lstat(tt.model); strings.HasPrefix(tt.model, "/etc/shadow") && err != nil {
				t.Skip("no /etc/shadow here")
			}
			name := "m" + string(rune('a'+i))
			body := `{"name":"` + name + `","spec":{"model":"` + tt.model + `","engine":"trees"}}`
			code, b := postDeployment(t, tt.srv, "/v1/deployments", body)
			if code != tt.want || !strings.Contains(string(b), tt.wantMsg) {
				t.Fatalf("POST model %s = %d %s; want %d with %q", tt.model, code, b, tt.want, tt.wantMsg)
			}
			if strings.Contains(string(b), "root:") || strings.Contains(string(b), "xxxx") {
				t.Errorf("refusal quotes the file: %s", b)
			}
		})
	}

	t.Run("traffic target outside the roots", func(t *testing.T) {
		body := `{"name":"split","spec":{"model":"` + good + `","engine":"trees","traffic":[{"model":"` + good + `","weight":90},{"model":"/etc/passwd","weight":10}]}}`
		code, b := postDeployment(t, confined, "/v1/deployments", body)
		if code != http.StatusBadRequest || !strings.Contains(string(b), "is outside the directories") {
			t.Fatalf("a split to /etc/passwd = %d %s; want 400 as spec.model would get", code, b)
		}
	})

	t.Run("patch to dev zero", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPatch, confined.URL+"/v1/deployments/ma", strings.NewReader(`{"spec":{"model":"/dev/zero"}}`))
		req.Header.Set("Content-Type", "application/merge-patch+json")
		resp, err := confined.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("PATCH model /dev/zero = %d; want 400", resp.StatusCode)
		}
	})
}

func postDeployment(t *testing.T, srv *httptest.Server, path, body string) (int, []byte) {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, []byte(b.String())
}

// TestPythonClassPaths: the file of spec.python.class is confined as
// spec.model is: relative to the model's directory and inside it, or
// absolute under the roots, and on the server where the model is.
func TestPythonClassPaths(t *testing.T) {
	root := t.TempDir()
	model := filepath.Join(root, "churn")
	for name, content := range map[string]string{"model.py": "class Model: pass\n", "sub/m.py": "", "weights.joblib": "x"} {
		p := filepath.Join(model, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside := filepath.Join(t.TempDir(), "evil.py")
	os.WriteFile(outside, []byte("import os\n"), 0o644)
	if err := os.Symlink(outside, filepath.Join(model, "link.py")); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := api.New(st, &fakeController{statuses: map[string]serving.Status{}}, nil)
	h.ConfineModelPaths(api.ModelPaths{Roots: []string{root}})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	tests := []struct {
		name, model, class string
		want               int
		wantMsg            string
	}{
		{name: "file in the model directory", model: model, class: "model.py:Model", want: 201},
		{name: "file in a subdirectory", model: model, class: "sub/m.py:Model", want: 201},
		{name: "beside a model file", model: filepath.Join(model, "weights.joblib"), class: "model.py:Model", want: 201},
		{name: "absolute under a root", model: model, class: filepath.Join(model, "model.py") + ":Model", want: 201},
		{name: "a module", model: model, class: "sklearn.linear_model:LinearRegression", want: 201},
		{name: "registry version", model: "churn@champion", class: "model.py:Model", want: 201},
		{name: "absolute outside", model: model, class: outside + ":Model", want: 400, wantMsg: "the file is outside the directories"},
		{name: "etc", model: model, class: "/etc/passwd.py:Model", want: 400, wantMsg: "the file is outside the directories"},
		{name: "dot-dot", model: model, class: "../../evil.py:Model", want: 400, wantMsg: "leaves the model's directory"},
		{name: "dot-dot inside a path", model: model, class: "sub/../../x.py:Model", want: 400, wantMsg: "leaves the model's directory"},
		{name: "dot-dot from a registry version", model: "churn@champion", class: "../../../etc/x.py:Model", want: 400, wantMsg: "leaves the model's directory"},
		{name: "link out of the root", model: model, class: "link.py:Model", want: 400, wantMsg: "links to a file outside"},
		{name: "missing", model: model, class: "absent.py:Model", want: 400, wantMsg: "does not exist on the server"},
		{name: "a directory", model: model, class: "sub/:Model", want: 400, wantMsg: "not a regular file (it is a directory)"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"name": "py" + string(rune('a'+i)),
				"spec": map[string]any{"engine": "python", "model": tt.model, "python": map[string]string{"class": tt.class}}})
			code, b := postDeployment(t, srv, "/v1/deployments", string(body))
			if code != tt.want || !strings.Contains(string(b), tt.wantMsg) {
				t.Fatalf("POST class %s = %d %s; want %d with %q", tt.class, code, b, tt.want, tt.wantMsg)
			}
			if code == http.StatusBadRequest && !strings.Contains(string(b), "spec.python.class") {
				t.Errorf("refusal does not name spec.python.class: %s", b)
			}
		})
	}
	t.Run("put", func(t *testing.T) {
		body := `{"spec":{"engine":"python","model":"` + model + `","python":{"class":"/etc/x.py:M"}}}`
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/deployments/pya", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("PUT class /etc/x.py = %d; want 400", resp.StatusCode)
		}
	})
}

// TestAnswersBounded: a refusal quotes at most a few hundred bytes of a
// user's value, never a 100 KB class, env key or model.
func TestAnswersBounded(t *testing.T) {
	root := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := api.New(st, &fakeController{statuses: map[string]serving.Status{}}, nil)
	h.ConfineModelPaths(api.ModelPaths{Roots: []string{root}})
	confined := httptest.NewServer(h)
	t.Cleanup(confined.Close)
	auth := newAuthEnv(t, "deploy")

	long := strings.Repeat("A", 100<<10)
	spec := func(s map[string]any) string {
		b, _ := json.Marshal(map[string]any{"name": "big", "spec": s})
		return string(b)
	}
	tests := []struct {
		name string
		body string
		auth bool
		want int
	}{
		{name: "class file", body: spec(map[string]any{"engine": "python", "model": root, "python": map[string]string{"class": long + ".py:M"}}), want: 400},
		{name: "class without a colon", body: spec(map[string]any{"engine": "python", "model": root, "python": map[string]string{"class": long}}), want: 400},
		{name: "class name", body: spec(map[string]any{"engine": "python", "model": root, "python": map[string]string{"class": "../" + long + ".py:" + long}}), want: 400},
		{name: "env key", body: spec(map[string]any{"model": "m.json", "engine": "trees", "env": map[string]string{long + "=": "1"}}), want: 400},
		{name: "model path", body: spec(map[string]any{"model": "/" + long, "engine": "trees"}), want: 400},
		{name: "url", body: spec(map[string]any{"engine": "http", "url": "ftp://" + long}), want: 400},
		{name: "code env key", body: spec(map[string]any{"model": "m.json", "engine": "trees", "env": map[string]string{"LD_" + long: "1"}}), auth: true, want: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			var b []byte
			if tt.auth {
				var s string
				code, _, s = auth.do(t, auth.tokens["deploy"], "POST", "/v1/deployments", tt.body)
				b = []byte(s)
			} else {
				code, b = postDeployment(t, confined, "/v1/deployments", tt.body)
			}
			if code != tt.want || len(b) >= 2<<10 {
				t.Fatalf("= %d with %d bytes: %.600s; want %d with less than 2 KiB", code, len(b), b, tt.want)
			}
			if !strings.Contains(string(b), "AAAA") || !strings.Contains(string(b), "bytes)") {
				t.Errorf("answer %s; want the value clipped, saying how long it was", b)
			}
		})
	}
}

// TestPatchRechecksPaths: a merge patch that changes the python class or
// the traffic split is checked as a create would be.
func TestPatchRechecksPaths(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"m.py", "a.json"} {
		os.WriteFile(filepath.Join(root, f), nil, 0o644)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := api.New(st, &fakeController{statuses: map[string]serving.Status{}}, nil)
	h.ConfineModelPaths(api.ModelPaths{Roots: []string{root}})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if code, b := postDeployment(t, srv, "/v1/deployments", `{"name":"p","spec":{"engine":"python","model":"`+root+`","python":{"class":"m.py:M"}}}`); code != http.StatusCreated {
		t.Fatalf("create = %d %s", code, b)
	}
	tests := []struct {
		name, patch string
		want        int
	}{
		{"scale", `{"spec":{"scaling":{"maxReplicas":2}}}`, 200},
		{"absolute class outside", `{"spec":{"python":{"class":"/etc/x.py:M"}}}`, 400},
		{"escaping class", `{"spec":{"python":{"class":"../x.py:M"}}}`, 400},
		{"split to /etc/passwd", `{"spec":{"traffic":[{"model":"` + root + `","weight":50},{"model":"/etc/passwd","weight":50}]}}`, 400},
		{"class inside", `{"spec":{"python":{"class":"` + filepath.Join(root, "m.py") + `:M"}}}`, 200},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodPatch, srv.URL+"/v1/deployments/p", strings.NewReader(tt.patch))
		req.Header.Set("Content-Type", "application/merge-patch+json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("PATCH %s = %d; want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
}
