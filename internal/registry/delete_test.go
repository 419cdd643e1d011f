package registry_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
)

// pushN pushes n versions of model, each with its own content, and
// returns them.
func pushN(t *testing.T, e *env, model string, n int) []registry.Version {
	t.Helper()
	var vs []registry.Version
	for i := range n {
		dir := t.TempDir()
		writeFile(t, dir, "model.json", `{"ok":true}`)
		writeFile(t, dir, "notes.txt", model+strings.Repeat("!", i))
		v, err := e.svc.Push(ctx, registry.PushRequest{Model: model, Path: dir})
		if err != nil {
			t.Fatalf("Push: %v", err)
		}
		vs = append(vs, v)
	}
	return vs
}

func exists(uri string) bool {
	_, err := os.Stat(strings.TrimPrefix(uri, "file://"))
	return err == nil
}

func TestDeleteVersion(t *testing.T) {
	e := newEnv(t, registry.Options{})
	vs := pushN(t, e, "diabetes", 3)
	if _, err := e.svc.MoveAlias(ctx, "diabetes", "champion", 2, registry.AnyVersion, "alice"); err != nil {
		t.Fatal(err)
	}
	usedBy := func(model string, version int) []string {
		if model == "diabetes" && version == 3 {
			return []string{"web", "batch"}
		}
		return nil
	}

	tests := []struct {
		name    string
		version int
		want    *registry.InUseError
	}{
		{name: "aliased", version: 2, want: &registry.InUseError{Subject: "diabetes:2", Model: "diabetes", Aliases: []string{"champion"}}},
		{name: "deployed", version: 3, want: &registry.InUseError{Subject: "diabetes:3", Model: "diabetes", Deployments: []string{"batch", "web"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.DeleteVersion(ctx, "diabetes", tt.version, usedBy)
			got, ok := errors.AsType[*registry.InUseError](err)
			if !ok {
				t.Fatalf("DeleteVersion = %v, want an *InUseError", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("InUseError (-want +got):\n%s", diff)
			}
			v, err := e.st.GetVersion(ctx, "diabetes", tt.version)
			if err != nil || v.State != registry.StateActive || !exists(v.ArtifactURI) {
				t.Errorf("refused delete changed the version: %+v, %v", v, err)
			}
		})
	}

	t.Run("unused", func(t *testing.T) {
		got, err := e.svc.DeleteVersion(ctx, "diabetes", 1, usedBy)
		if err != nil {
			t.Fatalf("DeleteVersion: %v", err)
		}
		if got.State != registry.StatePurged || got.Version != 1 {
			t.Errorf("deleted version = %+v, want version 1 purged", got)
		}
		if exists(vs[0].ArtifactURI) {
			t.Errorf("artifact %s of the deleted version is still there", vs[0].ArtifactURI)
		}
		if !exists(vs[1].ArtifactURI) || !exists(vs[2].ArtifactURI) {
			t.Error("deleting version 1 deleted another version's artifact")
		}
		// Again: nothing to do.
		if again, err := e.svc.DeleteVersion(ctx, "diabetes", 1, usedBy); err != nil || again.State != registry.StatePurged {
			t.Errorf("second delete = %+v, %v", again, err)
		}
		// The number is not reused.
		if v := pushN(t, e, "diabetes", 1)[0]; v.Version != 4 {
			t.Errorf("next push got version %d, want 4", v.Version)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := e.svc.DeleteVersion(ctx, "diabetes", 99, nil); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteVersion(99) = %v, want not found", err)
		}
	})
}

// TestDeleteVersionSharedArtifact: an artifact two versions share (stored
// by content) stays while the other version is not purged.
func TestDeleteVersionSharedArtifact(t *testing.T) {
	e := newEnv(t, registry.Options{})
	file := writeFile(t, t.TempDir(), "model.json", `{"ok":true}`)
	var vs []registry.Version
	for _, m := range []string{"a", "b"} {
		v, err := e.svc.Push(ctx, registry.PushRequest{Model: m, Path: file})
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if vs[0].ArtifactURI != vs[1].ArtifactURI {
		t.Fatalf("the same file got two artifacts: %s, %s", vs[0].ArtifactURI, vs[1].ArtifactURI)
	}
	if _, err := e.svc.DeleteVersion(ctx, "a", 1, nil); err != nil {
		t.Fatal(err)
	}
	if !exists(vs[0].ArtifactURI) {
		t.Fatal("the shared artifact was deleted while b:1 still uses it")
	}
	if _, err := e.svc.DeleteVersion(ctx, "b", 1, nil); err != nil {
		t.Fatal(err)
	}
	if exists(vs[0].ArtifactURI) {
		t.Error("the artifact stayed after every version that had it was deleted")
	}
}

// deleterStore adds registry.ModelDeleter to a store, recording the
// calls, for the service's side of DeleteModel; the stores' side is in
// the registrytest conformance suite.
type deleterStore struct {
	registry.Store
	deleted []string
}

func (d *deleterStore) DeleteModel(_ context.Context, name string) error {
	d.deleted = append(d.deleted, name)
	return nil
}

func TestDeleteModel(t *testing.T) {
	t.Run("store cannot", func(t *testing.T) {
		e := newEnv(t, registry.Options{})
		pushN(t, e, "m", 1)
		// A store without the optional ModelDeleter: hide the method.
		svc := registry.NewService(struct{ registry.Store }{e.st}, e.art, registry.Options{Validator: jsonValidator})
		if err := svc.DeleteModel(ctx, "m", nil); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("DeleteModel over a store without ModelDeleter = %v, want ErrUnsupported", err)
		}
		if v, _ := e.st.GetVersion(ctx, "m", 1); v.State != registry.StateActive {
			t.Errorf("refused delete changed m:1 to %s", v.State)
		}
	})

	e := newEnv(t, registry.Options{})
	st := &deleterStore{Store: e.st}
	svc := registry.NewService(st, e.art, registry.Options{Validator: jsonValidator})
	e.svc = svc
	vs := pushN(t, e, "m", 3)
	pushN(t, e, "other", 1)
	if _, err := svc.MoveAlias(ctx, "m", "champion", 2, registry.AnyVersion, ""); err != nil {
		t.Fatal(err)
	}
	usedBy := func(model string, version int) []string {
		if model == "m" && version == 1 {
			return []string{"web"}
		}
		return nil
	}
	err := svc.DeleteModel(ctx, "m", usedBy)
	want := &registry.InUseError{Subject: "model m", Model: "m", Aliases: []string{"champion → 2"}, Deployments: []string{"web"}}
	if got, ok := errors.AsType[*registry.InUseError](err); !ok {
		t.Fatalf("DeleteModel of a model in use = %v, want an *InUseError", err)
	} else if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("InUseError (-want +got):\n%s", diff)
	}
	for _, wantMsg := range []string{"cannot delete model m", "alias champion → 2", "deployment web", "ebb models alias m"} {
		if !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("error %q does not say %q", err, wantMsg)
		}
	}
	if len(st.deleted) != 0 {
		t.Fatalf("refused delete reached the store: %v", st.deleted)
	}

	if _, err := svc.DeleteAlias(ctx, "m", "champion", registry.AnyVersion, ""); err != nil {
		t.Fatal(err)
	}
	if err := svc.DeleteModel(ctx, "m", nil); err != nil {
		t.Fatalf("DeleteModel: %v", err)
	}
	if !slices.Equal(st.deleted, []string{"m"}) {
		t.Errorf("store deletions = %v, want [m]", st.deleted)
	}
	for _, v := range vs {
		if exists(v.ArtifactURI) {
			t.Errorf("artifact of %s still there", v.Ref())
		}
		// The recording store keeps the rows: they are purged.
		if got, _ := e.st.GetVersion(ctx, "m", v.Version); got.State != registry.StatePurged {
			t.Errorf("%s is %s, want purged", v.Ref(), got.State)
		}
	}
	if err := svc.DeleteModel(ctx, "missing", nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteModel(missing) = %v, want not found", err)
	}
}

func TestInUseErrorMessage(t *testing.T) {
	err := &registry.InUseError{Subject: "diabetes:3", Model: "diabetes", Aliases: []string{"champion"}, Deployments: []string{"web"}}
	want := "cannot delete diabetes:3: it is in use by alias champion and deployment web: move or delete the alias " +
		"(`ebb models alias diabetes ALIAS VERSION` or `--delete`), and point the deployment at another version or delete it first"
	if err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}
}
