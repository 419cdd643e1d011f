package home

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// countingLister counts the lists that reach the store.
type countingLister struct {
	StampedLister
	lists int
}

func (c *countingLister) ListDeployments(ctx context.Context) ([]serving.Deployment, error) {
	c.lists++
	return c.StampedLister.ListDeployments(ctx)
}

// CachedDeployments lists the store again after a create, an update and
// a delete, and answers from what it holds otherwise.
func TestCachedDeployments(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	counting := &countingLister{StampedLister: st}
	c := &CachedDeployments{Store: counting}
	names := func() []string {
		t.Helper()
		ds, err := c.ListDeployments(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, d := range ds {
			out = append(out, d.Name+":"+string(rune('0'+d.Spec.Scaling.MaxReplicas)))
		}
		return out
	}
	spec := serving.Spec{Engine: "echo", Scaling: serving.Scaling{MaxReplicas: 1}}
	steps := []struct {
		name      string
		change    func() error
		want      []string
		wantLists int
	}{
		{"empty", nil, []string{}, 1},
		{"unchanged", nil, []string{}, 1},
		{"create", func() error {
			_, err := st.CreateDeployment(ctx, serving.Deployment{Name: "a", Spec: spec})
			return err
		}, []string{"a:1"}, 2},
		{"unchanged again", nil, []string{"a:1"}, 2},
		{"update", func() error {
			_, err := st.UpdateDeployment(ctx, "a", func(d *serving.Deployment) error { d.Spec.Scaling.MaxReplicas = 3; return nil })
			return err
		}, []string{"a:3"}, 3},
		{"delete", func() error { return st.DeleteDeployment(ctx, "a") }, []string{}, 4},
	}
	for _, s := range steps {
		if s.change != nil {
			if err := s.change(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		if diff := cmp.Diff(s.want, names()); diff != "" {
			t.Errorf("%s: deployments (-want +got):\n%s", s.name, diff)
		}
		if counting.lists != s.wantLists {
			t.Errorf("%s: %d lists reached the store, want %d", s.name, counting.lists, s.wantLists)
		}
	}
}
