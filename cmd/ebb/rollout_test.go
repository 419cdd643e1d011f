package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCLIRolloutHistory(t *testing.T) {
	e := newFullEnv(t)
	ctx := context.Background()
	model := diabetesFile(t)
	for range 2 {
		e.mustRun(t, "", "models", "push", model, "--name", "diabetes")
	}
	e.mustRun(t, "", "models", "alias", "diabetes", "champion", "1")
	e.mustRun(t, `{"name":"web","spec":{"model":"diabetes@champion"}}`, "deploy", "-f", "-")
	e.mustRun(t, `{"name":"pinned","spec":{"model":"diabetes:2"}}`, "deploy", "-f", "-")
	record := func(deployment string, version int) {
		t.Helper()
		if err := e.svc.RecordServing(ctx, deployment, "diabetes", version); err != nil {
			t.Fatal(err)
		}
	}
	record("web", 1)
	e.mustRun(t, "", "models", "alias", "diabetes", "champion", "2")
	record("web", 2)
	record("pinned", 2)

	trim := func(rows [][]string) [][]string {
		// Drop SINCE and AGE, which change from run to run.
		for i, r := range rows {
			rows[i] = append(r[:2:2], r[4:]...)
		}
		return rows
	}
	want := [][]string{
		{"REVISION", "VERSION", "WHY"},
		{"1", "diabetes:1", "alias", "champion", "created", "at", "1", "by", "tester"},
		{"2", "diabetes:2", "alias", "champion", "moved", "1", "→", "2", "by", "tester"},
	}
	if diff := cmp.Diff(want, trim(fields(e.mustRun(t, "", "rollout", "history", "web")))); diff != "" {
		t.Errorf("rollout history web (-want +got):\n%s", diff)
	}
	want = [][]string{{"REVISION", "VERSION", "WHY"}, {"1", "diabetes:2", "the", "spec", "names", "diabetes:2"}}
	if diff := cmp.Diff(want, trim(fields(e.mustRun(t, "", "rollout", "history", "pinned")))); diff != "" {
		t.Errorf("rollout history pinned (-want +got):\n%s", diff)
	}

	var out struct{ Items []revision }
	if err := json.Unmarshal([]byte(e.mustRun(t, "", "rollout", "history", "web", "-o", "json")), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Items) != 2 || out.Items[1].Version != "diabetes:2" || out.Items[1].Since.IsZero() || !strings.Contains(out.Items[1].Reason, "moved 1 → 2") {
		t.Errorf("rollout history -o json = %+v", out.Items)
	}

	// A deleted deployment keeps its history, without reasons.
	e.mustRun(t, "", "delete", "web")
	if got := fields(e.mustRun(t, "", "rollout", "history", "web")); len(got) != 3 || got[1][4] != "first" || got[2][4] != "-" {
		t.Errorf("history of a deleted deployment: %v", got)
	}
	if out := e.mustRun(t, "", "rollout", "history", "never"); !strings.Contains(out, "No history for never") {
		t.Errorf("history of an unknown deployment: %q", out)
	}
}

func TestCLIVersion(t *testing.T) {
	e := newFullEnv(t)
	out := e.mustRun(t, "", "version")
	if !strings.HasPrefix(out, "Client: "+version+" (go") || !strings.Contains(out, "Server: v9.9.9 (in a Kubernetes cluster) at "+e.url+"\n") {
		t.Errorf("ebb version:\n%s", out)
	}
	var v versionOutput
	if err := json.Unmarshal([]byte(e.mustRun(t, "", "version", "-o", "json")), &v); err != nil || v.Server == nil || v.Server.Home != "cluster" || v.Client.Version != version {
		t.Errorf("ebb version -o json = %+v, %v", v, err)
	}

	// A server that is not there: the client's version, and why not the
	// server's; not an error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	out, err = runEbb(t, "", "version", "--server", dead)
	if err != nil || !strings.Contains(out, "Server: unknown: cannot reach ebb at "+dead) {
		t.Errorf("ebb version against nothing = %q, %v", out, err)
	}
	// An older server without /v1/version.
	old := newCLIEnv(t)
	isolate(t)
	if out := old.mustRun(t, "", "version"); !strings.Contains(out, "older than GET /v1/version") {
		t.Errorf("ebb version against an older server = %q", out)
	}
}
