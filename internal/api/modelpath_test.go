package api_test

import (
	"context"
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
