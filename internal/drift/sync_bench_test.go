package drift

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
	"github.com/ebb-ml/ebb/internal/store/postgres"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// BenchmarkSyncerEntries works out what to watch among 10,000
// deployments, as ebb up does every 10 s: the cost a big instance pays
// in the background of its request path. "unregistered" deployments name
// model files; "registry" ones name registered versions (half by alias,
// half by number), each of which must be resolved. The store is SQLite,
// as in ebb up, or PostgreSQL (skipped when it is not installed), where
// every query is a round trip.
func BenchmarkSyncerEntries(b *testing.B) {
	ctx := context.Background()
	stores := []struct {
		name string
		open func(b *testing.B) (*sqlstore.Store, error)
	}{
		{"sqlite", func(b *testing.B) (*sqlstore.Store, error) {
			return sqlite.Open(ctx, filepath.Join(b.TempDir(), "ebb.db"))
		}},
		{"postgres", func(b *testing.B) (*sqlstore.Store, error) { return postgres.Open(ctx, pgtest.Start(b)) }},
	}
	for _, store := range stores {
		for _, registered := range []bool{false, true} {
			name := store.name + "/" + map[bool]string{false: "unregistered", true: "registry"}[registered]
			b.Run(name, func(b *testing.B) {
				st, err := store.open(b)
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				benchSyncerEntries(b, st, registered)
			})
		}
	}
}

func benchSyncerEntries(b *testing.B, st *sqlstore.Store, registered bool) {
	ctx := context.Background()
	svc := registry.NewService(st, nil, registry.Options{})
	const many = 10_000
	for i := range many {
		d := serving.Deployment{Name: fmt.Sprintf("d-%05d", i), Spec: serving.Spec{Model: "", Engine: "echo", Scaling: serving.Scaling{MaxReplicas: 1}}}
		model := "m"
		if registered {
			model = fmt.Sprintf("m-%05d", i)
			if _, err := st.CreateModel(ctx, registry.Model{Name: model}); err != nil {
				b.Fatal(err)
			}
			for range 2 {
				if _, err := st.CreateVersion(ctx, registry.Version{Model: model, ArtifactURI: "file:///m", SHA256: "00", Engine: "echo"}); err != nil {
					b.Fatal(err)
				}
			}
			d.Spec.Model = model + ":2"
			if i%2 == 0 {
				if _, err := st.SetAlias(ctx, model, "champion", 2, 0, "bench"); err != nil {
					b.Fatal(err)
				}
				d.Spec.Model = model + "@champion"
			}
		}
		if _, err := st.CreateDeployment(ctx, d); err != nil {
			b.Fatal(err)
		}
		if i%10 == 0 {
			if err := st.RecordServing(ctx, d.Name, model, 1+i%2, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	}
	s := &Syncer{Deployments: st, Registry: svc, Served: st}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Entries(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
