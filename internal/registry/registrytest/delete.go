package registrytest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
)

// testModelDelete checks registry.ModelDeleter, for stores that implement
// it: the model, its versions, aliases and alias history go; other models
// and deployments' serving records stay; the name can be used again.
func testModelDelete(t *testing.T, s registry.Store) {
	md, ok := s.(registry.ModelDeleter)
	if !ok {
		t.Skipf("%T does not implement registry.ModelDeleter: `ebb models delete NAME` (a whole model) is refused with 501", s)
	}
	mustModel(t, s, "gone")
	mustModel(t, s, "kept")
	for range 3 {
		mustVersion(t, s, "gone")
	}
	kept := mustVersion(t, s, "kept")
	if _, err := s.SetAlias(ctx, "gone", "champion", 2, registry.AnyVersion, "alice"); err != nil {
		t.Fatalf("SetAlias: %v", err)
	}
	if _, err := s.DeleteAlias(ctx, "gone", "champion", registry.AnyVersion, "alice"); err != nil {
		t.Fatalf("DeleteAlias: %v", err)
	}
	if _, err := s.SetAlias(ctx, "kept", "champion", 1, registry.AnyVersion, "bob"); err != nil {
		t.Fatalf("SetAlias: %v", err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.RecordServing(ctx, "web", "gone", 1, at); err != nil {
		t.Fatalf("RecordServing: %v", err)
	}

	if err := md.DeleteModel(ctx, "gone"); err != nil {
		t.Fatalf("DeleteModel: %v", err)
	}
	_, err := s.GetModel(ctx, "gone")
	wantErr(t, "GetModel after DeleteModel", err, store.ErrNotFound)
	_, err = s.GetVersion(ctx, "gone", 1)
	wantErr(t, "GetVersion after DeleteModel", err, store.ErrNotFound)
	_, err = s.ListVersions(ctx, "gone", registry.VersionListOptions{})
	wantErr(t, "ListVersions after DeleteModel", err, store.ErrNotFound)
	if as, err := s.ListAliases(ctx, "gone"); err != nil || len(as) != 0 {
		t.Errorf("ListAliases after DeleteModel = %v, %v; want none", as, err)
	}
	if h, err := s.AliasHistory(ctx, "gone", "champion"); err != nil || len(h) != 0 {
		t.Errorf("AliasHistory after DeleteModel = %v, %v; want none", h, err)
	}
	if h, err := s.ServingHistory(ctx, "web"); err != nil || len(h) != 1 {
		t.Errorf("ServingHistory after DeleteModel = %v, %v; want the deployment's record kept", h, err)
	}
	ms, err := s.ListModels(ctx, registry.ListOptions{})
	if err != nil {
		t.Fatalf("ListModels: %v", err)
	}
	if len(ms) != 1 || ms[0].Name != "kept" {
		t.Errorf("ListModels after DeleteModel = %v, want only kept", ms)
	}
	if got, err := s.GetVersion(ctx, "kept", 1); err != nil {
		t.Errorf("GetVersion(kept:1): %v", err)
	} else if diff := cmp.Diff(kept, got, sameTime); diff != "" {
		t.Errorf("another model's version changed (-before +after):\n%s", diff)
	}
	if a, err := s.GetAlias(ctx, "kept", "champion"); err != nil || a.Version != 1 {
		t.Errorf("another model's alias = %+v, %v", a, err)
	}

	// The name is free again, and numbering starts over.
	mustModel(t, s, "gone")
	if v := mustVersion(t, s, "gone"); v.Version != 1 {
		t.Errorf("first version of a re-created model is %d, want 1", v.Version)
	}
	err = md.DeleteModel(ctx, "missing")
	wantErr(t, "DeleteModel of a missing model", err, store.ErrNotFound)
}
