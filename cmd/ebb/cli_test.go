package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// cliController is the control loop as the CLI tests need it: canned
// statuses.
type cliController struct {
	mu       sync.Mutex
	statuses map[string]serving.Status
}

func (c *cliController) Status(name string) serving.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statuses[name]
}

func (c *cliController) Notify(string) {}

type cliEnv struct {
	st  *sqlite.Store
	ctl *cliController
	url string
}

// newCLIEnv serves the real admin API over a real SQLite store, and an
// inference endpoint for model "diabetes" that answers a fixed prediction.
func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	ctl := &cliController{statuses: map[string]serving.Status{}}
	mux := http.NewServeMux()
	mux.Handle("/v1/", api.New(st, ctl, nil))
	mux.HandleFunc("POST /v2/models/{name}/infer", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != "diabetes" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"model \"`+r.PathValue("name")+`\" not found"}`)
			return
		}
		var req struct {
			ID string `json:"id"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		io.WriteString(w, `{"model_name":"diabetes","id":"`+req.ID+`","outputs":[{"name":"predict","shape":[1],"datatype":"FP32","data":[151.5]}]}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Setenv(serverEnv, "") // a developer's own setting must not leak in
	return &cliEnv{st: st, ctl: ctl, url: srv.URL}
}

// run executes `ebb args...` against the test server and returns stdout.
func (e *cliEnv) run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	return runEbb(t, stdin, append(args, "--server", e.url)...)
}

func runEbb(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(io.Discard)
	err := root.Execute()
	return out.String(), err
}

func (e *cliEnv) mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := e.run(t, stdin, args...)
	if err != nil {
		t.Fatalf("ebb %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (e *cliEnv) get(t *testing.T, name string) serving.Deployment {
	t.Helper()
	d, err := e.st.GetDeployment(context.Background(), name)
	if err != nil {
		t.Fatalf("GetDeployment(%q): %v", name, err)
	}
	return d
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const diabetesYAML = `name: diabetes
spec:
  model: examples/diabetes/model.json
  scaling:
    minReplicas: 0
    maxReplicas: 4
    scaleToZeroAfter: 30s
`

func TestCLIDeploy(t *testing.T) {
	e := newCLIEnv(t)
	file := writeFile(t, "diabetes.yaml", diabetesYAML)

	if out := e.mustRun(t, "", "deploy", "-f", file); out != "deployment/diabetes created\n" {
		t.Errorf("first deploy printed %q", out)
	}
	want := serving.Spec{Model: "examples/diabetes/model.json",
		Scaling: serving.Scaling{MaxReplicas: 4, ScaleToZeroAfter: serving.D(30 * time.Second)}}
	want.Default()
	if diff := cmp.Diff(want, e.get(t, "diabetes").Spec); diff != "" {
		t.Errorf("deployed spec (-want +got):\n%s", diff)
	}

	// The same name from standard input, as JSON, replaces the spec.
	in := `{"name":"diabetes","spec":{"model":"v2.json","scaling":{"minReplicas":1}}}`
	if out := e.mustRun(t, in, "deploy", "-f", "-"); out != "deployment/diabetes configured\n" {
		t.Errorf("second deploy printed %q", out)
	}
	got := e.get(t, "diabetes")
	if got.Spec.Model != "v2.json" || got.Spec.Scaling.MinReplicas != 1 || got.Generation != 2 {
		t.Errorf("after replace: %+v", got)
	}

	// What `get -o yaml` prints deploys again unchanged.
	y := e.mustRun(t, "", "get", "deployments", "diabetes", "-o", "yaml")
	if out := e.mustRun(t, "", "deploy", "-f", writeFile(t, "again.yaml", y)); out != "deployment/diabetes configured\n" {
		t.Errorf("redeploy of get -o yaml printed %q", out)
	}
	if again := e.get(t, "diabetes"); again.Generation != got.Generation {
		t.Errorf("redeploying the same spec changed the generation from %d to %d", got.Generation, again.Generation)
	}
}

func TestCLIDeployErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		args    []string
		wantErr []string
	}{
		{name: "no file", args: []string{"deploy"}, wantErr: []string{"-f FILE"}},
		{name: "missing file", args: []string{"deploy", "-f", "/nonexistent/x.yaml"}, wantErr: []string{"/nonexistent/x.yaml"}},
		{name: "not YAML", file: "name: [unclosed", wantErr: []string{"not valid YAML or JSON"}},
		{name: "no name", file: "spec:\n  model: m.json\n", wantErr: []string{"name is required"}},
		{
			name:    "unknown field",
			file:    "name: iris\nspec:\n  model: m.json\n  scaling:\n    minReplica: 1\n",
			wantErr: []string{"spec.scaling.minReplica: unknown field"},
		},
		{
			name:    "invalid duration",
			file:    "name: iris\nspec:\n  model: m.json\n  scaling:\n    scaleToZeroAfter: 5 minutes\n",
			wantErr: []string{`spec.scaling.scaleToZeroAfter: invalid duration "5 minutes"`},
		},
		{
			name:    "every problem",
			file:    "name: iris\nspec:\n  engine: tensorflow\n  scaling:\n    minReplicas: 5\n    maxReplicas: 2\n",
			wantErr: []string{"spec.model: is required", `unknown engine "tensorflow"`, "minReplicas (5) must not exceed maxReplicas (2)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCLIEnv(t)
			args := tt.args
			if tt.file != "" {
				args = []string{"deploy", "-f", writeFile(t, "d.yaml", tt.file)}
			}
			_, err := e.run(t, "", args...)
			if err == nil {
				t.Fatalf("ebb %v succeeded, want an error", args)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if ds, _ := e.st.ListDeployments(context.Background()); len(ds) != 0 {
				t.Errorf("failed deploy stored %v", ds)
			}
		})
	}
}

func TestCLIGet(t *testing.T) {
	e := newCLIEnv(t)
	// Created three hours ago, so AGE reads 3h.
	e.st.Now = func() time.Time { return time.Now().Add(-3 * time.Hour) }
	for _, doc := range []string{
		`{"name":"iris","spec":{"model":"iris.json","scaling":{"minReplicas":1,"maxReplicas":2}}}`,
		`{"name":"diabetes","spec":{"model":"diabetes.json"}}`,
	} {
		e.mustRun(t, doc, "deploy", "-f", "-")
	}
	started := time.Now().Add(-90 * time.Second)
	e.ctl.statuses["diabetes"] = serving.Status{
		Replicas: 2, ReadyReplicas: 1, DesiredReplicas: 2, Reason: "scaled up for 12 held requests",
		ReplicaStatuses: []serving.ReplicaStatus{
			{ID: "diabetes-a1", State: serving.ReplicaReady, Endpoint: "http://127.0.0.1:4001", StartedAt: started,
				ColdStart: []serving.Phase{
					{Name: serving.PhaseProcessStarted, Duration: serving.D(12 * time.Millisecond)},
					{Name: serving.PhaseModelLoaded, Duration: serving.D(80 * time.Millisecond)},
					{Name: serving.PhaseReady, Duration: serving.D(433821 * time.Nanosecond)},
				}},
			{ID: "diabetes-b2", State: serving.ReplicaStarting, StartedAt: started, Message: "loading model"},
		},
	}

	t.Run("table", func(t *testing.T) {
		out := e.mustRun(t, "", "get", "deployments")
		want := [][]string{
			{"NAME", "MODEL", "ENGINE", "READY", "MIN", "MAX", "AGE"},
			{"diabetes", "diabetes.json", "trees", "1/2", "0", "4", "3h"},
			{"iris", "iris.json", "trees", "0/0", "1", "2", "3h"},
		}
		if diff := cmp.Diff(want, fields(out)); diff != "" {
			t.Errorf("get deployments (-want +got):\n%s\n%s", diff, out)
		}
	})
	t.Run("one with replicas", func(t *testing.T) {
		for _, alias := range []string{"deployments", "deployment", "deploy"} {
			out := e.mustRun(t, "", "get", alias, "diabetes")
			want := [][]string{
				{"NAME", "MODEL", "ENGINE", "READY", "MIN", "MAX", "AGE"},
				{"diabetes", "diabetes.json", "trees", "1/2", "0", "4", "3h"},
				{"REPLICA", "STATE", "ENDPOINT", "AGE", "RESTARTS", "COLD", "START"},
				{"diabetes-a1", "ready", "http://127.0.0.1:4001", "90s", "0",
					"process_started", "12ms,", "model_loaded", "80ms,", "ready", "434µs", "(total", "92ms)"},
				{"diabetes-b2", "starting", "-", "90s", "0", "-"},
				{"diabetes-b2:", "loading", "model"},
				{"Reason:", "scaled", "up", "for", "12", "held", "requests"},
			}
			if diff := cmp.Diff(want, fields(out)); diff != "" {
				t.Errorf("get %s diabetes (-want +got):\n%s\n%s", alias, diff, out)
			}
		}
	})
	t.Run("json and yaml", func(t *testing.T) {
		var fromJSON, fromYAML api.List
		out := e.mustRun(t, "", "get", "deployments", "-o", "json")
		if err := json.Unmarshal([]byte(out), &fromJSON); err != nil {
			t.Fatalf("-o json is not a list: %v\n%s", err, out)
		}
		out = e.mustRun(t, "", "get", "deployments", "-o", "yaml")
		if err := yaml.UnmarshalStrict([]byte(out), &fromYAML); err != nil {
			t.Fatalf("-o yaml is not a list: %v\n%s", err, out)
		}
		if diff := cmp.Diff(fromJSON, fromYAML); diff != "" {
			t.Errorf("json and yaml differ (-json +yaml):\n%s", diff)
		}
		if len(fromJSON.Items) != 2 || fromJSON.Items[0].Status.ReadyReplicas != 1 {
			t.Errorf("-o json items = %+v, want diabetes (with status) and iris", fromJSON.Items)
		}
		var one serving.Deployment
		out = e.mustRun(t, "", "get", "deployment", "iris", "-o", "json")
		if err := json.Unmarshal([]byte(out), &one); err != nil || one.Name != "iris" {
			t.Errorf("get deployment iris -o json = %v, %v", one, err)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{"get", "deployments", "nope"}, "deployment \"nope\" not found: list deployments with `ebb get deployments`"},
			{[]string{"get", "deployments", "-o", "xml"}, `unknown output format "xml"`},
			{[]string{"get", "pods"}, `unknown resource "pods"`},
		} {
			_, err := e.run(t, "", tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ebb %v error = %v, want it to contain %q", tt.args, err, tt.want)
			}
		}
	})
}

func TestCLIGetEmpty(t *testing.T) {
	e := newCLIEnv(t)
	if out := e.mustRun(t, "", "get", "deployments"); !strings.Contains(out, "No deployments") {
		t.Errorf("empty get printed %q", out)
	}
	if out := e.mustRun(t, "", "get", "deployments", "-o", "json"); strings.Join(strings.Fields(out), "") != `{"items":[]}` {
		t.Errorf("empty get -o json printed %q", out)
	}
}

// fields splits out into lines of whitespace-separated fields, skipping
// blank lines.
func fields(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			rows = append(rows, f)
		}
	}
	return rows
}

func TestCLIScale(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantErr  string
		min, max int32
	}{
		{name: "min and max", args: []string{"--min", "1", "--max", "6"}, wantOut: "deployment/diabetes scaled (min 1, max 6)\n", min: 1, max: 6},
		{name: "max only", args: []string{"--max", "9"}, wantOut: "deployment/diabetes scaled (min 0, max 9)\n", min: 0, max: 9},
		{name: "replicas pins", args: []string{"--replicas", "3"}, wantOut: "deployment/diabetes pinned at 3 replicas: the autoscaler is off until `ebb scale diabetes --auto`\n", min: 0, max: 4},
		{name: "min zero", args: []string{"--min", "0"}, wantOut: "deployment/diabetes scaled (min 0, max 4)\n", min: 0, max: 4},
		{name: "no flag", wantErr: "nothing to change", min: 0, max: 4},
		{name: "replicas with min", args: []string{"--replicas", "2", "--min", "1"}, wantErr: "use it alone", min: 0, max: 4},
		{name: "min above max", args: []string{"--min", "7"}, wantErr: "minReplicas (7) must not exceed maxReplicas (4)", min: 0, max: 4},
		{name: "negative", args: []string{"--max", "-1"}, wantErr: "spec.scaling.maxReplicas: must be at least 1", min: 0, max: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCLIEnv(t)
			e.mustRun(t, diabetesYAML, "deploy", "-f", "-")
			out, err := e.run(t, "", append([]string{"scale", "diabetes"}, tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error = %v, want it to contain %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("scale: %v", err)
			}
			if out != tt.wantOut {
				t.Errorf("printed %q, want %q", out, tt.wantOut)
			}
			sc := e.get(t, "diabetes").Spec.Scaling
			if sc.MinReplicas != tt.min || sc.MaxReplicas != tt.max {
				t.Errorf("stored min %d max %d, want %d %d", sc.MinReplicas, sc.MaxReplicas, tt.min, tt.max)
			}
		})
	}
	t.Run("unknown deployment", func(t *testing.T) {
		e := newCLIEnv(t)
		_, err := e.run(t, "", "scale", "nope", "--max", "2")
		if err == nil || !strings.Contains(err.Error(), `deployment "nope" not found`) {
			t.Errorf("error = %v, want not found", err)
		}
	})
}

func TestCLIDelete(t *testing.T) {
	e := newCLIEnv(t)
	e.mustRun(t, diabetesYAML, "deploy", "-f", "-")
	e.mustRun(t, `{"name":"iris","spec":{"model":"iris.json"}}`, "deploy", "-f", "-")

	if out := e.mustRun(t, "", "delete", "diabetes"); out != "deployment/diabetes deleted\n" {
		t.Errorf("delete printed %q", out)
	}
	if out := e.mustRun(t, "", "delete", "deployment", "iris"); out != "deployment/iris deleted\n" {
		t.Errorf("delete deployment printed %q", out)
	}
	if ds, _ := e.st.ListDeployments(context.Background()); len(ds) != 0 {
		t.Errorf("deployments left after delete: %v", ds)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"delete", "diabetes"}, `deployment "diabetes" not found`},
		{[]string{"delete", "pod", "x"}, `unknown resource "pod"`},
		{[]string{"delete"}, "accepts between 1 and 2 arg(s)"},
	} {
		if _, err := e.run(t, "", tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ebb %v error = %v, want it to contain %q", tt.args, err, tt.want)
		}
	}
}

func TestCLIPredict(t *testing.T) {
	e := newCLIEnv(t)
	req := `{"id":"r1","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`
	want := `{
  "model_name": "diabetes",
  "id": "r1",
  "outputs": [
    {
      "name": "predict",
      "shape": [
        1
      ],
      "datatype": "FP32",
      "data": [
        151.5
      ]
    }
  ]
}
`
	for _, tt := range []struct {
		name  string
		stdin string
		data  string
	}{
		{name: "inline", data: req},
		{name: "file", data: "@" + writeFile(t, "req.json", req)},
		{name: "stdin", stdin: req, data: "@-"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := e.run(t, tt.stdin, "predict", "diabetes", "--data", tt.data)
			if err != nil {
				t.Fatalf("predict: %v", err)
			}
			if diff := cmp.Diff(want, out); diff != "" {
				t.Errorf("predict output (-want +got):\n%s", diff)
			}
		})
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"predict", "diabetes"}, "--data"},
		{[]string{"predict", "diabetes", "--data", "{not json"}, "--data is not valid JSON"},
		{[]string{"predict", "diabetes", "--data", "@/nonexistent.json"}, "/nonexistent.json"},
		{[]string{"predict", "iris", "--data", req}, `model "iris" not found`},
	} {
		if _, err := e.run(t, "", tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ebb %v error = %v, want it to contain %q", tt.args, err, tt.want)
		}
	}
}

func TestCLIServer(t *testing.T) {
	e := newCLIEnv(t)
	e.mustRun(t, diabetesYAML, "deploy", "-f", "-")

	// EBB_SERVER is used when --server is not given.
	t.Setenv(serverEnv, e.url)
	out, err := runEbb(t, "", "get", "deployments", "-o", "json")
	if err != nil || !strings.Contains(out, `"diabetes"`) {
		t.Errorf("get with EBB_SERVER = %q, %v", out, err)
	}

	// --server wins over EBB_SERVER, and a server that is not there gets
	// a hint.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{
		{"get", "deployments", "--server", dead},
		{"delete", "diabetes", "--server", dead},
		{"scale", "diabetes", "--max", "2", "--server", dead},
		{"predict", "diabetes", "--data", "{}", "--server", dead},
		{"deploy", "-f", "-", "--server", dead},
	} {
		_, err := runEbb(t, diabetesYAML, args...)
		want := "cannot reach ebb at " + dead + ": is `ebb up` running? set --server or EBB_SERVER"
		if err == nil || err.Error() != want {
			t.Errorf("ebb %v error = %v, want %q", args, err, want)
		}
	}

	t.Setenv(serverEnv, "")
	if got, want := serverURL(newGetCmd()), defaultServer; got != want {
		t.Errorf("default server = %q, want %q", got, want)
	}
}

func TestAge(t *testing.T) {
	now := time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		ago  time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{45 * time.Second, "45s"},
		{119 * time.Second, "119s"},
		{5 * time.Minute, "5m"},
		{3 * time.Hour, "3h"},
		{47 * time.Hour, "47h"},
		{72 * time.Hour, "3d"},
	} {
		if got := age(now, now.Add(-tt.ago)); got != tt.want {
			t.Errorf("age(%v ago) = %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := age(now, time.Time{}); got != "<unknown>" {
		t.Errorf("age(zero) = %q", got)
	}
}
