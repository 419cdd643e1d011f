package rollout

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
)

// versions registers n versions of model "m" in the fixture's registry.
func (f *fixture) versions(n int) {
	f.t.Helper()
	ctx := context.Background()
	if _, err := f.st.CreateModel(ctx, registry.Model{Name: "m"}); err != nil {
		f.t.Fatal(err)
	}
	for range n {
		if _, err := f.st.CreateVersion(ctx, registry.Version{Model: "m", ArtifactURI: "file:///a", SHA256: "00", Engine: "trees"}); err != nil {
			f.t.Fatal(err)
		}
	}
}

// served records that deployment m serves m:version, as the control loop
// does once its replicas are ready, a minute after the last record.
func (f *fixture) served(versions ...int) {
	f.t.Helper()
	for _, v := range versions {
		f.clock.Step(time.Minute)
		if err := f.svc.RecordServing(context.Background(), "m", "m", v); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) alias(version int) {
	f.t.Helper()
	if _, err := f.svc.MoveAlias(context.Background(), "m", "champion", version, registry.AnyVersion, "alice"); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) aliasAt() int {
	f.t.Helper()
	a, err := f.st.GetAlias(context.Background(), "m", "champion")
	if err != nil {
		f.t.Fatal(err)
	}
	return a.Version
}

func TestUndoMovesTheAlias(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "m@champion")
	f.versions(3)
	f.alias(1)
	f.served(1)
	f.alias(2)
	f.served(2)

	res, err := f.m.Undo(ctx, "m", UndoRequest{}, "bob")
	if err != nil {
		t.Fatal(err)
	}
	want := UndoResult{Deployment: "m", From: "m:2", To: "m:1", Revision: 1, Model: "m@champion", AliasMoved: true}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("first undo (-want +got):\n%s", diff)
	}
	if got := f.aliasAt(); got != 1 {
		t.Errorf("after undo champion is at %d; want 1", got)
	}
	moves, err := f.st.AliasHistory(ctx, "m", "champion")
	if err != nil {
		t.Fatal(err)
	}
	if last := moves[len(moves)-1]; last.From != 2 || last.To != 1 || last.By != "rollout undo (bob)" {
		t.Errorf("the alias move = %+v; want 2 → 1 by rollout undo (bob)", last)
	}
	if d := f.deployment(); d.Spec.Model != "m@champion" {
		t.Errorf("spec.model = %q; want the alias kept", d.Spec.Model)
	}
	if ev := strings.Join(f.events, "\n"); !strings.Contains(ev, "Normal RolloutUndone: m:2 → m:1 (revision 1 of its history): alias m@champion moved to 1, by bob") {
		t.Errorf("events:\n%s\nwant the undo", ev)
	}

	// Undo again goes forward to 2 (history 1, 2, 1).
	f.served(1)
	res, err = f.m.Undo(ctx, "m", UndoRequest{}, "bob")
	if err != nil || res.To != "m:2" || res.Revision != 2 || f.aliasAt() != 2 {
		t.Fatalf("second undo = %+v, %v, alias at %d; want back to m:2 (revision 2)", res, err, f.aliasAt())
	}
	// Before the deployment served 2 again, what it follows counts, not
	// its history: undo goes to 1, the latest revision that is not 2.
	res, err = f.m.Undo(ctx, "m", UndoRequest{}, "bob")
	if err != nil || res.From != "m:2" || res.To != "m:1" || res.Revision != 3 || f.aliasAt() != 1 {
		t.Fatalf("undo before the history caught up = %+v, %v, alias at %d; want m:2 → m:1 (revision 3)", res, err, f.aliasAt())
	}
	// An explicit revision.
	f.served(1)
	f.alias(3)
	f.served(3)
	res, err = f.m.Undo(ctx, "m", UndoRequest{ToRevision: 2}, "")
	if err != nil || res.From != "m:3" || res.To != "m:2" || f.aliasAt() != 2 {
		t.Fatalf("undo --to-revision 2 = %+v, %v, alias at %d; want m:3 → m:2", res, err, f.aliasAt())
	}
	if len(f.notified) != 0 {
		t.Errorf("notified %v; an alias move tells the control loop itself", f.notified)
	}
}

func TestUndoSetsTheVersion(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		model string // spec.model when undone
		want  UndoResult
	}{
		{"pinned version", "m:2", UndoResult{Deployment: "m", From: "m:2", To: "m:1", Revision: 1, Model: "m:1"}},
		// An alias of another model cannot move to m's version.
		{"alias of another model", "other@champion", UndoResult{Deployment: "m", From: "other:1", To: "m:2", Revision: 2, Model: "m:2"}},
		// A path served after the registry versions: back to the last.
		{"path", "/models/m.json", UndoResult{Deployment: "m", To: "m:2", Revision: 2, Model: "m:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.model)
			f.versions(2)
			if _, err := f.st.CreateModel(ctx, registry.Model{Name: "other"}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.st.CreateVersion(ctx, registry.Version{Model: "other", ArtifactURI: "file:///b", SHA256: "01", Engine: "trees"}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.MoveAlias(ctx, "other", "champion", 1, 0, "alice"); err != nil {
				t.Fatal(err)
			}
			f.served(1, 2)
			res, err := f.m.Undo(ctx, "m", UndoRequest{}, "bob")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, res); diff != "" {
				t.Errorf("undo (-want +got):\n%s", diff)
			}
			if d := f.deployment(); d.Spec.Model != tt.want.Model {
				t.Errorf("spec.model = %q; want %q", d.Spec.Model, tt.want.Model)
			}
			if diff := cmp.Diff([]string{"m"}, f.notified); diff != "" {
				t.Errorf("notified (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUndoRefused(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(f *fixture)
		req   UndoRequest
		want  error
		msg   string
	}{
		{"nothing earlier", func(f *fixture) { f.served(2) }, UndoRequest{}, ErrInvalid, "served no other registry version than m:2"},
		{"no history", func(f *fixture) {}, UndoRequest{}, ErrInvalid, "cannot undo: deployment \"m\" has served no other registry version than m:2 (`ebb rollout history m`)"},
		{"revision out of range", nil, UndoRequest{ToRevision: 5}, ErrInvalid, `deployment "m" has 2 revisions`},
		{"revision served now", nil, UndoRequest{ToRevision: 2}, ErrInvalid, "already serves m:2"},
		{"negative revision", nil, UndoRequest{ToRevision: -1}, ErrInvalid, "numbered from 1"},
		{"purged", func(f *fixture) {
			f.served(1, 2)
			if _, err := f.st.SetVersionState(ctx, "m", 1, registry.StateActive, registry.StatePurged, f.clock.Now()); err != nil {
				t.Fatal(err)
			}
		}, UndoRequest{}, ErrInvalid, "m:1 was retired and its artifact deleted"},
		{"rollout active", func(f *fixture) {
			f.served(1, 2)
			if _, err := f.m.Start(ctx, "m", Request{To: "m:3"}); err != nil {
				t.Fatal(err)
			}
		}, UndoRequest{}, ErrActive, "abort it first (`ebb rollout abort m`)"},
		{"split by hand", func(f *fixture) {
			f.served(1, 2)
			if _, err := f.st.UpdateDeployment(ctx, "m", func(d *serving.Deployment) error {
				d.Spec.Traffic = []serving.TrafficTarget{{Model: "m@champion", Weight: 90}, {Model: "m:1", Weight: 10, Tag: "old"}}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}, UndoRequest{}, ErrActive, "remove the split first"},
		{"check refuses", nil, UndoRequest{Check: func(_ context.Context, v string) error {
			return errors.New("running " + v + " needs the exec scope")
		}}, nil, "running m:1 needs the exec scope"},
		{"no registry", func(f *fixture) {
			f.served(1, 2)
			f.m = New(f.st, f.st, f.meters, Options{Clock: f.clock})
		}, UndoRequest{}, ErrInvalid, "no model registry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "m@champion")
			f.versions(3)
			f.alias(2)
			if tt.setup == nil {
				f.served(1, 2)
			} else {
				tt.setup(f)
			}
			before := f.deployment().Spec
			_, err := f.m.Undo(ctx, "m", tt.req, "bob")
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Undo = %v; want %v with %q", err, tt.want, tt.msg)
			}
			if f.aliasAt() != 2 {
				t.Errorf("a refused undo moved the alias to %d", f.aliasAt())
			}
			if diff := cmp.Diff(before, f.deployment().Spec); diff != "" {
				t.Errorf("a refused undo changed the spec (-before +after):\n%s", diff)
			}
		})
	}
}
