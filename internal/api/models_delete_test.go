package api_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

func TestModelDelete(t *testing.T) {
	ctx := context.Background()
	arts := t.TempDir()
	var svc *registry.Service
	e := newEnvWith(t, func(h *api.Handler, st *sqlite.Store) {
		svc = registry.NewService(st, dirArtifacts{arts}, registry.Options{Validator: treesValidator})
		h.MountModels(svc)
	})
	model := filepath.Join(t.TempDir(), "model.json")
	if err := os.WriteFile(model, diabetes.Model, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := svc.Push(ctx, registry.PushRequest{Model: "diabetes", Path: model}); err != nil {
			t.Fatalf("Push: %v", err)
		}
	}
	if _, err := svc.MoveAlias(ctx, "diabetes", "champion", 1, registry.AnyVersion, ""); err != nil {
		t.Fatal(err)
	}
	// web names version 2; batch follows the alias but still runs 3 on
	// one replica while it rolls.
	for _, d := range []serving.Deployment{
		{Name: "web", Spec: serving.Spec{Model: "diabetes:2"}},
		{Name: "batch", Spec: serving.Spec{Model: "diabetes@champion"}},
	} {
		d.Spec.Default()
		if _, err := e.st.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	e.ctl.mu.Lock()
	e.ctl.statuses["batch"] = serving.Status{ModelVersion: "diabetes:1", ReplicaStatuses: []serving.ReplicaStatus{
		{ID: "batch-a", ModelVersion: "diabetes:1"}, {ID: "batch-b", ModelVersion: "diabetes:3"}}}
	e.ctl.mu.Unlock()

	tests := []struct {
		name, method, path string
		code               int
		errCode, msg       string
	}{
		{"aliased", "DELETE", "/v1/models/diabetes/versions/1", 409, "model/in_use", "cannot delete diabetes:1: it is in use by alias champion and deployment batch"},
		{"named by a deployment", "DELETE", "/v1/models/diabetes/versions/2", 409, "model/in_use", "in use by deployment web"},
		{"run by a replica", "DELETE", "/v1/models/diabetes/versions/3", 409, "model/in_use", "in use by deployment batch"},
		{"missing version", "DELETE", "/v1/models/diabetes/versions/9", 404, "version/not_found", "ebb models show diabetes"},
		{"missing model", "DELETE", "/v1/models/iris/versions/1", 404, "model/not_found", "ebb models list"},
		{"not a number", "DELETE", "/v1/models/diabetes/versions/latest", 400, "request/malformed", "positive whole number"},
		{"whole model in use", "DELETE", "/v1/models/diabetes", 409, "model/in_use", "cannot delete model diabetes: it is in use by alias champion → 1 and deployment batch, web"},
		{"whole missing model", "DELETE", "/v1/models/iris", 404, "model/not_found", "ebb models list"},
		{"method", "PUT", "/v1/models/diabetes", 405, "request/method_not_allowed", "DELETE, GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := e.do(t, tt.method, tt.path, "", "")
			wantError(t, tt.name, code, body, tt.code, tt.errCode, tt.msg)
		})
	}
	for n := 1; n <= 3; n++ {
		if v, _ := e.st.GetVersion(ctx, "diabetes", n); v.State != registry.StateActive {
			t.Errorf("refused delete left diabetes:%d %s", n, v.State)
		}
	}

	code, _, body := e.do(t, "DELETE", "/v1/models/diabetes/versions/4", "", "")
	if code != http.StatusOK {
		t.Fatalf("DELETE unused version = %d %s", code, body)
	}
	if v := decode[registry.Version](t, body); v.Version != 4 || v.State != registry.StatePurged {
		t.Errorf("deleted version = %+v, want 4 purged", v)
	}
	// Versions 1-4 share one artifact (the same file): it stays.
	if v, _ := e.st.GetVersion(ctx, "diabetes", 1); !fileExists(v.ArtifactURI) {
		t.Error("the artifact other versions share was deleted")
	}

	// A model nothing uses goes whole; its artifact is diabetes's too, so
	// it stays.
	for range 2 {
		if _, err := svc.Push(ctx, registry.PushRequest{Model: "unused", Path: model}); err != nil {
			t.Fatalf("Push: %v", err)
		}
	}
	code, _, body = e.do(t, "DELETE", "/v1/models/unused", "", "")
	if code != http.StatusNoContent {
		t.Fatalf("DELETE unused model = %d %s, want 204", code, body)
	}
	code, _, body = e.do(t, "GET", "/v1/models/unused", "", "")
	wantError(t, "GET deleted model", code, body, 404, "model/not_found", "ebb models list")
	if v, _ := e.st.GetVersion(ctx, "diabetes", 1); !fileExists(v.ArtifactURI) {
		t.Error("deleting a model deleted the artifact another model's versions share")
	}
}

func fileExists(uri string) bool {
	_, err := os.Stat(uri[len("file://"):])
	return err == nil
}
