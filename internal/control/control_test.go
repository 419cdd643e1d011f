package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	clocktesting "k8s.io/utils/clock/testing"
)

// fakeBackend runs no processes: replicas are records that tests make
// ready, crash or fail. It follows the replica.Backend contract closely
// enough for the control loop; the real contract is tested by replicatest
// against the process backend.
type fakeBackend struct {
	mu       sync.Mutex
	reps     map[string]*fakeReplica
	failLoad map[string]string // model → load error
	hang     map[string]bool   // model → Ready blocks until its ctx ends
	started  []string
}

type fakeReplica struct {
	spec  replica.Spec
	ready chan struct{}
	exit  chan replica.Exit
	once  sync.Once
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{reps: map[string]*fakeReplica{}, failLoad: map[string]string{}, hang: map[string]bool{}}
}

func (f *fakeBackend) Start(_ context.Context, spec replica.Spec) (replica.Handle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &fakeReplica{spec: spec, ready: make(chan struct{}), exit: make(chan replica.Exit, 1)}
	f.reps[spec.ID] = r
	f.started = append(f.started, spec.ID)
	now := time.Now()
	return replica.Handle{Spec: spec, Backend: "fake", Endpoint: "http://fake.invalid/" + spec.ID, ScheduledAt: now, StartedAt: now}, nil
}

func (f *fakeBackend) get(id string) *fakeReplica {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reps[id]
}

func (f *fakeBackend) Ready(ctx context.Context, h replica.Handle) (replica.Startup, error) {
	r := f.get(h.Spec.ID)
	if r == nil {
		return replica.Startup{}, replica.ErrNotFound
	}
	f.mu.Lock()
	msg, hang := f.failLoad[h.Spec.Model], f.hang[h.Spec.Model]
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return replica.Startup{}, ctx.Err()
	}
	if msg != "" {
		r.end(replica.Exit{Code: 1, Err: errors.New("exit status 1")})
		return replica.Startup{}, errors.New(msg)
	}
	now := time.Now()
	return replica.Startup{ModelLoadedAt: now, ReadyAt: now}, nil
}

func (f *fakeBackend) Wait(ctx context.Context, h replica.Handle) (replica.Exit, error) {
	r := f.get(h.Spec.ID)
	if r == nil {
		return replica.Exit{}, replica.ErrNotFound
	}
	select {
	case ex := <-r.exit:
		return ex, nil
	case <-ctx.Done():
		return replica.Exit{}, ctx.Err()
	}
}

func (r *fakeReplica) end(ex replica.Exit) { r.once.Do(func() { r.exit <- ex }) }

func (f *fakeBackend) Stop(_ context.Context, h replica.Handle) error {
	if r := f.get(h.Spec.ID); r != nil {
		r.end(replica.Exit{})
	}
	return nil
}

func (f *fakeBackend) Recover(_ context.Context, h replica.Handle) error {
	if f.get(h.Spec.ID) == nil {
		return replica.ErrNotFound
	}
	return nil
}

func (f *fakeBackend) crash(id string) {
	f.get(id).end(replica.Exit{Code: -1, Err: errors.New("signal: killed")})
}

type fixture struct {
	t       *testing.T
	store   *sqlite.Store
	backend *fakeBackend
	routes  *routing.Table
	clock   *clocktesting.FakeClock
	ctl     *Controller
	cancel  context.CancelFunc
	done    chan error
}

func newFixture(t *testing.T, deps ...serving.Deployment) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/ebb.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, d := range deps {
		d.Spec.Default()
		if _, err := st.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{t: t, store: st, backend: newFakeBackend(), routes: &routing.Table{}, clock: clocktesting.NewFakeClock(time.Now())}
	f.start()
	return f
}

// start runs a fresh Controller over the fixture's store and backend, as a
// restarted ebb would.
func (f *fixture) start() {
	f.ctl = New(f.store, f.backend, f.routes, Options{
		Clock:      f.clock,
		MinBackoff: time.Second,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.ctl.Run(ctx) }()
	<-f.ctl.Loaded()
	f.t.Cleanup(f.stop)
}

func (f *fixture) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	if err := <-f.done; err != nil {
		f.t.Errorf("Run: %v", err)
	}
	f.ctl.Wait()
	f.cancel = nil
}

// tick advances the fake clock by one period so the loop decides again.
func (f *fixture) tick() { f.clock.Step(time.Second) }

// until waits (in real time, while the loop works) for cond on the status.
func (f *fixture) until(name, what string, cond func(serving.Status) bool) serving.Status {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := f.ctl.Status(name)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: %s not reached; status %+v", name, what, st)
		}
		time.Sleep(time.Millisecond)
	}
}

func dep(name string, sc serving.Scaling) serving.Deployment {
	return serving.Deployment{Name: name, Spec: serving.Spec{Model: "/models/" + name + ".json", Engine: "trees", Scaling: sc}}
}

func ready(n int32) func(serving.Status) bool {
	return func(st serving.Status) bool { return st.ReadyReplicas == n && st.Replicas == n }
}

func TestMinReplicasStartAndRoute(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 2, MaxReplicas: 3}))
	f.tick()
	st := f.until("m", "2 ready", ready(2))
	r := f.routes.Lookup("m")
	if r == nil || len(r.Endpoints) != 2 {
		t.Fatalf("route = %+v; want 2 endpoints", r)
	}
	for _, rs := range st.ReplicaStatuses {
		if len(rs.ColdStart) != 3 {
			t.Errorf("replica %s has cold-start phases %v; want 3", rs.ID, rs.ColdStart)
		}
	}
}

func TestWakeScalesFromZero(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 0, MaxReplicas: 4, TargetConcurrency: 2}))
	r := f.routes.Lookup("m")
	if r == nil || len(r.Endpoints) != 0 {
		t.Fatalf("cold deployment route = %+v; want a route with no endpoints", r)
	}
	// Five requests held: ceil(5/2) = 3 replicas, without waiting for a tick.
	for range 5 {
		r.Stats.Begin(f.clock.Now())
	}
	f.ctl.Wake("m")
	f.until("m", "3 ready", ready(3))
	if n := len(f.routes.Lookup("m").Endpoints); n != 3 {
		t.Errorf("routed endpoints = %d; want 3", n)
	}
}

func TestCrashedReplicaIsReplaced(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 1, MaxReplicas: 1}))
	f.tick()
	st := f.until("m", "1 ready", ready(1))
	victim := st.ReplicaStatuses[0].ID
	f.backend.crash(victim)
	f.until("m", "victim gone", func(st serving.Status) bool { return st.Replicas == 0 })
	// A crash within 10s of ready counts as a failure: the restart waits
	// for the backoff (1s here).
	f.tick()
	f.tick()
	st = f.until("m", "replacement ready", ready(1))
	if st.ReplicaStatuses[0].ID == victim {
		t.Errorf("replacement has the victim's ID %s", victim)
	}
}

func TestModelThatCannotLoad(t *testing.T) {
	f := newFixture(t)
	f.backend.failLoad["/models/bad.json"] = "/models/bad.json: not an XGBoost model"
	d := dep("bad", serving.Scaling{MinReplicas: 1, MaxReplicas: 1})
	d.Spec.Default()
	if _, err := f.store.CreateDeployment(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	f.ctl.Notify("bad")
	// The first failed starts hold requests while the loop retries
	// (crashloop.go); the third fails the deployment.
	st := f.until("bad", "first failure reported", func(st serving.Status) bool {
		return strings.Contains(st.Reason, "not an XGBoost model")
	})
	if st.Failure != "" || f.routes.Lookup("bad").Failure != "" {
		t.Fatalf("failed after one failed start: status %+v", st)
	}
	st = f.tickUntil("bad", "deployment failed", func(st serving.Status) bool { return st.Failure != "" })
	if st.ReadyReplicas != 0 {
		t.Errorf("ready replicas = %d; want 0", st.ReadyReplicas)
	}
	r := f.routes.Lookup("bad")
	if r == nil || !strings.Contains(r.Failure, "not an XGBoost model") {
		t.Fatalf("route %+v does not carry the failure", r)
	}
	// Backoff: no second start until the clock passes it.
	f.until("bad", "failed replica gone", func(st serving.Status) bool { return st.Replicas == 0 })
	n := len(f.backend.started)
	f.ctl.Notify("bad")
	time.Sleep(20 * time.Millisecond)
	if got := len(f.backend.started); got != n {
		t.Errorf("started %d more replicas within the backoff; want none", got-n)
	}
}

func TestModelChangeRollsOver(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 2, MaxReplicas: 2}))
	f.tick()
	old := f.until("m", "2 ready", ready(2))
	ctx := context.Background()
	if _, err := f.store.UpdateDeployment(ctx, "m", func(d *serving.Deployment) error {
		d.Spec.Model = "/models/m-v2.json"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.ctl.Notify("m")
	st := f.until("m", "2 new ready and old gone", func(st serving.Status) bool {
		if !ready(2)(st) {
			return false
		}
		for _, r := range st.ReplicaStatuses {
			for _, o := range old.ReplicaStatuses {
				if r.ID == o.ID {
					return false
				}
			}
		}
		return true
	})
	for _, r := range st.ReplicaStatuses {
		if got := f.backend.get(r.ID).spec.Model; got != "/models/m-v2.json" {
			t.Errorf("replica %s serves %s; want the new model", r.ID, got)
		}
	}
}

func TestDeleteStopsEverything(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 1, MaxReplicas: 1}))
	f.tick()
	st := f.until("m", "1 ready", ready(1))
	if err := f.store.DeleteDeployment(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	f.ctl.Notify("m")
	f.until("m", "forgotten", func(st serving.Status) bool { return st.Replicas == 0 && st.DesiredReplicas == 0 })
	if f.routes.Lookup("m") != nil {
		t.Error("route of a deleted deployment still published")
	}
	select {
	case <-f.backend.get(st.ReplicaStatuses[0].ID).exit:
		t.Error("exit was not consumed by the loop's watcher")
	default:
	}
}

func TestRestartRecoversReplicas(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 1, MaxReplicas: 1}))
	f.tick()
	before := f.until("m", "1 ready", ready(1))
	handles, err := f.store.ListReplicas(context.Background())
	if err != nil || len(handles) != 1 {
		t.Fatalf("stored replicas = %v, %v; want 1", handles, err)
	}
	// Simulate a crash of ebb: the loop ends without stopping replicas.
	f.ctl = New(f.store, f.backend, f.routes, Options{Clock: f.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.ctl.Run(ctx)
	<-f.ctl.Loaded()
	after := f.until("m", "recovered ready", ready(1))
	if got, want := after.ReplicaStatuses[0].ID, before.ReplicaStatuses[0].ID; got != want {
		t.Errorf("after restart replica %s; want the recovered %s", got, want)
	}
	if n := len(f.backend.started); n != 1 {
		t.Errorf("backend started %d replicas in all; want 1 (recovered, not restarted)", n)
	}
}

func TestReplicaThatNeverGetsReadyTimesOut(t *testing.T) {
	f := newFixture(t)
	f.stop()
	f.backend.hang["/models/slow.json"] = true
	f.ctl = New(f.store, f.backend, f.routes, Options{
		Clock:        f.clock,
		StartTimeout: 50 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.ctl.Run(ctx) }()
	<-f.ctl.Loaded()
	d := dep("slow", serving.Scaling{MinReplicas: 1, MaxReplicas: 1})
	d.Spec.Default()
	if _, err := f.store.CreateDeployment(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	f.ctl.Notify("slow")
	st := f.until("slow", "start timeout reported", func(st serving.Status) bool {
		return strings.Contains(st.Reason, "not ready after 50ms")
	})
	if st.ReadyReplicas != 0 {
		t.Errorf("ready replicas = %d; want 0", st.ReadyReplicas)
	}
	f.until("slow", "timed-out replica stopped", func(st serving.Status) bool { return st.Replicas == 0 })
}

func TestSyncPublishesTheRouteBeforeReturning(t *testing.T) {
	f := newFixture(t)
	for i := range 20 {
		name := fmt.Sprintf("new-%d", i)
		d := dep(name, serving.Scaling{MinReplicas: 0, MaxReplicas: 1})
		d.Spec.Default()
		if _, err := f.store.CreateDeployment(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		if err := f.ctl.Sync(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		if f.routes.Lookup(name) == nil {
			t.Fatalf("route of %s not published when Sync returned", name)
		}
		if err := f.store.DeleteDeployment(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		if err := f.ctl.Sync(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		if f.routes.Lookup(name) != nil {
			t.Fatalf("route of deleted %s still published when Sync returned", name)
		}
	}
}
