package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/artifact/file"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

type modelsCLIEnv struct {
	st  *sqlite.Store
	svc *registry.Service
	url string
}

// newModelsCLIEnv serves the admin API with the model registry over a real
// SQLite store, a real file artifact store and the real engines.
func newModelsCLIEnv(t *testing.T) *modelsCLIEnv {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	arts, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc := registry.NewService(st, home.Artifacts{Store: arts}, registry.Options{Validator: home.ValidateModel})
	h := api.New(st, &cliController{statuses: map[string]serving.Status{}}, nil)
	h.MountModels(svc)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Setenv(serverEnv, "")
	t.Setenv("EBB_USER", "tester")
	return &modelsCLIEnv{st: st, svc: svc, url: srv.URL}
}

func (e *modelsCLIEnv) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runEbb(t, "", append(args, "--server", e.url)...)
}

func (e *modelsCLIEnv) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.run(t, args...)
	if err != nil {
		t.Fatalf("ebb %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func diabetesFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "model.json")
	if err := os.WriteFile(p, diabetes.Model, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLIModelsPushShowAlias(t *testing.T) {
	e := newModelsCLIEnv(t)
	model := diabetesFile(t)
	out := e.mustRun(t, "models", "push", model, "--name", "diabetes", "--alias", "champion",
		"--param", "max_depth=4", "--metric", "rmse=54.1", "--tag", "team=health",
		"--data-uri", "s3://data/diabetes.csv", "--code-commit", "abc123")
	if !strings.HasPrefix(out, "diabetes:1 pushed (engine trees, sha256 ") || !strings.Contains(out, "alias diabetes@champion -> version 1") {
		t.Errorf("push printed %q", out)
	}
	v, err := e.st.GetVersion(context.Background(), "diabetes", 1)
	if err != nil {
		t.Fatal(err)
	}
	wantLin := registry.Lineage{DataURI: "s3://data/diabetes.csv", Parameters: map[string]string{"max_depth": "4"},
		Metrics: map[string]float64{"rmse": 54.1}, CodeCommit: "abc123"}
	if diff := cmp.Diff(wantLin, v.Lineage); diff != "" {
		t.Errorf("stored lineage (-want +got):\n%s", diff)
	}
	if v.CreatedBy != "tester" || v.Tags["team"] != "health" || len(v.Signature.Inputs) != 1 || v.Signature.Inputs[0].Name != "input" {
		t.Errorf("stored version = %+v", v)
	}

	// Version 2 as JSON output.
	out = e.mustRun(t, "models", "push", model, "--name", "diabetes", "-o", "json")
	var v2 registry.Version
	if err := json.Unmarshal([]byte(out), &v2); err != nil || v2.Version != 2 || v2.SHA256 != v.SHA256 {
		t.Errorf("push -o json = %s (%v); want version 2 with the same sha256", out, err)
	}

	out = e.mustRun(t, "models", "list")
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "diabetes") {
		t.Errorf("list printed %q", out)
	}
	out = e.mustRun(t, "models", "show", "diabetes")
	for _, want := range []string{"Model:       diabetes", "VERSION", "champion", "active", "trees", v.SHA256[:12]} {
		if !strings.Contains(out, want) {
			t.Errorf("show diabetes: no %q in\n%s", want, out)
		}
	}
	out = e.mustRun(t, "models", "show", "diabetes@champion")
	for _, want := range []string{"Version:     1", "Aliases:     champion", "Metrics:     rmse=54.1", "Parameters:  max_depth=4",
		"Code commit: abc123", "Inputs:      input FP32[-1,10]", "Created by:  tester"} {
		if !strings.Contains(out, want) {
			t.Errorf("show diabetes@champion: no %q in\n%s", want, out)
		}
	}
	out = e.mustRun(t, "models", "show", "diabetes:2", "-o", "yaml")
	var shown registry.Version
	if err := yaml.Unmarshal([]byte(out), &shown); err != nil || shown.Version != 2 || shown.Model != "diabetes" {
		t.Errorf("show diabetes:2 -o yaml = %s (%v)", out, err)
	}

	if out := e.mustRun(t, "models", "alias", "diabetes", "champion", "2"); out != "alias diabetes@champion moved: version 1 -> 2\n" {
		t.Errorf("alias printed %q", out)
	}
	_, err = e.run(t, "models", "alias", "diabetes", "champion", "1", "--expect", "1")
	if err == nil || !strings.Contains(err.Error(), "points at version 2, expected version 1") {
		t.Errorf("alias with a stale --expect: %v, want a conflict", err)
	}
	out = e.mustRun(t, "models", "alias", "diabetes", "champion")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[2], "1      2    tester") {
		t.Errorf("alias history printed %q", out)
	}
	if _, err := e.run(t, "models", "show", "diabetes:9"); err == nil || !strings.Contains(err.Error(), "version 9 of model \"diabetes\" not found") {
		t.Errorf("show diabetes:9: %v", err)
	}
}

func TestCLIModelsPushRefused(t *testing.T) {
	e := newModelsCLIEnv(t)
	bad := filepath.Join(t.TempDir(), "model.json")
	os.WriteFile(bad, []byte(`{"learner":{"objective":{"name":"reg:squarederror"}}}`), 0o644)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"models", "push", bad, "--name", "m"}, "engine trees cannot load the model: xgboost model model.json: missing field"},
		{[]string{"models", "push", bad}, "give the model's name"},
		{[]string{"models", "push", bad, "--name", "m", "--metric", "rmse=low"}, `--metric "rmse=low": the value must be a number`},
		{[]string{"models", "push", bad, "--name", "m", "--tag", "novalue"}, `--tag "novalue" must be KEY=VALUE`},
		{[]string{"models", "push", "/nonexistent/m.json", "--name", "m"}, "cannot read the model"},
		{[]string{"models", "show", "Bad_Name"}, "write NAME, NAME:VERSION or NAME@ALIAS"},
		{[]string{"models", "import-mlflow", "../../internal/registry/mlflow/testdata/xgboost-binary", "--name", "m"}, `model_format="json"`},
	}
	for _, tt := range tests {
		_, err := e.run(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ebb %s: %v, want an error containing %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
	if ms, _ := e.st.ListModels(context.Background(), registry.ListOptions{}); len(ms) != 0 {
		t.Errorf("refused pushes created models %+v", ms)
	}
}

func TestCLIModelsImportMLflow(t *testing.T) {
	e := newModelsCLIEnv(t)
	dir := "../../internal/registry/mlflow/testdata/mlruns/0/4f1c2b3a9d8e4e7fa1b2c3d4e5f60718/artifacts/model"
	out := e.mustRun(t, "models", "import-mlflow", dir, "--name", "diabetes", "--alias", "challenger")
	if !strings.HasPrefix(out, "diabetes:1 pushed (engine trees") {
		t.Errorf("import-mlflow printed %q", out)
	}
	v, err := e.svc.ResolveString(context.Background(), "diabetes@challenger")
	if err != nil {
		t.Fatal(err)
	}
	want := registry.Lineage{Source: "mlflow run 4f1c2b3a9d8e4e7fa1b2c3d4e5f60718",
		Parameters: map[string]string{"max_depth": "2", "objective": "reg:squarederror"},
		Metrics:    map[string]float64{"rmse": 53.9, "r2": 0.47}, CodeCommit: "8f14e45fceea167a5a36dedd4bea2543c7f0a1b2"}
	if diff := cmp.Diff(want, v.Lineage); diff != "" {
		t.Errorf("imported lineage (-want +got):\n%s", diff)
	}
	if v.Tags["mlflow.run_id"] != "4f1c2b3a9d8e4e7fa1b2c3d4e5f60718" || v.CreatedBy != "tester" {
		t.Errorf("imported version = %+v", v)
	}
}

func TestCLIModelsPushDirectory(t *testing.T) {
	e := newModelsCLIEnv(t)
	dir := filepath.Join(t.TempDir(), "churn")
	os.MkdirAll(filepath.Join(dir, "lib"), 0o755)
	os.WriteFile(filepath.Join(dir, "model.py"), []byte("class Model: pass\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "lib", "weights.bin"), []byte{1, 2, 3}, 0o644)
	out := e.mustRun(t, "models", "push", dir, "--name", "churn", "-o", "json")
	var v registry.Version
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("push -o json printed %q: %v", out, err)
	}
	if v.Engine != "python" || v.Packaging != registry.PackagingTar || v.Entry != "" {
		t.Errorf("pushed directory = engine %q packaging %q entry %q; want python, tar, no entry", v.Engine, v.Packaging, v.Entry)
	}
}
