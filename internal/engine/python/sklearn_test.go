package python_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/process"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"sigs.k8s.io/yaml"
)

// golden is examples/sklearn-python/golden.json.
type golden struct {
	Inputs struct {
		Features [][]*float64 `json:"features"`
		Clinic   []string     `json:"clinic"`
	} `json:"inputs"`
	Predictions []float64 `json:"predictions"`
}

func readGolden(t *testing.T) golden {
	t.Helper()
	b, err := os.ReadFile(examplePath(t, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Predictions) == 0 || len(g.Inputs.Features) != len(g.Predictions) || len(g.Inputs.Clinic) != len(g.Predictions) {
		t.Fatalf("golden.json has %d feature rows, %d clinics, %d predictions", len(g.Inputs.Features), len(g.Inputs.Clinic), len(g.Predictions))
	}
	return g
}

// goldenRequest is one infer request with every golden row.
func (g golden) request() map[string]any {
	n := len(g.Predictions)
	return map[string]any{"inputs": []map[string]any{
		{"name": "features", "datatype": "FP64", "shape": []int{n, len(g.Inputs.Features[0])}, "data": g.Inputs.Features},
		{"name": "clinic", "datatype": "BYTES", "shape": []int{n}, "data": g.Inputs.Clinic},
	}}
}

// checkPredictions compares an infer answer with the golden predictions.
// scikit-learn ran the same float64 arithmetic on the same inputs, so they
// agree to the last bits; the margin only absorbs BLAS summation order.
func checkPredictions(t *testing.T, g golden, body map[string]any) {
	t.Helper()
	var resp struct {
		Outputs []struct {
			Name     string    `json:"name"`
			Datatype string    `json:"datatype"`
			Shape    []int     `json:"shape"`
			Data     []float64 `json:"data"`
		} `json:"outputs"`
	}
	b, _ := json.Marshal(body)
	if err := json.Unmarshal(b, &resp); err != nil || len(resp.Outputs) != 1 {
		t.Fatalf("answer %s is not one output (%v)", b, err)
	}
	out := resp.Outputs[0]
	if out.Name != "predict" || out.Datatype != "FP64" || !cmp.Equal(out.Shape, []int{len(g.Predictions)}) {
		t.Errorf("output is %s %s %v, want predict FP64 [%d]", out.Name, out.Datatype, out.Shape, len(g.Predictions))
	}
	if diff := cmp.Diff(g.Predictions, out.Data, cmpopts.EquateApprox(1e-12, 1e-9)); diff != "" {
		t.Errorf("predictions differ from scikit-learn's (-golden +served):\n%s", diff)
	}
}

func TestSklearnExampleReplica(t *testing.T) {
	requirePython(t, "sklearn", "numpy", "joblib")
	g := readGolden(t)
	p := startReplica(t, nil, "--deployment", "sklearn-python", "--id", "r-1", "--model-version", "sklearn-python:1",
		"--model", examplePath(t, "model.joblib"), "--python-class", "model.py:Model")
	if err := p.notice.Err(); err != nil {
		t.Fatalf("replica failed to start: %v", err)
	}
	if p.notice.ModelLoadedAt.IsZero() || p.notice.ReadyAt.Before(p.notice.ModelLoadedAt) {
		t.Errorf("notice times: loaded %v, ready %v", p.notice.ModelLoadedAt, p.notice.ReadyAt)
	}

	t.Run("identity", func(t *testing.T) {
		status, info := call(t, "GET", p.endpoint+"/ebb/v1/replica", nil)
		want := map[string]any{"id": "r-1", "deployment": "sklearn-python", "pid": float64(p.cmd.Process.Pid)}
		got := map[string]any{"id": info["id"], "deployment": info["deployment"], "pid": info["pid"]}
		// The replica is the process the backend started; its workers
		// are its children.
		if status != 200 || !cmp.Equal(got, want) {
			t.Errorf("GET /ebb/v1/replica = %d %v, want %v", status, info, want)
		}
	})
	t.Run("metadata", func(t *testing.T) {
		status, meta := call(t, "GET", p.endpoint+"/v2/models/sklearn-python", nil)
		want := map[string]any{
			"name": "sklearn-python", "platform": "sklearn", "versions": []any{"1"},
			"inputs": []any{
				map[string]any{"name": "features", "datatype": "FP64", "shape": []any{-1.0, 10.0}},
				map[string]any{"name": "clinic", "datatype": "BYTES", "shape": []any{-1.0}},
			},
			"outputs": []any{map[string]any{"name": "predict", "datatype": "FP64", "shape": []any{-1.0}}},
		}
		if status != 200 {
			t.Fatalf("status %d: %v", status, meta)
		}
		if diff := cmp.Diff(want, meta); diff != "" {
			t.Errorf("metadata (-want +got):\n%s", diff)
		}
	})
	t.Run("golden", func(t *testing.T) {
		status, body := call(t, "POST", p.endpoint+"/v2/models/sklearn-python/infer", g.request())
		if status != 200 {
			t.Fatalf("status %d: %v", status, body)
		}
		checkPredictions(t, g, body)
	})
	t.Run("request.json", func(t *testing.T) {
		b, err := os.ReadFile(examplePath(t, "request.json"))
		if err != nil {
			t.Fatal(err)
		}
		status, body := call(t, "POST", p.endpoint+"/v2/models/sklearn-python/versions/1/infer", string(b))
		if status != 200 || body["model_version"] != "1" {
			t.Fatalf("status %d: %v", status, body)
		}
		outs, _ := body["outputs"].([]any)
		if len(outs) != 1 || len(outs[0].(map[string]any)["data"].([]any)) != 2 {
			t.Errorf("want 2 predictions, got %v", body)
		}
	})
	t.Run("rows disagree", func(t *testing.T) {
		// model.py raises a ValueError with http_status 400.
		req := g.request()
		req["inputs"].([]map[string]any)[1]["shape"] = []int{1}
		req["inputs"].([]map[string]any)[1]["data"] = g.Inputs.Clinic[:1]
		status, body := call(t, "POST", p.endpoint+"/v2/models/sklearn-python/infer", req)
		if msg, _ := body["error"].(string); status != 400 || !strings.Contains(msg, "send one clinic per row") {
			t.Errorf("status %d %v, want 400 with the model's message", status, body)
		}
	})
	if code := p.stop(t); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
}

func TestSklearnExampleProcessBackend(t *testing.T) {
	requirePython(t, "sklearn", "numpy", "joblib")
	g := readGolden(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := newBackend(t)
	h, err := b.Start(ctx, replica.Spec{
		ID: "sklearn-1", Deployment: "sklearn-python", Engine: "python",
		Model:  examplePath(t, "model.joblib"),
		Python: &serving.Python{Class: "model.py:Model"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop(context.Background(), h)
	st, err := b.Ready(ctx, h)
	if err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if st.ReadyAt.IsZero() {
		t.Errorf("Ready returned no ReadyAt: %+v", st)
	}
	// The backend gave the replica a secret: only its holder is served.
	if status, _ := call(t, "POST", h.Endpoint+"/v2/models/sklearn-python/infer", g.request()); h.Secret == "" || status != http.StatusUnauthorized {
		t.Errorf("a request without the replica's secret (%q) got %d, want 401", h.Secret, status)
	}
	status, body := callWith(t, http.Header{replica.SecretHeader: {h.Secret}}, "POST", h.Endpoint+"/v2/models/sklearn-python/infer", g.request())
	if status != 200 {
		t.Fatalf("status %d: %v", status, body)
	}
	checkPredictions(t, g, body)
	if err := b.Stop(ctx, h); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	exit, err := b.Wait(ctx, h)
	if err == nil && exit.Code != 0 {
		t.Errorf("replica exited %d (%v) after Stop, want 0", exit.Code, exit.Err)
	}
}

func newBackend(t *testing.T) *process.Backend {
	t.Helper()
	b, err := process.New(process.Options{
		Command: []string{ebbBin, "replica"},
		LogDir:  t.TempDir(),
		Env:     []string{"XDG_CACHE_HOME=" + t.TempDir()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadFailures(t *testing.T) {
	requirePython(t)
	dir := testdata(t, "")
	tests := []struct {
		name  string
		spec  serving.Python
		model string
		want  []string // each must appear in Ready's error
	}{
		{
			name: "load raises", spec: serving.Python{Class: "raises.py:Model"}, model: dir,
			want: []string{"raises.py", "RuntimeError: cannot read weights from " + dir, "raises.py line 6"},
		},
		{
			name: "syntax error", spec: serving.Python{Class: "syntax.py:Model"}, model: dir,
			want: []string{"syntax.py", "SyntaxError"},
		},
		{
			name: "no such class", spec: serving.Python{Class: "echo.py:Missing"}, model: dir,
			want: []string{"echo.py defines no Missing", "Model"},
		},
		{
			name: "no such file", spec: serving.Python{Class: "absent.py:Model"}, model: dir,
			want: []string{dir + "/absent.py does not exist"},
		},
		{
			name: "no such module", spec: serving.Python{Class: "absent_module_xyz:Model"}, model: dir,
			want: []string{"absent_module_xyz", "ModuleNotFoundError"},
		},
		{
			name: "no interpreter", spec: serving.Python{Class: "echo.py:Model", Interpreter: "/nonexistent/python3"}, model: dir,
			want: []string{"interpreter /nonexistent/python3 not found", "spec.python.interpreter"},
		},
	}
	b := newBackend(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			spec := tt.spec
			h, err := b.Start(ctx, replica.Spec{
				ID: "bad-" + string(rune('a'+i)), Deployment: "bad", Engine: "python", Model: tt.model, Python: &spec,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Stop(context.Background(), h)
			_, err = b.Ready(ctx, h)
			if err == nil {
				t.Fatal("Ready succeeded, want the load error")
			}
			t.Logf("Ready: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Ready error does not contain %q:\n%v", w, err)
				}
			}
			exit, werr := b.Wait(ctx, h)
			if werr != nil || exit.Code != 1 {
				t.Errorf("Wait = %+v, %v; want exit code 1", exit, werr)
			}
		})
	}
}

func TestGoldenIsFinite(t *testing.T) {
	// A NaN prediction would mean the pipeline failed to impute: the
	// example must exercise the imputer without producing NaN.
	g := readGolden(t)
	missing := 0
	for _, row := range g.Inputs.Features {
		for _, v := range row {
			if v == nil {
				missing++
			}
		}
	}
	if missing == 0 {
		t.Error("golden.json has no missing feature: the imputer is not exercised")
	}
	for i, p := range g.Predictions {
		if math.IsNaN(p) || math.IsInf(p, 0) {
			t.Errorf("prediction %d is %v", i, p)
		}
	}
}

func TestExampleDeployment(t *testing.T) {
	b, err := os.ReadFile(examplePath(t, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var d serving.Deployment
	if err := yaml.UnmarshalStrict(b, &d); err != nil {
		t.Fatalf("deployment.yaml: %v", err)
	}
	d.Spec.Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("deployment.yaml: %v", err)
	}
	got := replica.SpecFor(d.Name, d.Spec)
	want := replica.Spec{
		Deployment: "sklearn-python", Engine: "python", Model: "examples/sklearn-python/model.joblib",
		Python: &serving.Python{Class: "model.py:Model"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("replica spec of deployment.yaml (-want +got):\n%s", diff)
	}
}
