package registrytest

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/registry"
)

// testResolveRefs: numbered refs and aliases resolve, in bulk, to what
// GetVersion returns; refs that name nothing are left out; duplicates and
// more refs than one query takes are fine; an alias follows its moves.
func testResolveRefs(t *testing.T, s registry.Store) {
	mustModel(t, s, "diabetes")
	v1, v2 := mustVersion(t, s, "diabetes"), mustVersion(t, s, "diabetes")
	if _, err := s.SetAlias(ctx, "diabetes", "champion", 2, 0, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetAlias(ctx, "diabetes", "old", 1, 0, "alice"); err != nil {
		t.Fatal(err)
	}
	mustModel(t, s, "empty")
	ref := func(model string, version int, alias string) registry.Ref {
		return registry.Ref{Model: model, Version: version, Alias: alias}
	}
	refs := []registry.Ref{
		ref("diabetes", 1, ""), ref("diabetes", 2, ""), ref("diabetes", 0, "champion"), ref("diabetes", 0, "old"),
		ref("diabetes", 2, ""), // a duplicate
		ref("diabetes", 3, ""), ref("diabetes", 0, "none"), ref("empty", 1, ""), ref("nope", 1, ""), ref("nope", 0, "champion"),
		ref("", 1, ""), ref("diabetes", 0, ""),
	}
	got, err := s.ResolveRefs(ctx, refs)
	if err != nil {
		t.Fatalf("ResolveRefs: %v", err)
	}
	want := map[registry.Ref]registry.Version{
		ref("diabetes", 1, ""): v1, ref("diabetes", 2, ""): v2,
		ref("diabetes", 0, "champion"): v2, ref("diabetes", 0, "old"): v1,
	}
	if diff := cmp.Diff(want, got, sameTime); diff != "" {
		t.Errorf("ResolveRefs (-want +got):\n%s", diff)
	}
	if got, err := s.ResolveRefs(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("ResolveRefs(nil) = %v, %v; want empty, nil", got, err)
	}

	// The alias moves: the next resolve follows it.
	if _, err := s.SetAlias(ctx, "diabetes", "champion", 1, 2, "bob"); err != nil {
		t.Fatal(err)
	}
	got, err = s.ResolveRefs(ctx, []registry.Ref{ref("diabetes", 0, "champion")})
	if err != nil || got[ref("diabetes", 0, "champion")].Version != 1 {
		t.Errorf("ResolveRefs after the move = %v, %v; want diabetes@champion at version 1", got, err)
	}

	// Many models, more refs than one query asks for, aliases and numbers
	// mixed.
	const many = 450
	refs, want = nil, map[registry.Ref]registry.Version{}
	for i := range many {
		name := fmt.Sprintf("m-%03d", i)
		mustModel(t, s, name)
		v := mustVersion(t, s, name)
		if _, err := s.SetAlias(ctx, name, "champion", 1, 0, "alice"); err != nil {
			t.Fatal(err)
		}
		num, alias := ref(name, 1, ""), ref(name, 0, "champion")
		refs = append(refs, num, alias, ref(name, 2, ""))
		want[num], want[alias] = v, v
	}
	got, err = s.ResolveRefs(ctx, refs)
	if err != nil {
		t.Fatalf("ResolveRefs(%d refs): %v", len(refs), err)
	}
	if diff := cmp.Diff(want, got, sameTime); diff != "" {
		t.Errorf("ResolveRefs(%d refs) (-want +got):\n%s", len(refs), diff)
	}
}
