package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/server/servertest"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// Model files whose first bytes are these crash the in-process replica
// that loads them (crashOnLoad) or that serves a request for them
// (crashOnPredict: the rest of the file is a model's path).
const (
	crashOnLoad    = "CRASH-ON-LOAD"
	crashOnPredict = "CRASH-ON-PREDICT "
)

// procBackend runs replicas in this process, each a real replica server
// on a loopback port: a pool's (server.NewPool, loading trees models by
// path) or one model's (server.New). A crash closes the replica's
// listener and connections at once, as a killed process's would.
type procBackend struct {
	mu     sync.Mutex
	procs  map[string]*proc
	starts map[string]int // by pool slot: replicas started in it
}

type proc struct {
	spec   replica.Spec
	url    string
	ln     *connsListener
	cancel context.CancelFunc
	exit   chan replica.Exit
	once   sync.Once
	served chan struct{}
}

func newProcBackend(t *testing.T) *procBackend {
	b := &procBackend{procs: map[string]*proc{}, starts: map[string]int{}}
	t.Cleanup(func() {
		b.mu.Lock()
		procs := b.procs
		b.mu.Unlock()
		for _, p := range procs {
			p.cancel()
			<-p.served
		}
	})
	return b
}

func (b *procBackend) Start(_ context.Context, spec replica.Spec) (replica.Handle, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return replica.Handle{}, err
	}
	p := &proc{spec: spec, url: "http://" + ln.Addr().String(), ln: &connsListener{Listener: ln, conns: map[net.Conn]bool{}},
		exit: make(chan replica.Exit, 1), served: make(chan struct{})}
	opts := server.Options{ReplicaID: spec.ID, Logger: slog.New(slog.DiscardHandler), DrainTimeout: 2 * time.Second}
	var srv interface {
		ServeWithGRPC(ctx context.Context, ln net.Listener, more ...net.Listener) error
	}
	if sp := spec.Pool; sp != nil {
		srv = server.NewPool(spec.Deployment, opts, server.PoolOptions{Budget: sp.MemoryBudget, Engine: spec.Engine, Load: p.load, ServingBytes: server.DefaultServingBytes})
	} else {
		m, err := trees.Load(spec.Model)
		if err != nil {
			ln.Close()
			return replica.Handle{}, err
		}
		srv = server.New(spec.Deployment, m, opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() {
		_ = srv.ServeWithGRPC(ctx, p.ln)
		p.end(replica.Exit{})
		close(p.served)
	}()
	b.mu.Lock()
	b.procs[spec.ID] = p
	if spec.Pool != nil {
		b.starts[spec.Pool.Slot]++
	}
	b.mu.Unlock()
	now := time.Now()
	return replica.Handle{Spec: spec, Backend: "proc", Endpoint: p.url, ScheduledAt: now, StartedAt: now}, nil
}

// load is a pool replica's loader: trees models by path, or a crash.
func (p *proc) load(_ context.Context, req server.LoadRequest) (server.LoadedModel, error) {
	head, err := os.ReadFile(req.Model)
	if err != nil {
		return server.LoadedModel{}, err
	}
	switch {
	case bytes.HasPrefix(head, []byte(crashOnLoad)):
		p.crash()
		return server.LoadedModel{}, errors.New("crashed")
	case bytes.HasPrefix(head, []byte(crashOnPredict)):
		m, err := trees.Load(strings.TrimSpace(strings.TrimPrefix(string(head), crashOnPredict)))
		if err != nil {
			return server.LoadedModel{}, err
		}
		return server.LoadedModel{Model: crashingModel{m, p}}, nil
	}
	m, err := trees.Load(req.Model)
	if err != nil {
		return server.LoadedModel{}, err
	}
	return server.LoadedModel{Model: m}, nil
}

// crashingModel crashes its replica on every prediction.
type crashingModel struct {
	engine.Model
	p *proc
}

func (m crashingModel) Predict(context.Context, []oip.Tensor) ([]oip.Tensor, error) {
	m.p.crash()
	return nil, errors.New("crashed")
}

// crash ends p as a killed process: its connections drop at once.
func (p *proc) crash() {
	p.ln.closeAll()
	p.end(replica.Exit{Code: -1, Err: errors.New("signal: killed")})
	p.cancel()
}

func (p *proc) end(ex replica.Exit) { p.once.Do(func() { p.exit <- ex }) }

func (b *procBackend) get(id string) *proc {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.procs[id]
}

func (b *procBackend) Ready(ctx context.Context, h replica.Handle) (replica.Startup, error) {
	p := b.get(h.Spec.ID)
	if p == nil {
		return replica.Startup{}, replica.ErrNotFound
	}
	for {
		resp, err := http.Get(p.url + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				now := time.Now()
				return replica.Startup{ModelLoadedAt: now, ReadyAt: now}, nil
			}
		}
		select {
		case <-ctx.Done():
			return replica.Startup{}, ctx.Err()
		case <-p.served:
			return replica.Startup{}, errors.New("replica exited")
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (b *procBackend) Wait(ctx context.Context, h replica.Handle) (replica.Exit, error) {
	p := b.get(h.Spec.ID)
	if p == nil {
		return replica.Exit{}, replica.ErrNotFound
	}
	select {
	case ex := <-p.exit:
		return ex, nil
	case <-ctx.Done():
		return replica.Exit{}, ctx.Err()
	}
}

func (b *procBackend) Stop(_ context.Context, h replica.Handle) error {
	if p := b.get(h.Spec.ID); p != nil {
		p.cancel()
		<-p.served
	}
	return nil
}

func (b *procBackend) Recover(context.Context, replica.Handle) error { return replica.ErrNotFound }

// slotStarts returns how many replicas were started in each slot.
func (b *procBackend) slotStarts() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for k, v := range b.starts {
		out[k] = v
	}
	return out
}

// connsListener tracks its connections so that a crash can drop them.
type connsListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

func (l *connsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[c] = true
	return c, nil
}

func (l *connsListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.Listener.Close()
	for c := range l.conns {
		c.Close()
	}
}

// poolFixture runs the control loop over in-process replicas, with the
// real activator and gateway in front, on the real clock.
type poolFixture struct {
	t       testing.TB
	store   *sqlite.Store
	backend *procBackend
	routes  *routing.Table
	ctl     *Controller
	gw      *servertest.Client
	dir     string
}

// poolStore is a SQLite store in a temporary directory holding pools and
// deps (defaulted), closed at cleanup.
func poolStore(t testing.TB, pools []serving.Pool, deps ...serving.Deployment) *sqlite.Store {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/ebb.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, p := range pools {
		p.Spec.Default()
		if _, err := st.CreatePool(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range deps {
		d.Spec.Default()
		if _, err := st.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func newPoolFixture(t testing.TB, pools []serving.Pool, deps ...serving.Deployment) *poolFixture {
	t.Helper()
	ctx := context.Background()
	st := poolStore(t, pools, deps...)
	f := &poolFixture{t: t, store: st, backend: newProcBackend(t.(*testing.T)), routes: &routing.Table{}, dir: t.TempDir()}
	f.ctl = New(st, f.backend, f.routes, Options{
		Tick: 100 * time.Millisecond, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.ctl.Run(runCtx) }()
	<-f.ctl.Loaded()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		f.ctl.Wait()
	})
	act := activator.New(f.routes, f.ctl, activator.Options{Timeout: 30 * time.Second, MaxQueue: 100000})
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

// deploy stores a deployment and waits for the loop to apply it.
func (f *poolFixture) deploy(d serving.Deployment) {
	f.t.Helper()
	d.Spec.Default()
	if _, err := f.store.CreateDeployment(context.Background(), d); err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.ctl.Sync(ctx, d.Name); err != nil {
		f.t.Fatal(err)
	}
}

// until waits for cond, failing the test after 20 seconds.
func (f *poolFixture) until(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: not reached in 20s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// steady waits for cond to hold for 200ms in a row.
func (f *poolFixture) steady(what string, cond func() bool) {
	f.t.Helper()
	var since time.Time
	f.until(what, func() bool {
		switch {
		case !cond():
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		default:
			return time.Since(since) >= 200*time.Millisecond
		}
		return false
	})
}

// tinyPoolModel writes a small XGBoost JSON model (three trees of depth
// one or two over poolFeatures features, drawn from seed) and returns its
// path.
func tinyPoolModel(t testing.TB, dir string, seed uint64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 17))
	leaf := func() string { return fmt.Sprintf("%.4f", rng.Float64()*10-5) }
	cut := func() string { return fmt.Sprintf("%.4f", rng.Float64()*2-1) }
	var tree []string
	for range 3 {
		if rng.IntN(2) == 0 {
			tree = append(tree, fmt.Sprintf(`{"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_conditions":[%s,%s,%s],"split_indices":[%d,0,0],"default_left":[1,0,0]}`,
				cut(), leaf(), leaf(), rng.IntN(poolFeatures)))
			continue
		}
		tree = append(tree, fmt.Sprintf(`{"left_children":[1,3,-1,-1,-1],"right_children":[2,4,-1,-1,-1],"split_conditions":[%s,%s,%s,%s,%s],"split_indices":[%d,%d,0,0,0],"default_left":[0,1,0,0,0]}`,
			cut(), cut(), leaf(), leaf(), leaf(), rng.IntN(poolFeatures), rng.IntN(poolFeatures)))
	}
	model := fmt.Sprintf(`{"learner":{"learner_model_param":{"base_score":"%s","num_feature":"%d"},"objective":{"name":"reg:squarederror"},`+
		`"gradient_booster":{"name":"gbtree","model":{"tree_info":[0,0,0],"trees":[%s]}}}}`, leaf(), poolFeatures, strings.Join(tree, ","))
	path := filepath.Join(dir, fmt.Sprintf("tiny-%d.json", seed))
	if err := os.WriteFile(path, []byte(model), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const poolFeatures = 4

// poolRows returns n rows of poolFeatures values drawn from seed.
func poolRows(seed uint64, n int) oip.Tensor {
	rng := rand.New(rand.NewPCG(seed, 5))
	x := make([]float32, n*poolFeatures)
	for i := range x {
		x[i] = float32(rng.Float64()*2 - 1)
	}
	return oip.Tensor{Name: trees.InputName, Datatype: oip.FP32, Shape: []int64{int64(n), poolFeatures}, Data: x}
}

// check asks the gateway for model's prediction of rows from seed and
// compares it with the model file's own.
func (f *poolFixture) check(model, path string, seed uint64) error {
	in := poolRows(seed, 3)
	m, err := trees.Load(path)
	if err != nil {
		return err
	}
	want, err := m.Predict(context.Background(), []oip.Tensor{in})
	if err != nil {
		return err
	}
	resp, err := f.gw.PostREST(model, oip.InferRequest{}, []oip.Tensor{in}, false)
	if err != nil {
		return fmt.Errorf("model %s: %w", model, err)
	}
	got, ok := resp.Outputs[0].Data.([]float32)
	w := want[0].Data.([]float32)
	if !ok || len(got) != len(w) {
		return fmt.Errorf("model %s answered %v, want %v", model, resp.Outputs[0].Data, w)
	}
	for i := range w {
		if math.Abs(float64(got[i]-w[i])) > 1e-5 {
			return fmt.Errorf("model %s answered %v, want %v", model, got, w)
		}
	}
	return nil
}

func pooled(name, path, pool string) serving.Deployment {
	return serving.Deployment{Name: name, Spec: serving.Spec{Model: path, Engine: "trees", Pool: &serving.PoolRef{Name: pool}}}
}

func poolOf(name string, spec serving.PoolSpec) serving.Pool {
	return serving.Pool{Name: name, Spec: spec}
}
