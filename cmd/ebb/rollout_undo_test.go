package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/rollout"
)

func TestCLIRolloutUndo(t *testing.T) {
	e := newFullEnv(t)
	ctx := context.Background()
	// The admin API with rollouts, over the same store and registry.
	h := api.New(e.st, e.ctl, nil)
	h.MountModels(e.svc)
	h.MountRollouts(rollout.New(e.st, e.st, nil, rollout.Options{History: e.svc}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.url = srv.URL

	model := diabetesFile(t)
	for range 2 {
		e.mustRun(t, "", "models", "push", model, "--name", "diabetes")
	}
	e.mustRun(t, "", "models", "alias", "diabetes", "champion", "1")
	e.mustRun(t, `{"name":"web","spec":{"model":"diabetes@champion"}}`, "deploy", "-f", "-")
	e.mustRun(t, `{"name":"pinned","spec":{"model":"diabetes:2"}}`, "deploy", "-f", "-")
	for _, r := range []struct {
		deployment string
		version    int
	}{{"web", 1}, {"pinned", 1}, {"pinned", 2}} {
		if err := e.svc.RecordServing(ctx, r.deployment, "diabetes", r.version); err != nil {
			t.Fatal(err)
		}
	}
	e.mustRun(t, "", "models", "alias", "diabetes", "champion", "2")
	if err := e.svc.RecordServing(ctx, "web", "diabetes", 2); err != nil {
		t.Fatal(err)
	}

	if out := e.mustRun(t, "", "rollout", "undo", "web"); out != "web: diabetes:2 → diabetes:1 (revision 1): alias diabetes@champion moved to diabetes:1\n" {
		t.Errorf("rollout undo web = %q", out)
	}
	if a, err := e.st.GetAlias(ctx, "diabetes", "champion"); err != nil || a.Version != 1 {
		t.Errorf("champion = %+v, %v; want version 1", a, err)
	}
	var res rollout.UndoResult
	if err := json.Unmarshal([]byte(e.mustRun(t, "", "rollout", "undo", "pinned", "-o", "json")), &res); err != nil {
		t.Fatal(err)
	}
	want := rollout.UndoResult{Deployment: "pinned", From: "diabetes:2", To: "diabetes:1", Revision: 1, Model: "diabetes:1"}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("rollout undo pinned -o json (-want +got):\n%s", diff)
	}
	if d, err := e.st.GetDeployment(ctx, "pinned"); err != nil || d.Spec.Model != "diabetes:1" {
		t.Errorf("pinned spec.model = %q, %v; want diabetes:1", d.Spec.Model, err)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"rollout", "undo", "web", "--to-revision", "7"}, `deployment "web" has 2 revisions`},
		{[]string{"rollout", "undo", "web", "--to-revision", "-1"}, "numbered from 1"},
		{[]string{"rollout", "undo", "nope"}, `deployment "nope" not found`},
	} {
		out, err := e.run(t, "", tt.args...)
		if err == nil || !strings.Contains(out+err.Error(), tt.want) {
			t.Errorf("ebb %s = %q, %v; want an error with %q", strings.Join(tt.args, " "), out, err, tt.want)
		}
	}
}
