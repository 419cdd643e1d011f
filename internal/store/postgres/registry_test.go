package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/registry/registrytest"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
)

func TestRegistryConformance(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) registry.Store {
		return openT(t, pgtest.Start(t))
	})
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct{ in, want string }{
		{"m-", "m."},
		{"a", "b"},
		{"a\xff", "b"},
		{"\xff", ""},
		{"", ""},
		{"é", "ê"},      // c3 a9 -> c3 aa
		{"\u00ff", ""},  // c3 bf -> c3 c0: not UTF-8, so no upper bound
		{"x\u00ff", ""}, // likewise
	}
	for _, tt := range tests {
		if got := prefixEnd(tt.in); got != tt.want {
			t.Errorf("prefixEnd(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestListModelsNonASCIIPrefix checks prefixes whose upper bound is not
// valid UTF-8, which the store must not send to PostgreSQL.
func TestListModelsNonASCIIPrefix(t *testing.T) {
	ctx := context.Background()
	s := openT(t, pgtest.Start(t))
	for _, name := range []string{"\u00ffa", "\u00ffb", "\u0100", "z"} {
		if _, err := s.CreateModel(ctx, registry.Model{Name: name}); err != nil {
			t.Fatalf("CreateModel(%q): %v", name, err)
		}
	}
	ms, err := s.ListModels(ctx, registry.ListOptions{Prefix: "\u00ff"})
	if err != nil {
		t.Fatalf("ListModels: %v", err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Name)
	}
	if diff := cmp.Diff([]string{"\u00ffa", "\u00ffb"}, got); diff != "" {
		t.Errorf("ListModels(prefix ÿ) (-want +got):\n%s", diff)
	}
}

// TestAliasCompareAndSwapRace repeats many rounds of concurrent alias moves
// from the same version, from two stores (as two ebb processes): in every
// round exactly one move wins, and the history holds only winners.
func TestAliasCompareAndSwapRace(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	ctx := context.Background()
	dsn := pgtest.Start(t)
	stores := []*Store{openT(t, dsn), openT(t, dsn)}
	s := stores[0]
	const movers, rounds = 12, 25
	if _, err := s.CreateModel(ctx, registry.Model{Name: "m"}); err != nil {
		t.Fatal(err)
	}
	for range movers + 1 {
		if _, err := s.CreateVersion(ctx, registry.Version{Model: "m", ArtifactURI: "file:///m", SHA256: "00", Engine: "trees"}); err != nil {
			t.Fatal(err)
		}
	}
	for round := range rounds {
		alias := fmt.Sprintf("a%d", round)
		var wg sync.WaitGroup
		start := make(chan struct{})
		wins := make([]bool, movers+1)
		errs := make([]error, movers+1)
		if _, err := s.SetAlias(ctx, "m", alias, 1, 0, "setup"); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= movers; i++ {
			wg.Go(func() {
				<-start
				_, errs[i] = stores[i%2].SetAlias(ctx, "m", alias, i+1, 1, fmt.Sprint(i))
				wins[i] = errs[i] == nil
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for i := 1; i <= movers; i++ {
			switch {
			case wins[i]:
				won++
			case !errors.Is(errs[i], store.ErrConflict):
				t.Errorf("round %d mover %d: %v, want success or store.ErrConflict", round, i, errs[i])
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d concurrent moves from version 1 won, want exactly 1", round, won)
		}
		hist, err := s.AliasHistory(ctx, "m", alias)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != 2 {
			t.Fatalf("round %d: history %+v, want the creation and one move", round, hist)
		}
	}
}
