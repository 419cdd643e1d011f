package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/registry"
)

func TestCLIModelsTag(t *testing.T) {
	e := newFullEnv(t)
	e.mustRun(t, "", "models", "push", diabetesFile(t), "--name", "diabetes", "--alias", "champion", "--tag", "team=health")
	if out := e.mustRun(t, "", "models", "tag", "diabetes:1", "stage=prod", "reviewed-by=alice"); out != "diabetes:1 tags: reviewed-by=alice stage=prod team=health\n" {
		t.Errorf("tag printed %q", out)
	}
	if out := e.mustRun(t, "", "models", "tag", "diabetes@champion", "stage-", "team="); out != "diabetes:1 tags: reviewed-by=alice team=\n" {
		t.Errorf("tag through the alias printed %q", out)
	}
	v, err := e.st.GetVersion(context.Background(), "diabetes", 1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"reviewed-by": "alice", "team": ""}, v.Tags); diff != "" {
		t.Errorf("stored tags (-want +got):\n%s", diff)
	}
	if out := e.mustRun(t, "", "models", "tag", "diabetes:1", "x=1", "-o", "json"); !strings.Contains(out, `"x": "1"`) {
		t.Errorf("tag -o json:\n%s", out)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"models", "tag", "diabetes:1", "stage"}, `"stage" is not a tag edit: write KEY=VALUE to set a tag or KEY- to remove it`},
		{[]string{"models", "tag", "diabetes:1", "a=1", "a-"}, `tag "a" is edited twice`},
		{[]string{"models", "tag", "diabetes:1", "=1"}, "a tag key must be non-empty"},
		{[]string{"models", "tag", "diabetes", "a=1"}, `"diabetes" names no version: write NAME:VERSION`},
		{[]string{"models", "tag", "diabetes:7", "a=1"}, `version 7 of model "diabetes" not found`},
		{[]string{"models", "tag", "diabetes:1"}, "requires at least 2 arg(s)"},
	} {
		if _, err := e.run(t, "", tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ebb %v = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}

func TestCLIModelsDelete(t *testing.T) {
	e := newFullEnv(t)
	model := diabetesFile(t)
	for range 3 {
		e.mustRun(t, "", "models", "push", model, "--name", "diabetes")
	}
	e.mustRun(t, "", "models", "alias", "diabetes", "champion", "1")
	e.mustRun(t, `{"name":"web","spec":{"model":"diabetes:2"}}`, "deploy", "-f", "-")

	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"models", "delete", "diabetes:1"}, []string{"cannot delete diabetes:1: it is in use by alias champion", "ebb models alias diabetes"}},
		{[]string{"models", "delete", "diabetes:2"}, []string{"in use by deployment web", "point the deployment at another version or delete it"}},
		{[]string{"models", "delete", "diabetes@champion"}, []string{"is an alias", "ebb models delete diabetes:VERSION"}},
		{[]string{"models", "delete", "diabetes:9"}, []string{`version 9 of model "diabetes" not found`}},
		{[]string{"models", "delete", "Diabetes"}, []string{"write NAME or NAME:VERSION"}},
		{[]string{"models", "delete", "diabetes"}, []string{"cannot delete model diabetes: it is in use by alias champion"}},
	} {
		if _, err := e.run(t, "", tt.args...); err == nil {
			t.Errorf("ebb %v succeeded, want an error", tt.args)
		} else {
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ebb %v error %q does not contain %q", tt.args, err, w)
				}
			}
		}
	}
	if out := e.mustRun(t, "", "models", "delete", "diabetes:3"); out != "diabetes:3 deleted (purged: its artifact is removed, its record kept for lineage)\n" {
		t.Errorf("delete printed %q", out)
	}
	for n, want := range map[int]registry.State{1: registry.StateActive, 2: registry.StateActive, 3: registry.StatePurged} {
		if v, err := e.st.GetVersion(context.Background(), "diabetes", n); err != nil || v.State != want {
			t.Errorf("diabetes:%d is %s (%v), want %s", n, v.State, err, want)
		}
	}
	// Once nothing uses it, it goes.
	e.mustRun(t, "", "delete", "web")
	e.mustRun(t, "", "models", "delete", "diabetes:2")
}
