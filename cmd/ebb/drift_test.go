package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/artifact/file"
	"github.com/ebb-ml/ebb/internal/drift"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/predlog"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

var diabetesColumns = []string{"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}

// diabetesSample writes a CSV sample of n rows of the diabetes model's
// ten inputs, each normal(0, 1), and its prediction.
func diabetesSample(t *testing.T, n int) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 1))
	var b strings.Builder
	b.WriteString(strings.Join(diabetesColumns, ",") + ",predict\n")
	for range n {
		for range diabetesColumns {
			fmt.Fprintf(&b, "%.4f,", rng.NormFloat64())
		}
		fmt.Fprintf(&b, "%.2f\n", 150+50*rng.NormFloat64())
	}
	p := filepath.Join(t.TempDir(), "sample.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// diabetesRecords returns n logged predictions of one row each, column
// shifted by shift.
func diabetesRecords(t *testing.T, n, shifted int, shift float64) []predlog.Record {
	t.Helper()
	rng := rand.New(rand.NewPCG(2, 2))
	recs := make([]predlog.Record, n)
	for i := range recs {
		row := make([]float64, len(diabetesColumns))
		for j := range row {
			row[j] = rng.NormFloat64()
		}
		row[shifted] += shift
		data, _ := json.Marshal(row)
		req, _ := json.Marshal(oip.InferRequest{Inputs: []oip.RequestInput{{Name: "input", Shape: []int64{1, 10}, Datatype: oip.FP64, Data: data}}})
		resp := fmt.Sprintf(`{"model_name":"d","model_version":"1","outputs":[{"name":"predict","datatype":"FP32","shape":[1],"data":[%g]}]}`, 150+50*rng.NormFloat64())
		recs[i] = predlog.Record{Deployment: "d", ModelVersion: "1", RequestID: fmt.Sprint(i), Inputs: req, Outputs: []byte(resp), Status: 200}
	}
	return recs
}

// ebb models push --profile-data stores a profile that ebb models profile
// shows; the deployment's logged predictions, shifted in one column, make
// ebb drift report that column and no other.
func TestCLIDrift(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	arts, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc := registry.NewService(st, home.Artifacts{Store: arts}, registry.Options{Validator: home.ValidateModel})
	mon := drift.NewMonitor(monitor.WindowOptions{})
	h := api.New(st, &cliController{statuses: map[string]serving.Status{}}, nil)
	h.MountModels(svc)
	h.MountDrift(mon)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Setenv(serverEnv, "")
	e := &modelsCLIEnv{st: st, svc: svc, url: srv.URL}

	out := e.mustRun(t, "models", "push", diabetesFile(t), "--name", "diabetes", "--profile-data", diabetesSample(t, 3000), "--profile-output-column", "predict")
	if !strings.Contains(out, "reference profile from") || !strings.Contains(out, "3000 rows; inputs: age, sex") || !strings.Contains(out, "outputs: predict") {
		t.Errorf("push output lacks the profile:\n%s", out)
	}
	out = e.mustRun(t, "models", "profile", "diabetes:1")
	if rows := fields(out); len(rows) != 13 || rows[1][0] != "FEATURE" || rows[12][0] != "predict" || rows[12][1] != "numeric/output" {
		t.Errorf("ebb models profile:\n%s", out)
	}

	if _, err := st.CreateDeployment(ctx, serving.Deployment{Name: "d", Spec: serving.Spec{Model: "diabetes:1", Scaling: serving.Scaling{MaxReplicas: 1}}}); err != nil {
		t.Fatal(err)
	}
	out = e.mustRun(t, "drift", "d")
	if !strings.Contains(out, "No drift to show for d") {
		t.Errorf("ebb drift before the monitor watches d:\n%s", out)
	}
	syncer := &drift.Syncer{Deployments: st, Registry: svc, Served: st, Apply: mon.Set}
	if err := syncer.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := drift.NewSink(mon, nil, nil, nil).Write(diabetesRecords(t, 1000, 2, 1.0)); err != nil {
		t.Fatal(err)
	}

	out = e.mustRun(t, "drift", "d")
	status := map[string]string{}
	for _, f := range fields(out) {
		if len(f) == 8 && f[0] == "diabetes:1" {
			status[f[1]] = f[7]
		}
	}
	for _, c := range append(diabetesColumns, "predict") {
		want := "ok"
		if c == "bmi" {
			want = "drift"
		}
		if status[c] != want {
			t.Errorf("feature %s: status %q; want %q\n%s", c, status[c], want, out)
		}
	}
	if !strings.Contains(out, "diabetes:1: 1000 rows") {
		t.Errorf("ebb drift lacks the version line:\n%s", out)
	}
	var rep api.DriftReport
	if err := json.Unmarshal([]byte(e.mustRun(t, "drift", "d", "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Versions) != 1 || rep.Versions[0].Status != monitor.StatusDrift || rep.Versions[0].Features[2].Feature != "bmi" {
		t.Errorf("ebb drift -o json: %+v", rep)
	}

	// A sample whose columns do not fit the model: the version is pushed,
	// the profile refused with how to set it.
	narrow := filepath.Join(t.TempDir(), "narrow.csv")
	if err := os.WriteFile(narrow, []byte("a,b\n1,2\n3,4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = e.run(t, "models", "push", diabetesFile(t), "--name", "diabetes", "--profile-data", narrow)
	if err == nil || !strings.Contains(err.Error(), "has 10 columns but the profile has 2 input features") || !strings.Contains(err.Error(), "ebb models profile diabetes:2 --data") {
		t.Errorf("push with a sample of 2 columns: %v\n%s", err, out)
	}
	if _, err := e.run(t, "models", "push", diabetesFile(t), "--name", "diabetes", "--profile-data", "missing.csv"); err == nil {
		t.Error("push with a missing sample succeeded")
	}
	if out, err := e.run(t, "drift", "nope"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("ebb drift of a missing deployment: %v\n%s", err, out)
	}
	e.mustRun(t, "models", "profile", "diabetes:1", "--delete")
	if out, err := e.run(t, "models", "profile", "diabetes:1"); err == nil || !strings.Contains(err.Error(), "no reference profile") {
		t.Errorf("ebb models profile after --delete: %v\n%s", err, out)
	}
}
