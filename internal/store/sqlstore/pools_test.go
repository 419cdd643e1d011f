package sqlstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// TestPools creates, reads, lists, updates and deletes pools on every
// backend.
func TestPools(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := b.openT(t, b.newDB(t))
		spec := serving.PoolSpec{Engine: "trees", MemoryBudget: "64MiB", Env: map[string]string{"A": "1"}}
		spec.Default()
		created, err := st.CreatePool(ctx, serving.Pool{Name: "tiny", Spec: spec, Generation: 7})
		if err != nil {
			t.Fatal(err)
		}
		if created.Generation != 1 || created.CreatedAt.IsZero() {
			t.Errorf("created %+v: want generation 1 and a creation time", created)
		}
		if _, err := st.CreatePool(ctx, serving.Pool{Name: "tiny", Spec: spec}); !errors.Is(err, store.ErrExists) {
			t.Errorf("create again: %v, want ErrExists", err)
		}
		got, err := st.GetPool(ctx, "tiny")
		if err != nil || got.Spec.MemoryBudget != "64MiB" || got.Spec.Env["A"] != "1" {
			t.Fatalf("get: %+v, %v", got, err)
		}
		if _, err := st.CreatePool(ctx, serving.Pool{Name: "another", Spec: spec}); err != nil {
			t.Fatal(err)
		}
		all, err := st.ListPools(ctx)
		if err != nil || len(all) != 2 || all[0].Name != "another" || all[1].Name != "tiny" {
			t.Fatalf("list: %+v, %v", all, err)
		}

		for _, tt := range []struct {
			name    string
			edit    func(*serving.Pool) error
			wantGen int64
			wantErr bool
		}{
			{"same spec keeps the generation", func(*serving.Pool) error { return nil }, 1, false},
			{"a new budget is a new generation", func(p *serving.Pool) error { p.Spec.MemoryBudget = "128MiB"; return nil }, 2, false},
			{"fn's error writes nothing", func(p *serving.Pool) error { p.Spec.MemoryBudget = "1GiB"; return errors.New("no") }, 2, true},
			{"no renames", func(p *serving.Pool) error { p.Name = "other"; return nil }, 2, true},
		} {
			t.Run(tt.name, func(t *testing.T) {
				out, err := st.UpdatePool(ctx, "tiny", tt.edit)
				if (err != nil) != tt.wantErr {
					t.Fatalf("update: %v, want error %v", err, tt.wantErr)
				}
				got, _ := st.GetPool(ctx, "tiny")
				if got.Generation != tt.wantGen || got.Spec.MemoryBudget == "1GiB" {
					t.Errorf("after update (%+v): stored %+v, want generation %d", out, got, tt.wantGen)
				}
			})
		}
		if err := st.DeletePool(ctx, "tiny"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.GetPool(ctx, "tiny"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("get deleted: %v, want ErrNotFound", err)
		}
		if err := st.DeletePool(ctx, "tiny"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("delete again: %v, want ErrNotFound", err)
		}
	})
}
