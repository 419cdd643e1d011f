package drift

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/artifact/file"
	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/predlog"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// artifacts is the registry's view of a file artifact store.
type artifacts struct{ s artifact.Store }

func (a artifacts) Put(ctx context.Context, r io.Reader) (string, string, int64, error) {
	ref, err := a.s.Put(ctx, r)
	return ref.URI, ref.SHA256, ref.Size, err
}

func (a artifacts) Open(ctx context.Context, uri, sum string) (io.ReadCloser, error) {
	return artifact.OpenVerified(ctx, a.s, uri, sum)
}

// The syncer watches each deployment's versions that have a profile: its
// model (an alias resolved), its traffic targets and the versions that
// served it last.
func TestSyncerEntries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fs, err := file.New(filepath.Join(dir, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	svc := registry.NewService(st, artifacts{fs}, registry.Options{})
	model := filepath.Join(dir, "model.json")
	if err := os.WriteFile(model, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testProfile(t)
	var ids []string
	for v := 1; v <= 4; v++ {
		if _, err := svc.Push(ctx, registry.PushRequest{Model: "m", Path: model, Engine: "trees"}); err != nil {
			t.Fatal(err)
		}
		if v == 4 {
			continue // no profile
		}
		got, err := svc.SetProfile(ctx, "m", v, p)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got.Tags[registry.TagProfileSHA256])
	}
	if _, err := svc.MoveAlias(ctx, "m", "champion", 2, registry.AnyVersion, ""); err != nil {
		t.Fatal(err)
	}
	for _, d := range []serving.Deployment{
		{Name: "alias", Spec: serving.Spec{Model: "m@champion", Scaling: serving.Scaling{MaxReplicas: 1}}},
		{Name: "split", Spec: serving.Spec{Model: "m:3", Traffic: []serving.TrafficTarget{{Model: "m:3", Weight: 90}, {Model: "m:4", Weight: 10}},
			Scaling: serving.Scaling{MaxReplicas: 1}}},
		{Name: "path", Spec: serving.Spec{Model: model, Engine: "trees", Scaling: serving.Scaling{MaxReplicas: 1}}},
	} {
		if _, err := st.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.RecordServing(ctx, "alias", "m", 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	var applied []Entry
	s := &Syncer{Deployments: st, Registry: svc, Served: st, Apply: func(es []Entry) { applied = es }}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range applied {
		got = append(got, e.Deployment+" "+e.Version+" "+e.ProfileID[:8])
		if e.Profile == nil || len(e.Profile.Features) != len(p.Features) {
			t.Errorf("%s %s: profile not read", e.Deployment, e.Version)
		}
	}
	want := []string{"alias m:1 " + ids[0][:8], "alias m:2 " + ids[1][:8], "split m:3 " + ids[2][:8]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}

	// The monitor keeps a window whose profile did not change.
	clk := clocktesting.NewFakePassiveClock(time.Unix(1e9, 0))
	mon := NewMonitor(monitor.WindowOptions{Clock: clk})
	mon.Set(applied)
	if err := NewSink(mon, nil, nil, nil).Write(func() []predlog.Record {
		r := records(t, 1, 0, true, 1)
		r[0].Deployment, r[0].ModelVersion = "alias", "2"
		return r
	}()); err != nil {
		t.Fatal(err)
	}
	mon.Set(applied)
	if r := mon.Reports("alias"); len(r) != 2 || r[1].Rows != 5 {
		t.Errorf("alias reports after a second Set: %+v; want m:2 to keep its 5 rows", r)
	}
}
