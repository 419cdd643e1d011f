package control

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/serving"
)

// newRegistryFixture is the fixture with the real resolver over a real
// registry in the fixture's store: model diabetes with version 1, which
// alias champion points at. Alias changes reach the loop as they do in
// both homes (OnAliasChange → NotifyModel).
func newRegistryFixture(t *testing.T) (*fixture, *registry.Service) {
	t.Helper()
	f := newFixture(t)
	f.stop()
	ctx := context.Background()
	svc := registry.NewService(f.store, nil, registry.Options{OnAliasChange: func(m string) { f.ctl.NotifyModel(m) }})
	if _, err := f.store.CreateModel(ctx, registry.Model{Name: "diabetes"}); err != nil {
		t.Fatal(err)
	}
	v := registry.Version{Model: "diabetes", Engine: "trees", ArtifactURI: "file:///artifacts/sha256/ab", SHA256: strings.Repeat("ab", 32), Size: 10}
	if _, err := f.store.CreateVersion(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.MoveAlias(ctx, "diabetes", "champion", 1, 0, "test"); err != nil {
		t.Fatal(err)
	}
	f.ctl = New(f.store, f.backend, f.routes, Options{Clock: f.clock, MinBackoff: 1, Resolver: resolve.New(svc),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	runCtx, cancel := context.WithCancel(ctx)
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.ctl.Run(runCtx) }()
	<-f.ctl.Loaded()
	return f, svc
}

// create stores a deployment the way kubectl does in a cluster: straight
// into the store, past the API's create-time check, and tells the loop.
func (f *fixture) create(name, model string, minReplicas int32) {
	f.t.Helper()
	d := serving.Deployment{Name: name, Spec: serving.Spec{Model: model, Scaling: serving.Scaling{MinReplicas: minReplicas, MaxReplicas: 2}}}
	d.Spec.Default()
	if _, err := f.store.CreateDeployment(context.Background(), d); err != nil {
		f.t.Fatal(err)
	}
	f.ctl.Notify(name)
	f.tick()
}

func (f *fixture) startedCount() int {
	f.backend.mu.Lock()
	defer f.backend.mu.Unlock()
	return len(f.backend.started)
}

func hasEvent(f *fixture, name, reason, text string) bool {
	evs, _ := f.ctl.Events(context.Background(), name)
	for _, ev := range evs {
		if ev.Reason == reason && strings.Contains(ev.Message, text) {
			return true
		}
	}
	return false
}

// TestUnresolvableRefFailsDeployment: a ref that never resolved (written
// past the API, as kubectl does) fails the deployment with a status.failure
// that says what is missing and how to fix it; nothing starts, and requests
// fail fast with the same words.
func TestUnresolvableRefFailsDeployment(t *testing.T) {
	for _, tt := range []struct {
		model string
		want  []string
	}{
		{"nope@champion", []string{"model nope@champion does not resolve", `model nope has no alias "champion"`,
			"`ebb models alias nope champion VERSION`", "or change spec.model"}},
		{"diabetes@staging", []string{"model diabetes@staging does not resolve", `model diabetes has no alias "staging"`, "`ebb get model diabetes` shows its aliases"}},
		{"diabetes:7", []string{"model diabetes:7 does not resolve", "model diabetes has no version 7", "`ebb get model diabetes` lists its versions"}},
	} {
		t.Run(tt.model, func(t *testing.T) {
			f, _ := newRegistryFixture(t)
			f.create("m", tt.model, 1)
			st := f.until("m", "failed", func(st serving.Status) bool { return st.Failure != "" })
			for _, w := range tt.want {
				if !strings.Contains(st.Failure, w) {
					t.Errorf("status.failure = %q; want it to contain %q", st.Failure, w)
				}
			}
			if strings.Contains(st.Failure, "keep serving") {
				t.Errorf("status.failure = %q speaks of replicas serving; none ever ran", st.Failure)
			}
			if r := f.routes.Lookup("m"); r == nil || r.Failure != st.Failure {
				t.Errorf("route failure = %+v; want %q so requests fail fast", r, st.Failure)
			}
			if !hasEvent(f, "m", serving.ReasonResolveFailed, tt.model) {
				t.Errorf("no %s event naming %s", serving.ReasonResolveFailed, tt.model)
			}
			f.tick()
			time.Sleep(20 * time.Millisecond)
			if st := f.ctl.Status("m"); st.Replicas != 0 || f.startedCount() != 0 {
				t.Errorf("replicas started for a model that does not resolve: status %+v, %d started", st, f.startedCount())
			}
		})
	}
}

// TestAliasDeletedWhileServing: the alias a deployment follows is deleted
// while a replica serves. The deployment reports it in status.failure
// (with what still serves), the running replica keeps serving, and no new
// replica starts from the stale resolution; when the alias is set again,
// the failure clears and replicas start again.
func TestAliasDeletedWhileServing(t *testing.T) {
	f, svc := newRegistryFixture(t)
	ctx := context.Background()
	f.create("m", "diabetes@champion", 1)
	st := f.until("m", "1 ready on diabetes:1", func(st serving.Status) bool { return st.ReadyReplicas == 1 && st.ModelVersion == "diabetes:1" })
	first := st.ReplicaStatuses[0].ID

	if _, err := svc.DeleteAlias(ctx, "diabetes", "champion", registry.AnyVersion, "test"); err != nil {
		t.Fatal(err)
	}
	st = f.until("m", "failed", func(st serving.Status) bool { return st.Failure != "" })
	for _, w := range []string{"model diabetes@champion does not resolve", `model diabetes has no alias "champion" (it was deleted, or never set`,
		"`ebb models alias diabetes champion VERSION`", "no replica starts until it does, and those running keep serving diabetes:1"} {
		if !strings.Contains(st.Failure, w) {
			t.Errorf("status.failure = %q; want it to contain %q", st.Failure, w)
		}
	}
	if st.Reason != st.Failure {
		t.Errorf("status.reason = %q; want the failure, which matters more than the autoscaler's reason", st.Reason)
	}
	if st.ReadyReplicas != 1 || st.ModelVersion != "diabetes:1" {
		t.Errorf("status after the alias went: %d ready on %q; want the replica serving diabetes:1 still", st.ReadyReplicas, st.ModelVersion)
	}
	if r := f.routes.Lookup("m"); r == nil || len(r.Endpoints) != 1 || r.Failure != "" {
		t.Errorf("route = %+v; want the running replica routed and no failure", r)
	}
	if !hasEvent(f, "m", serving.ReasonResolveFailed, "diabetes@champion") {
		t.Errorf("no %s event", serving.ReasonResolveFailed)
	}

	// The replica ends: nothing replaces it from the stale resolution,
	// and requests now fail fast with the failure.
	f.backend.crash(first)
	f.until("m", "no replica", func(st serving.Status) bool { return st.Replicas == 0 })
	for range 3 {
		f.tick()
		time.Sleep(20 * time.Millisecond) // room for a start the loop should not make
	}
	if n := f.startedCount(); n != 1 {
		t.Errorf("%d replicas started in all; want only the first: nothing starts while the model does not resolve", n)
	}
	st = f.ctl.Status("m")
	if !strings.Contains(st.Failure, "does not resolve") {
		t.Errorf("status.failure at zero = %q", st.Failure)
	}
	if r := f.routes.Lookup("m"); r == nil || r.Failure != st.Failure {
		t.Errorf("route at zero = %+v; want failure %q", r, st.Failure)
	}

	// The alias is back: the failure clears and a replica starts.
	if _, err := svc.MoveAlias(ctx, "diabetes", "champion", 1, 0, "test"); err != nil {
		t.Fatal(err)
	}
	f.tick()
	st = f.until("m", "1 ready again, no failure", func(st serving.Status) bool { return st.ReadyReplicas == 1 && st.Failure == "" })
	if r := f.routes.Lookup("m"); r == nil || r.Failure != "" || len(r.Endpoints) != 1 {
		t.Errorf("route after the alias came back = %+v", r)
	}
}
