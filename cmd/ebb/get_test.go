package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/serving"
)

func TestCLIGetWide(t *testing.T) {
	e := newFullEnv(t)
	e.mustRun(t, "", "models", "push", diabetesFile(t), "--name", "diabetes", "--alias", "champion")
	e.st.Now = func() time.Time { return time.Now().Add(-3 * time.Hour) }
	e.mustRun(t, `{"name":"diabetes","spec":{"model":"diabetes@champion"}}`, "deploy", "-f", "-")
	scaled := time.Now().Add(-5 * time.Minute)
	e.setStatus("diabetes", serving.Status{Replicas: 2, ReadyReplicas: 1, DesiredReplicas: 2, ModelVersion: "diabetes:3",
		Reason: "scaled up for 12 held requests", LastScaleTime: &scaled,
		ReplicaStatuses: []serving.ReplicaStatus{
			{ID: "diabetes-a1", State: serving.ReplicaReady, Endpoint: "http://127.0.0.1:4001", StartedAt: time.Now().Add(-90 * time.Second), ModelVersion: "diabetes:3"},
		}})

	want := [][]string{
		{"NAME", "MODEL", "ENGINE", "READY", "MIN", "MAX", "AGE", "VERSION", "DESIRED", "REPLICAS", "LAST", "SCALE", "REASON"},
		{"diabetes", "diabetes@champion", "(v3)", "-", "1/2", "0", "4", "3h", "diabetes:3", "2", "2", "5m", "ago", "scaled", "up", "for", "12", "held", "requests"},
	}
	if diff := cmp.Diff(want, fields(e.mustRun(t, "", "get", "deployments", "-o", "wide"))); diff != "" {
		t.Errorf("get deployments -o wide (-want +got):\n%s", diff)
	}
	out := fields(e.mustRun(t, "", "get", "deployment", "diabetes", "-o", "wide"))
	if diff := cmp.Diff([]string{"REPLICA", "STATE", "ENDPOINT", "AGE", "VERSION", "RESTARTS", "COLD", "START"}, out[2]); diff != "" {
		t.Errorf("wide replicas header (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"diabetes-a1", "ready", "http://127.0.0.1:4001", "90s", "diabetes:3", "0", "-"}, out[3]); diff != "" {
		t.Errorf("wide replica row (-want +got):\n%s", diff)
	}
	if _, err := e.run(t, "", "models", "list", "-o", "wide"); err == nil || !strings.Contains(err.Error(), `unknown output format "wide"`) {
		t.Errorf("models list -o wide = %v, want it refused", err)
	}
}

func TestCLIGetModels(t *testing.T) {
	e := newFullEnv(t)
	if out := e.mustRun(t, "", "get", "models"); !strings.Contains(out, "No models") {
		t.Errorf("get models with none = %q", out)
	}
	model := diabetesFile(t)
	for range 2 {
		e.mustRun(t, "", "models", "push", model, "--name", "diabetes", "--tag", "team=health", "--metric", "rmse=54.1")
	}
	e.mustRun(t, "", "models", "alias", "diabetes", "champion", "2")
	e.mustRun(t, "", "models", "push", model, "--name", "iris", "--description", "flowers")

	want := [][]string{
		{"NAME", "LATEST", "UPDATED", "DESCRIPTION"},
		{"diabetes", "2", "0s", "-"},
		{"iris", "1", "0s", "flowers"},
	}
	if diff := cmp.Diff(want, fields(e.mustRun(t, "", "get", "models"))); diff != "" {
		t.Errorf("get models (-want +got):\n%s", diff)
	}
	want = [][]string{
		{"NAME", "LATEST", "UPDATED", "DESCRIPTION", "ALIASES", "CREATED"},
		{"diabetes", "2", "0s", "-", "champion=2", "0s"},
		{"iris", "1", "0s", "flowers", "-", "0s"},
	}
	if diff := cmp.Diff(want, fields(e.mustRun(t, "", "get", "models", "-o", "wide"))); diff != "" {
		t.Errorf("get models -o wide (-want +got):\n%s", diff)
	}
	out := e.mustRun(t, "", "get", "models", "-o", "json")
	if !strings.Contains(out, `"name": "diabetes"`) || !strings.Contains(out, `"latestVersion": 2`) {
		t.Errorf("get models -o json:\n%s", out)
	}
	// One model: its versions, wide with tags and metrics; sizes in SI.
	rows := fields(e.mustRun(t, "", "get", "model", "diabetes", "-o", "wide"))
	var header, v2 []string
	for _, r := range rows {
		switch r[0] {
		case "VERSION":
			header = r
		case "2":
			v2 = r
		}
	}
	if header[len(header)-2] != "TAGS" || header[len(header)-1] != "METRICS" {
		t.Errorf("wide versions header %v, want TAGS and METRICS last", header)
	}
	if n := len(v2); n < 3 || v2[n-2] != "team=health" || v2[n-1] != "rmse=54.1" || v2[1] != "champion" {
		t.Errorf("wide row of version 2 = %v", v2)
	}
	if out := e.mustRun(t, "", "get", "model", "diabetes"); !strings.Contains(out, " kB ") {
		t.Errorf("sizes are not in kB:\n%s", out)
	}
}

func TestCLIGetWatch(t *testing.T) {
	e := newFullEnv(t)
	e.mustRun(t, `{"name":"diabetes","spec":{"model":"diabetes.json"}}`, "deploy", "-f", "-")
	out, _, stop := startEbb(t, "get", "deployments", "-w", "--interval", "20ms", "--server", e.url)
	waitFor(t, "the first table", func() bool { return strings.Count(out.String(), "\n") == 2 })

	e.setStatus("diabetes", serving.Status{ReadyReplicas: 1, DesiredReplicas: 1, Replicas: 1})
	waitFor(t, "the changed row", func() bool { return strings.Contains(out.String(), "1/1") })
	e.mustRun(t, `{"name":"iris","spec":{"model":"iris.json"}}`, "deploy", "-f", "-")
	waitFor(t, "the new deployment", func() bool { return strings.Contains(out.String(), "iris") })
	e.mustRun(t, "", "delete", "diabetes")
	waitFor(t, "the deletion", func() bool { return strings.Contains(out.String(), "deleted") })
	time.Sleep(100 * time.Millisecond) // five more polls: nothing changes, nothing printed
	if err := stop(); err != nil {
		t.Fatalf("watch ended with %v, want nil after Ctrl-C", err)
	}
	want := [][]string{
		{"NAME", "MODEL", "ENGINE", "READY", "MIN", "MAX", "AGE"},
		{"diabetes", "diabetes.json", "trees", "0/0", "0", "4", "0s"},
		{"diabetes", "diabetes.json", "trees", "1/1", "0", "4", "0s"},
		{"iris", "iris.json", "trees", "0/0", "0", "4", "0s"},
		{"diabetes", "diabetes.json", "trees", "1/1", "0", "4", "deleted"},
	}
	if diff := cmp.Diff(want, fields(out.String())); diff != "" {
		t.Errorf("watch output (-want +got):\n%s\n%s", diff, out)
	}
	// Later rows line up with the table.
	lines := strings.Split(out.String(), "\n")
	if i, j := strings.Index(lines[0], "READY"), strings.Index(lines[2], "1/1"); i != j {
		t.Errorf("watched row's READY at column %d, header's at %d:\n%s", j, i, out)
	}
}

func TestCLIGetWatchOne(t *testing.T) {
	e := newFullEnv(t)
	e.mustRun(t, `{"name":"diabetes","spec":{"model":"diabetes.json"}}`, "deploy", "-f", "-")
	out, errOut, stop := startEbb(t, "get", "deployment", "diabetes", "-w", "-o", "wide", "--interval", "20ms", "--server", e.url)
	waitFor(t, "the first table", func() bool { return strings.Count(out.String(), "\n") == 2 })
	e.setStatus("diabetes", serving.Status{DesiredReplicas: 1, Reason: "a request woke it"})
	waitFor(t, "the new reason", func() bool { return strings.Contains(out.String(), "a request woke it") })
	e.mustRun(t, "", "delete", "diabetes")
	waitFor(t, "the deletion", func() bool { return strings.Contains(out.String(), "deleted") })
	e.mustRun(t, `{"name":"diabetes","spec":{"model":"v2.json"}}`, "deploy", "-f", "-")
	waitFor(t, "the deployment again", func() bool { return strings.Contains(out.String(), "v2.json") })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if errOut.String() != "" {
		t.Errorf("a deleted deployment printed errors: %q", errOut)
	}
}

func TestCLIGetWatchErrors(t *testing.T) {
	e := newFullEnv(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "deployments", "-w", "-o", "json"}, "--watch prints tables"},
		{[]string{"get", "deployments", "-w", "--interval", "0s"}, "--interval 0s must be above zero"},
		{[]string{"get", "deployments", "nope", "-w"}, `deployment "nope" not found`},
		{[]string{"get", "models", "diabetes", "-w"}, "use `ebb get models -w`"},
	} {
		if _, err := e.run(t, "", tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ebb %v = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
	// A server that goes away during a watch is reported once and retried.
	e.mustRun(t, `{"name":"diabetes","spec":{"model":"m.json"}}`, "deploy", "-f", "-")
	out, errOut, stop := startEbb(t, "get", "deployments", "-w", "--interval", "20ms", "--server", e.url)
	waitFor(t, "the first table", func() bool { return strings.Count(out.String(), "\n") == 2 })
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a warning", func() bool { return strings.Contains(errOut.String(), "warning:") })
	time.Sleep(100 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(errOut.String(), "warning:"); n != 1 {
		t.Errorf("the same failure was reported %d times:\n%s", n, errOut)
	}
}

// TestModelText: MODEL shows the version an alias resolved to.
func TestModelText(t *testing.T) {
	for _, tt := range []struct{ model, version, want string }{
		{"diabetes@champion", "diabetes:3", "diabetes@champion (v3)"},
		{"diabetes@champion", "", "diabetes@champion"}, // not resolved yet
		{"diabetes:3", "diabetes:3", "diabetes:3"},
		{"examples/diabetes/model.json", "", "examples/diabetes/model.json"},
	} {
		if got := modelText(tt.model, tt.version); got != tt.want {
			t.Errorf("modelText(%q, %q) = %q, want %q", tt.model, tt.version, got, tt.want)
		}
	}
}

// TestDeploymentDetailOldReplicas: a replica of an earlier spec says so.
func TestDeploymentDetailOldReplicas(t *testing.T) {
	now := time.Now()
	d := serving.Deployment{Name: "diabetes", Spec: serving.Spec{Model: "v2.json"}, CreatedAt: now, Status: serving.Status{
		Replicas: 2, ReadyReplicas: 2, DesiredReplicas: 1, SpecGeneration: 2,
		Reason: "rolling replicas from v1.json to v2.json: 1 of 1 new ready; old: 1 serving, 0 draining",
		ReplicaStatuses: []serving.ReplicaStatus{
			{ID: "diabetes-a", State: serving.ReplicaReady, StartedAt: now, Outdated: true},
			{ID: "diabetes-b", State: serving.ReplicaReady, StartedAt: now},
		}}}
	var b strings.Builder
	if err := writeDeploymentDetail(&b, d, now, false); err != nil {
		t.Fatal(err)
	}
	rows := fields(b.String())
	if diff := cmp.Diff([]string{"diabetes-a", "ready", "(old)", "-", "0s", "0", "-"}, rows[3]); diff != "" {
		t.Errorf("old replica row (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"diabetes-b", "ready", "-", "0s", "0", "-"}, rows[4]); diff != "" {
		t.Errorf("new replica row (-want +got):\n%s", diff)
	}
	if !strings.Contains(b.String(), "\nReason: rolling replicas from v1.json to v2.json") {
		t.Errorf("detail lacks the roll's reason:\n%s", b.String())
	}
}
