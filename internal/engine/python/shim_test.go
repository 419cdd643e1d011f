package python_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/python"
	"github.com/google/go-cmp/cmp"
)

func TestWriteShimConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	paths := make([]string, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = python.WriteShim(dir)
		}()
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil {
			t.Fatalf("WriteShim: %v", errs[i])
		}
		if paths[i] != paths[0] {
			t.Errorf("WriteShim returned %s and %s", paths[0], paths[i])
		}
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, python.Shim()) {
		t.Error("the written shim differs from the embedded one")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("cache dir holds %d files, want only the shim (no temporary files left)", len(entries))
	}
	// A corrupted copy is replaced.
	if err := os.WriteFile(paths[0], []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := python.WriteShim(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(paths[0]); !bytes.Equal(b, python.Shim()) {
		t.Error("WriteShim kept a corrupted shim")
	}
}

func TestArgv(t *testing.T) {
	got := python.Argv("/c/shim.py", python.Options{
		Class: "model.py:Model", Model: "/m/model.joblib", Deployment: "d", ReplicaID: "r",
		ListenFD: 3, NotifyFD: 4, DrainTimeout: 1500 * time.Millisecond,
	})
	want := []string{"/usr/bin/python3", "-u", "/c/shim.py", "--deployment", "d", "--id", "r",
		"--model", "/m/model.joblib", "--python-class", "model.py:Model",
		"--listen-fd", "3", "--notify-fd", "4", "--drain-timeout", "1.5"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Argv (-want +got):\n%s", diff)
	}
}

// TestRequests sends the same OIP v2 requests to the shim with numpy and
// without it (the pure-Python path), checking answers and errors.
func TestRequests(t *testing.T) {
	requirePython(t, "numpy")
	for _, mode := range []struct {
		name string
		env  []string
		kind string // the module of the values predict receives
		fp32 string // the datatype an FP32 input comes back as
	}{
		{name: "numpy", kind: "numpy", fp32: "FP32"},
		{name: "no numpy", env: []string{"PYTHONPATH=" + testdata(t, "nonumpy")}, kind: "builtins", fp32: "FP64"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			p := startShim(t, mode.env, "--deployment", "echo", "--model", testdata(t, ""), "--python-class", "echo.py:Model")
			if err := p.notice.Err(); err != nil {
				t.Fatal(err)
			}
			infer := p.endpoint + "/v2/models/echo/infer"
			tests := []struct {
				name       string
				method     string
				url        string
				body       string
				wantStatus int
				want       map[string]any // the whole answer, when set
				wantError  string         // a part of the error message
			}{
				{
					name: "echo", method: "POST", url: infer,
					body:       `{"id":"a","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,null]]},{"name":"s","shape":[1],"datatype":"BYTES","data":["hé"]}]}`,
					wantStatus: 200,
					want: map[string]any{"model_name": "echo", "id": "a", "outputs": []any{
						map[string]any{"name": "kind", "datatype": "BYTES", "shape": []any{2.0}, "data": []any{mode.kind, mode.kind}},
						map[string]any{"name": "x_out", "datatype": mode.fp32, "shape": []any{2.0, 2.0}, "data": []any{1.0, 2.0, 3.0, nil}},
						map[string]any{"name": "s_out", "datatype": "BYTES", "shape": []any{1.0}, "data": []any{"hé"}},
					}},
				},
				{
					name: "output filter", method: "POST", url: p.endpoint + "/v2/models/echo/versions/7/infer",
					body:       `{"inputs":[{"name":"b","shape":[2],"datatype":"BOOL","data":[true,false]}],"outputs":[{"name":"b_out"}]}`,
					wantStatus: 200,
					want: map[string]any{"model_name": "echo", "model_version": "7", "outputs": []any{
						map[string]any{"name": "b_out", "datatype": "BOOL", "shape": []any{2.0}, "data": []any{true, false}},
					}},
				},
				{name: "not JSON", method: "POST", url: infer, body: `{"inputs":`, wantStatus: 400, wantError: "not valid JSON"},
				{name: "empty body", method: "POST", url: infer, body: ``, wantStatus: 400, wantError: "request body is empty"},
				{name: "no inputs", method: "POST", url: infer, body: `{"inputs":[]}`, wantStatus: 400, wantError: "request has no inputs"},
				{name: "shape mismatch", method: "POST", url: infer, body: `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}`,
					wantStatus: 400, wantError: `input "x": shape [2, 2] holds 4 elements but data has 3`},
				{name: "wrong datatype", method: "POST", url: infer, body: `{"inputs":[{"name":"x","shape":[1],"datatype":"INT32","data":["a"]}]}`,
					wantStatus: 400, wantError: `input "x": data does not match datatype INT32`},
				{name: "out of range", method: "POST", url: infer, body: `{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[300]}]}`,
					wantStatus: 400, wantError: `300 is out of range for INT8`},
				{name: "unknown datatype", method: "POST", url: infer, body: `{"inputs":[{"name":"x","shape":[1],"datatype":"FP8","data":[1]}]}`,
					wantStatus: 400, wantError: `unsupported datatype "FP8"`},
				{name: "model error", method: "POST", url: infer, body: `{"inputs":[{"name":"fail","shape":[1],"datatype":"FP32","data":[1]}]}`,
					wantStatus: 500, wantError: "model echo: ValueError: the model cannot handle input fail"},
				{name: "model rejects input", method: "POST", url: infer, body: `{"inputs":[{"name":"reject","shape":[1],"datatype":"FP32","data":[1]}]}`,
					wantStatus: 422, wantError: "input reject is not for this model"},
				{name: "unknown output", method: "POST", url: infer, body: `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{"name":"nope"}]}`,
					wantStatus: 400, wantError: `unknown output "nope"`},
				{name: "other model", method: "POST", url: p.endpoint + "/v2/models/other/infer", body: `{}`, wantStatus: 404, wantError: `model "other" not found`},
				{name: "GET infer", method: "GET", url: infer, wantStatus: 405, wantError: "use POST"},
				{name: "unknown path", method: "GET", url: p.endpoint + "/v3", wantStatus: 404, wantError: "no endpoint GET /v3"},
				{name: "live", method: "GET", url: p.endpoint + "/v2/health/live", wantStatus: 200, want: map[string]any{"live": true}},
				{name: "ready", method: "GET", url: p.endpoint + "/v2/health/ready", wantStatus: 200, want: map[string]any{"ready": true}},
				{name: "model ready", method: "GET", url: p.endpoint + "/v2/models/echo/ready", wantStatus: 200, want: map[string]any{"name": "echo", "ready": true}},
				{
					// Without metadata(), the metadata is what the first
					// successful request carried, the batch dimension dynamic.
					name: "learned metadata", method: "GET", url: p.endpoint + "/v2/models/echo", wantStatus: 200,
					want: map[string]any{"name": "echo", "platform": "python",
						"inputs": []any{
							map[string]any{"name": "x", "datatype": "FP32", "shape": []any{-1.0, 2.0}},
							map[string]any{"name": "s", "datatype": "BYTES", "shape": []any{-1.0}},
						},
						"outputs": []any{
							map[string]any{"name": "kind", "datatype": "BYTES", "shape": []any{-1.0}},
							map[string]any{"name": "x_out", "datatype": mode.fp32, "shape": []any{-1.0, 2.0}},
							map[string]any{"name": "s_out", "datatype": "BYTES", "shape": []any{-1.0}},
						}},
				},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					var body any
					if tt.method == "POST" {
						body = tt.body
					}
					status, got := call(t, tt.method, tt.url, body)
					if status != tt.wantStatus {
						t.Errorf("status %d, want %d: %v", status, tt.wantStatus, got)
					}
					if tt.want != nil {
						if diff := cmp.Diff(tt.want, got); diff != "" {
							t.Errorf("answer (-want +got):\n%s", diff)
						}
					}
					if tt.wantError != "" {
						if msg, _ := got["error"].(string); !strings.Contains(msg, tt.wantError) {
							t.Errorf("error %q does not contain %q", msg, tt.wantError)
						}
					}
				})
			}
		})
	}
}

func TestDeclaredSignature(t *testing.T) {
	requirePython(t, "numpy")
	p := startShim(t, nil, "--deployment", "sig", "--model", testdata(t, ""), "--python-class", "signature.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	infer := p.endpoint + "/v2/models/sig/infer"
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantError  string
		wantData   []any
	}{
		{name: "ok", body: `{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6.5]}]}`, wantStatus: 200, wantData: []any{6.0, 15.5}},
		{name: "wrong width", body: `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`,
			wantStatus: 400, wantError: `input "x": expected FP32 of shape [-1, 3], got FP32 of shape [1, 2]`},
		{name: "wrong datatype", body: `{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP64","data":[1,2,3]}]}`,
			wantStatus: 400, wantError: `expected FP32 of shape [-1, 3], got FP64`},
		{name: "unknown input", body: `{"inputs":[{"name":"y","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}`,
			wantStatus: 400, wantError: `unknown input "y": model "sig" takes x (FP32 [-1, 3])`},
		{name: "unknown output", body: `{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}],"outputs":[{"name":"z"}]}`,
			wantStatus: 400, wantError: `unknown output "z": model "sig" returns predict`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := call(t, "POST", infer, tt.body)
			if status != tt.wantStatus {
				t.Errorf("status %d, want %d: %v", status, tt.wantStatus, got)
			}
			if tt.wantError != "" {
				if msg, _ := got["error"].(string); !strings.Contains(msg, tt.wantError) {
					t.Errorf("error %q does not contain %q", msg, tt.wantError)
				}
			}
			if tt.wantData != nil {
				want := map[string]any{"model_name": "sig", "outputs": []any{
					map[string]any{"name": "predict", "datatype": "FP64", "shape": []any{2.0}, "data": tt.wantData},
				}}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("answer (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestDrain checks that SIGTERM lets a request in flight finish before the
// replica exits 0.
func TestDrain(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	entered, release := filepath.Join(dir, "entered"), filepath.Join(dir, "release")
	for _, f := range []string{entered, release} {
		if err := syscall.Mkfifo(f, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := startShim(t, []string{"ENTERED=" + entered, "RELEASE=" + release},
		"--deployment", "slow", "--model", testdata(t, ""), "--python-class", "block.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		status int
		body   map[string]any
	}
	done := make(chan answer, 1)
	go func() {
		status, body := call(t, "POST", p.endpoint+"/v2/models/slow/infer", `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`)
		done <- answer{status, body}
	}()
	// Opening the FIFO blocks until predict opens it: the request is in
	// flight.
	if _, err := os.ReadFile(entered); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, `"msg": "draining"`)
	if err := os.WriteFile(release, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := <-done
	want := map[string]any{"model_name": "slow", "outputs": []any{
		map[string]any{"name": "done", "datatype": "BOOL", "shape": []any{1.0}, "data": []any{true}},
	}}
	if a.status != 200 || !cmp.Equal(want, a.body) {
		t.Errorf("in-flight request got %d %v, want 200 %v", a.status, a.body, want)
	}
	for range p.lines {
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("replica exit after drain: %v, want exit 0", err)
	}
}

func TestTorch(t *testing.T) {
	// PyTorch is optional: this checks the shim with Debian's python3-torch
	// where it is installed.
	if err := exec.Command(python.DefaultInterpreter, "-c", "import torch, numpy").Run(); err != nil {
		t.Skipf("skipping: %s cannot import torch (apt-get install python3-torch): %v", python.DefaultInterpreter, err)
	}
	p := startShim(t, nil, "--deployment", "linear", "--model", testdata(t, ""), "--python-class", "torch_linear.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatal(err)
	}
	status, got := call(t, "POST", p.endpoint+"/v2/models/linear/infer",
		`{"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[0,0,2]]}]}`)
	want := map[string]any{"model_name": "linear", "outputs": []any{
		map[string]any{"name": "predict", "datatype": "FP32", "shape": []any{2.0, 2.0}, "data": []any{14.5, -0.5, 6.5, -0.5}},
	}}
	if status != 200 {
		t.Fatalf("status %d: %v", status, got)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
}
