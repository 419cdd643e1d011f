package drift

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// BenchmarkSyncerEntries works out what to watch among 10,000
// deployments, as ebb up does every 10 s: the cost a big instance pays
// in the background of its request path.
func BenchmarkSyncerEntries(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "ebb.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	svc := registry.NewService(st, nil, registry.Options{})
	const many = 10_000
	for i := range many {
		d := serving.Deployment{Name: fmt.Sprintf("d-%05d", i), Spec: serving.Spec{Model: "", Engine: "echo", Scaling: serving.Scaling{MaxReplicas: 1}}}
		if _, err := st.CreateDeployment(ctx, d); err != nil {
			b.Fatal(err)
		}
		if i%10 == 0 {
			if err := st.RecordServing(ctx, d.Name, "m", 1+i%3, time.Now()); err != nil {
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
