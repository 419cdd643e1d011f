package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/server/servertest"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// crashableStore is the store as one run of ebb sees it: once crashed, it
// forgets no replica (a killed ebb deletes no record on its way out).
type crashableStore struct {
	*sqlite.Store
	crashed *atomic.Bool
}

func (s crashableStore) DeleteReplica(ctx context.Context, id string) error {
	if s.crashed.Load() {
		return nil
	}
	return s.Store.DeleteReplica(ctx, id)
}

// restartBackend is procBackend as one run of ebb sees it. Recover
// reattaches to a replica that still runs, as the process backend does;
// once crashed, Stop does nothing (a killed ebb stops no replica).
type restartBackend struct {
	*procBackend
	crashed *atomic.Bool
}

func (b restartBackend) Stop(ctx context.Context, h replica.Handle) error {
	if b.crashed.Load() {
		return nil
	}
	return b.procBackend.Stop(ctx, h)
}

func (b restartBackend) Recover(_ context.Context, h replica.Handle) error {
	p := b.get(h.Spec.ID)
	if p == nil {
		return replica.ErrNotFound
	}
	select {
	case <-p.served:
		return replica.ErrNotFound
	default:
		return nil
	}
}

// wakerOf wakes whichever controller runs now: the gateway outlives a
// restart of the loop in this test.
type wakerOf struct {
	mu  sync.Mutex
	ctl *Controller
}

func (w *wakerOf) set(c *Controller) {
	w.mu.Lock()
	w.ctl = c
	w.mu.Unlock()
}

func (w *wakerOf) Wake(name string) {
	w.mu.Lock()
	c := w.ctl
	w.mu.Unlock()
	c.Wake(name)
}

// restartFixture is a poolFixture whose control loop can be killed, as
// ebb up would be, and started again over the same store and replicas.
type restartFixture struct {
	*poolFixture
	waker   *wakerOf
	crashed *atomic.Bool
	cancel  context.CancelFunc
	done    chan error
}

func newRestartFixture(t *testing.T, pools ...serving.Pool) *restartFixture {
	t.Helper()
	st := poolStore(t, pools)
	f := &restartFixture{
		poolFixture: &poolFixture{t: t, store: st, backend: newProcBackend(t), routes: &routing.Table{}, dir: t.TempDir()},
		waker:       &wakerOf{},
	}
	f.start()
	t.Cleanup(f.stop)
	act := activator.New(f.routes, f.waker, activator.Options{Timeout: 30 * time.Second, MaxQueue: 100000})
	g := gateway.New(f.routes, act, gateway.Options{HoldTimeout: 30 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gateway.NewServer(g, nil)
	go srv.Serve(g.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	f.gw = &servertest.Client{Base: "http://" + ln.Addr().String()}
	return f
}

// start runs a new control loop over the fixture's store and replicas.
func (f *restartFixture) start() {
	f.crashed = &atomic.Bool{}
	f.ctl = New(crashableStore{f.store, f.crashed}, restartBackend{f.backend, f.crashed}, f.routes, Options{
		Tick: 100 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	f.waker.set(f.ctl)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- f.ctl.Run(ctx) }()
	<-f.ctl.Loaded()
}

// kill ends the control loop as a killed ebb up ends: no replica is
// stopped and no record of one is deleted.
func (f *restartFixture) kill() {
	f.crashed.Store(true)
	f.stop()
}

// stop ends the control loop (a clean stop, unless killed first).
func (f *restartFixture) stop() {
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

// readReplicaIndex reads the repository index of the pool replica at url.
func readReplicaIndex(t *testing.T, url string) map[string]server.ModelStatus {
	t.Helper()
	resp, err := http.Post(url+"/v2/repository/index", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var idx []server.ModelStatus
	if err := json.NewDecoder(resp.Body).Decode(&idx); err != nil {
		t.Fatal(err)
	}
	out := map[string]server.ModelStatus{}
	for _, st := range idx {
		out[st.Name] = st
	}
	return out
}

// poolReplicas returns the pool's replicas, by ID, with their slots.
func poolReplicas(ps serving.PoolStatus) map[string]string {
	out := map[string]string{}
	for _, r := range ps.ReplicaStatuses {
		out[r.ID] = r.Slot
	}
	return out
}

// TestPoolRecoversAfterRestart loads 20 models into a pool, kills the
// control loop as a crash of ebb up would (its replicas keep running,
// their records stay in the store), and starts a new loop over the same
// store and replicas. The new loop recovers the replicas in their slots
// and starts none beside them, whatever the pool's minReplicas; it routes
// every model to the replica that holds it, read from the replica's
// repository index, before any request and without loading it again; and
// every model answers its own prediction.
func TestPoolRecoversAfterRestart(t *testing.T) {
	for _, tt := range []struct {
		name     string
		spec     serving.PoolSpec
		replicas int
	}{
		{"minReplicas 2", serving.PoolSpec{Engine: "trees", MemoryBudget: "64MiB", MinReplicas: 2, MaxReplicas: 2, ShardSize: 1}, 2},
		{"scaled on demand", serving.PoolSpec{Engine: "trees", MemoryBudget: "64MiB", MaxReplicas: 1}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) { testPoolRecovers(t, tt.spec, tt.replicas) })
	}
}

func testPoolRecovers(t *testing.T, spec serving.PoolSpec, replicas int) {
	const n = 20
	f := newRestartFixture(t, poolOf("keep", spec))
	paths := make([]string, n)
	for i := range n {
		paths[i] = tinyPoolModel(t, f.dir, uint64(300+i))
		f.deploy(pooled(fmt.Sprintf("k-%02d", i), paths[i], "keep"))
	}
	for i := range n {
		if err := f.check(fmt.Sprintf("k-%02d", i), paths[i], 1); err != nil {
			t.Fatal(err)
		}
	}
	f.until("every model loaded on the pool's ready replicas", func() bool {
		ps := f.ctl.PoolStatus("keep")
		return ps.Loaded == n && ps.ReadyReplicas == int32(replicas) && len(ps.ReplicaStatuses) == replicas
	})
	before := poolReplicas(f.ctl.PoolStatus("keep"))
	starts := f.backend.slotStarts()
	// Where each model is, and when its replica loaded it.
	held := map[string]string{} // model → replica ID
	loadedAt := map[string]time.Time{}
	for id := range before {
		for name, st := range readReplicaIndex(t, f.backend.get(id).url) {
			held[name] = id
			loadedAt[name] = st.LoadedAt
		}
	}
	if len(held) != n {
		t.Fatalf("the replicas hold %d models, want %d", len(held), n)
	}

	f.kill()
	if hs, err := f.store.ListReplicas(context.Background()); err != nil || len(hs) != replicas {
		t.Fatalf("after the kill the store keeps %d replicas (%v), want %d", len(hs), err, replicas)
	}
	f.start()

	f.steady("the new loop starts no replica beside the recovered ones", func() bool {
		return maps.Equal(f.backend.slotStarts(), starts)
	})
	// Routed again before any request: from the replicas' indexes.
	f.until("every model routed to the replica that holds it", func() bool {
		for name, id := range held {
			rt := f.routes.Lookup(name)
			if rt == nil || !slices.ContainsFunc(rt.Endpoints, func(ep *balance.Endpoint) bool { return ep.ID == id }) {
				return false
			}
		}
		return true
	})
	ps := f.ctl.PoolStatus("keep")
	if got := poolReplicas(ps); !maps.Equal(got, before) {
		t.Errorf("pool replicas (ID: slot) after the restart %v, want the recovered %v", got, before)
	}
	if ps.ReadyReplicas != int32(replicas) || ps.Replicas != int32(replicas) {
		t.Errorf("pool status after the restart: %d replicas, %d ready; want %d", ps.Replicas, ps.ReadyReplicas, replicas)
	}
	for i := range n {
		if err := f.check(fmt.Sprintf("k-%02d", i), paths[i], 2); err != nil {
			t.Fatalf("after the restart: %v", err)
		}
	}
	f.steady("the pool keeps its recovered replicas and models", func() bool {
		ps := f.ctl.PoolStatus("keep")
		return ps.Loaded == n && maps.Equal(poolReplicas(ps), before)
	})
	if got := f.backend.slotStarts(); !maps.Equal(got, starts) {
		t.Errorf("replicas started per slot after the restart %v, want %v (recovered, none started)", got, starts)
	}
	if hs, err := f.store.ListReplicas(context.Background()); err != nil || len(hs) != replicas {
		t.Errorf("the store keeps %d replicas (%v), want the %d recovered", len(hs), err, replicas)
	}
	for id := range before {
		for name, st := range readReplicaIndex(t, f.backend.get(id).url) {
			if held[name] != id || !st.LoadedAt.Equal(loadedAt[name]) {
				t.Errorf("model %s on replica %s loaded at %v; before the restart it was on %s, loaded at %v: loaded again",
					name, id, st.LoadedAt, held[name], loadedAt[name])
			}
		}
	}
	for i := range n {
		name := fmt.Sprintf("k-%02d", i)
		if st := f.ctl.Status(name); st.Pool == nil || len(st.Pool.Replicas) != 1 || st.Pool.Replicas[0] != before[held[name]] {
			t.Errorf("status of %s after the restart: %+v, want it on slot %s", name, st.Pool, before[held[name]])
		}
	}
}
