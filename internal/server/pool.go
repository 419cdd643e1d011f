package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/serving/core"
)

// A Server made by NewPool hosts many models, loaded and unloaded on
// demand through OIP v2's model repository extension (pool_http.go), for a
// multi-model pool (package pool decides what each replica hosts). Each
// loaded model is served exactly as a Server of one model serves it, under
// its own name: infer, metadata, ready, REST and gRPC.
//
// Memory. The pool has a budget in bytes for its models. A model's size is
// measured when it loads: the engine's own count when the model has one
// (engine.Sizer), else the growth of the process's resident set across the
// load, read from /proc/self/statm after returning Go's free memory to the
// OS. Loads run one at a time, so the growth is the one model's, and a
// load that does not fit is refused (507) with both sizes: before it
// starts when the request gives the size (a measurement from before),
// else once measured, when the model is closed again at once. The
// replica never unloads a model on its own; the control loop does, by
// the plan of package pool.
//
// Unload. An unloaded model leaves the index at once; new requests for it
// get 404, the requests in flight finish, and then the model is closed
// (engines that hold memory outside Go's heap, onnx, free it then).

// PoolOptions configures the models of a Server made by NewPool.
type PoolOptions struct {
	// Budget bounds the measured bytes of the models loaded at once; 0 is
	// no bound.
	Budget int64
	// Engine, when set, is the one engine of the pool: a load naming
	// another is refused, and one naming none uses it.
	Engine string
	// Load loads the model a load request names. Required.
	Load Loader
	// ServingBytes is what hosting one model costs the replica besides
	// the model itself (its Server: metadata, handlers, batcher; its entry
	// in the pool), added to each model's measured size so that the
	// budget bounds the replica's real memory; 0 adds nothing. Replicas
	// run with DefaultServingBytes.
	ServingBytes int64
}

// DefaultServingBytes is PoolOptions.ServingBytes as replicas run: the
// Go heap that one more hosted model takes beyond its engine's own count,
// measured over thousands of tiny models (TestPoolServingBytes) and
// rounded up. It matters for small models only: a tiny XGBoost model
// counts under 1 KiB itself.
const DefaultServingBytes = 4 << 10

// LoadRequest is the body of POST /v2/repository/models/{name}/load: its
// "parameters" object, whose keys are those of the replica's flags.
type LoadRequest struct {
	// Name is the model's name, from the path.
	Name string `json:"-"`
	// Model is the model artifact: a path, file:// or s3:// URI (with
	// ModelSHA256: a content-addressed artifact fetched through the cache).
	Model        string `json:"model"`
	Engine       string `json:"engine,omitempty"`
	ModelVersion string `json:"model-version,omitempty"`
	ModelSHA256  string `json:"model-sha256,omitempty"`
	ModelUnpack  bool   `json:"model-unpack,omitempty"`
	ModelEntry   string `json:"model-entry,omitempty"`
	// PythonClass and PythonInterpreter are, for engine python, the
	// model's class ("FILE.py:ClassName", FILE relative to the model's
	// directory, or "module:ClassName") and the interpreter it asks for
	// (empty: the pool's).
	PythonClass       string `json:"python-class,omitempty"`
	PythonInterpreter string `json:"python-interpreter,omitempty"`
	// Bytes is the model's size measured before, here or on another
	// replica (0: unknown), so a load that cannot fit is refused before
	// it starts.
	Bytes int64 `json:"bytes,omitempty"`
}

// source is what the request loads, to tell a second load of the same
// model from a different model under the same name.
func (r LoadRequest) source() string {
	return strings.Join([]string{r.Model, r.Engine, r.ModelVersion, r.ModelSHA256, strconv.FormatBool(r.ModelUnpack), r.ModelEntry,
		r.PythonClass, r.PythonInterpreter}, "\x00")
}

// Loader loads the model a request names; ctx carries no deadline of the
// request that asked (other requests may wait for the same load).
type Loader func(ctx context.Context, req LoadRequest) (LoadedModel, error)

// LoadedModel is a model a Loader loaded.
type LoadedModel struct {
	Model engine.Model
	// Release, when set, is called once the model is unloaded and closed
	// (an artifact cache lease, a temporary file).
	Release func()
}

// ModelStatus is one model in the repository index (POST
// /v2/repository/index), with OIP v2's name, version, state and reason,
// and ebb's measurements.
type ModelStatus struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// State is READY, LOADING or UNAVAILABLE (a failed load; Reason).
	State  pool.LoadState `json:"state"`
	Reason string         `json:"reason,omitempty"`
	// Bytes is the size the budget counts: EngineBytes when the engine
	// reports it, else RSSDeltaBytes (at least the model's file), plus
	// ServingBytes, what hosting it costs besides.
	Bytes         int64     `json:"bytes"`
	ServingBytes  int64     `json:"servingBytes,omitempty"`
	EngineBytes   int64     `json:"engineBytes,omitempty"`
	RSSDeltaBytes int64     `json:"rssDeltaBytes"`
	InFlight      int64     `json:"inFlight"`
	LastUsed      time.Time `json:"lastUsed,omitzero"`
	LoadedAt      time.Time `json:"loadedAt,omitzero"`
	// LoadSeconds is how long the load took.
	LoadSeconds float64 `json:"loadSeconds,omitempty"`
}

// PoolInfo is the memory of a replica hosting a pool, in /ebb/v1/replica.
type PoolInfo struct {
	BudgetBytes int64 `json:"budgetBytes"`
	// UsedBytes is what the budget counts: the loaded models' sizes.
	UsedBytes int64 `json:"usedBytes"`
	Models    int   `json:"models"`
	// RSSBytes is the replica's resident set, models and all: its own
	// process's and its engine's worker processes' (the python engine's).
	RSSBytes int64 `json:"rssBytes"`
}

// BudgetError refuses a load that does not fit the replica's budget.
type BudgetError struct {
	Model string
	// Bytes is the model's size: measured by this load, or as the request
	// gave it (Measured false).
	Bytes    int64
	Measured bool
	// Budget and Used are the replica's budget and what its other models
	// hold.
	Budget, Used int64
}

func (e *BudgetError) Error() string {
	how := "as the load request gave it"
	if e.Measured {
		how = "measured after load"
	}
	if e.Bytes > e.Budget {
		return fmt.Sprintf("model %s needs %s (%d bytes, %s), more than this replica's whole memory budget of %s (%d bytes)",
			e.Model, pool.FormatBytes(e.Bytes), e.Bytes, how, pool.FormatBytes(e.Budget), e.Budget)
	}
	return fmt.Sprintf("model %s needs %s (%d bytes, %s) but this replica has %s free of its memory budget of %s (%d bytes; %s held by other models): unload models first",
		e.Model, pool.FormatBytes(e.Bytes), e.Bytes, how, pool.FormatBytes(e.Budget-e.Used), pool.FormatBytes(e.Budget), e.Budget, pool.FormatBytes(e.Used))
}

// NewPool returns a Server that hosts the models POST
// /v2/repository/models/{name}/load loads, each served under its own name,
// none at first. name names the pool (the deployment in
// /ebb/v1/replica). Options apply to every model as New applies them.
func NewPool(name string, opts Options, popts PoolOptions) *Server {
	opts = opts.withDefaults(name)
	s := &Server{
		name:   name,
		opts:   opts,
		log:    opts.Logger,
		pid:    os.Getpid(),
		secret: []byte(opts.Secret),
	}
	s.stopped, s.stop = context.WithCancel(context.Background())
	s.serverMetaJSON = mustJSON(oip.ServerMetadata{Name: "ebb", Version: opts.Version, Extensions: poolExtensions()})
	s.pool = &modelPool{root: s, opts: popts, models: map[string]*hostedModel{}, sized: map[string]bool{}}
	return s
}

// ExtensionModelRepository is the name of OIP v2's model repository
// extension, which a pool's replicas serve.
const ExtensionModelRepository = "model_repository"

func poolExtensions() []string { return append(Extensions(), ExtensionModelRepository) }

// modelPool is the models of a Server made by NewPool.
type modelPool struct {
	root *Server
	opts PoolOptions

	// loadMu runs one load at a time: the growth of the resident set is
	// that model's, and the budget is checked against settled sizes.
	loadMu sync.Mutex
	// sized says, per engine, whether its last model counted its own
	// bytes, so a load of the next need not settle Go's heap first.
	// Guarded by loadMu.
	sized map[string]bool

	// mu guards models, used and the state of each model.
	mu     sync.RWMutex
	models map[string]*hostedModel
	// used is the bytes the budget counts: the loaded models' measured
	// sizes, those being unloaded until closed, and the sizes loads in
	// progress announced.
	used int64
}

// hostedModel is one model of a pool. Its fields but refs, inFlight and
// lastUsed are guarded by modelPool.mu; srv, rpc and the sizes are set
// before state turns Ready and are read-only after.
type hostedModel struct {
	req LoadRequest
	// done is closed once the load ended, READY or UNAVAILABLE.
	done  chan struct{}
	state pool.LoadState
	err   error

	srv      *Server
	rpc      *grpcService
	loaded   LoadedModel
	reserved int64 // the size the load request announced, until measured
	bytes    int64
	engine   int64
	rssDelta int64
	serving  int64
	loadedAt time.Time
	loadTook time.Duration

	// refs counts the requests using the model; an unload waits for
	// them. Taken only under mu.RLock while the model is in the map.
	refs     sync.WaitGroup
	inFlight atomic.Int64
	lastUsed atomic.Int64 // Unix nanoseconds
}

// status returns the index entry of e; p.mu held (or e done).
func (e *hostedModel) status() ModelStatus {
	st := ModelStatus{
		Name:          e.req.Name,
		Version:       core.OIPVersion(e.req.ModelVersion),
		State:         e.state,
		Bytes:         e.bytes,
		ServingBytes:  e.serving,
		EngineBytes:   e.engine,
		RSSDeltaBytes: e.rssDelta,
		InFlight:      e.inFlight.Load(),
		LoadedAt:      e.loadedAt,
		LoadSeconds:   e.loadTook.Seconds(),
	}
	if e.err != nil {
		st.Reason = e.err.Error()
	}
	if n := e.lastUsed.Load(); n != 0 {
		st.LastUsed = time.Unix(0, n).UTC()
	}
	return st
}

// acquire counts a request using e; p.mu held for reading, e ready.
func (p *modelPool) acquire(e *hostedModel) {
	e.refs.Add(1)
	e.inFlight.Add(1)
	e.lastUsed.Store(p.root.opts.Now().UnixNano())
}

// release ends a request that acquired e.
func (p *modelPool) release(e *hostedModel) {
	e.inFlight.Add(-1)
	e.refs.Done()
}

// tryGet returns the model named name, acquired, when it is ready; nil
// otherwise. It never waits.
func (p *modelPool) tryGet(name []byte) *hostedModel {
	p.mu.RLock()
	defer p.mu.RUnlock()
	e := p.models[string(name)]
	if e == nil || e.state != pool.Ready {
		return nil
	}
	p.acquire(e)
	return e
}

// get returns the model named name, acquired, waiting while it loads
// (until ctx ends). Errors: 404 when it is not loaded here, 503 when its
// load failed or ctx ended first.
func (p *modelPool) get(ctx context.Context, name string) (*hostedModel, *RequestError) {
	for {
		p.mu.RLock()
		e := p.models[name]
		switch {
		case e == nil:
			p.mu.RUnlock()
			return nil, &RequestError{http.StatusNotFound, fmt.Sprintf("model %q is not loaded on this replica: load it with POST /v2/repository/models/%s/load", name, name)}
		case e.state == pool.Ready:
			p.acquire(e)
			p.mu.RUnlock()
			return e, nil
		case e.state == pool.Unavailable:
			p.mu.RUnlock()
			return nil, &RequestError{http.StatusServiceUnavailable, fmt.Sprintf("model %q is unavailable on this replica: %v", name, e.err)}
		}
		p.mu.RUnlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, &RequestError{http.StatusServiceUnavailable, fmt.Sprintf("model %q is still loading on this replica", name)}
		}
	}
}

// load loads req's model, or waits for the load of the same model already
// under way, and returns its status. Errors: *BudgetError (507), a
// *RequestError (409 another model under that name, 503 draining), or the
// loader's error (the model stays in the index, UNAVAILABLE).
func (p *modelPool) load(ctx context.Context, req LoadRequest) (ModelStatus, error) {
	p.mu.Lock()
	if p.root.draining.Load() {
		p.mu.Unlock()
		return ModelStatus{}, &RequestError{http.StatusServiceUnavailable, "this replica is draining: it loads no more models"}
	}
	if e := p.models[req.Name]; e != nil {
		if e.state != pool.Unavailable {
			p.mu.Unlock()
			if e.req.source() != req.source() {
				return ModelStatus{}, &RequestError{http.StatusConflict, fmt.Sprintf("model %q is already loaded here from %s (engine %s); unload it before loading %s", req.Name, e.req.Model, e.req.Engine, req.Model)}
			}
			select {
			case <-e.done:
			case <-ctx.Done():
				return ModelStatus{}, &RequestError{http.StatusServiceUnavailable, fmt.Sprintf("model %q is still loading", req.Name)}
			}
			p.mu.RLock()
			defer p.mu.RUnlock()
			return e.status(), e.err
		}
		delete(p.models, req.Name) // a failed load is tried again
	}
	if b := p.opts.Budget; b > 0 && req.Bytes > 0 && p.used+req.Bytes > b {
		p.mu.Unlock()
		return ModelStatus{}, &BudgetError{Model: req.Name, Bytes: req.Bytes, Budget: b, Used: p.used}
	}
	e := &hostedModel{req: req, done: make(chan struct{}), state: pool.Loading, reserved: req.Bytes}
	p.used += e.reserved
	p.models[req.Name] = e
	p.mu.Unlock()

	p.run(context.WithoutCancel(ctx), e)
	p.mu.RLock()
	defer p.mu.RUnlock()
	return e.status(), e.err
}

// run loads e's model, measures it and makes it ready, or records why not.
func (p *modelPool) run(ctx context.Context, e *hostedModel) {
	p.loadMu.Lock()
	defer p.loadMu.Unlock()
	began := p.root.opts.Now()
	if !p.sized[e.req.Engine] {
		debug.FreeOSMemory()
	}
	before := residentBytes()
	lm, err := p.call(ctx, e.req)
	var engineBytes, rss int64
	if err == nil {
		sz, ok := lm.Model.(engine.Sizer)
		if ok {
			engineBytes = sz.ModelBytes()
		} else {
			debug.FreeOSMemory() // the garbage of the load is not the model
		}
		p.sized[e.req.Engine] = ok
		rss = residentBytes() - before
	}
	bytes := engineBytes
	if bytes <= 0 {
		// RSS growth misses memory the engine reused (a C allocator's
		// free lists, a runtime's arena): the model's file, whose weights
		// a loaded model holds, is the floor.
		bytes = max(rss, localFileBytes(e.req.Model), 0)
	}
	bytes += p.opts.ServingBytes
	loadedAt := p.root.opts.Now()
	var srv *Server
	if err == nil {
		srv = p.newModelServer(e.req, lm.Model, loadedAt)
	}

	p.mu.Lock()
	p.used -= e.reserved
	e.reserved = 0
	refused := false
	if b := p.opts.Budget; err == nil && b > 0 && p.used+bytes > b {
		err = &BudgetError{Model: e.req.Name, Bytes: bytes, Measured: true, Budget: b, Used: p.used}
		refused = true
	}
	e.engine, e.rssDelta, e.loadTook = engineBytes, rss, loadedAt.Sub(began)
	e.serving = p.opts.ServingBytes
	if err != nil {
		e.state, e.err = pool.Unavailable, err
		if refused {
			// Not kept as a failure: the caller makes room and loads it
			// again, now with its size.
			delete(p.models, e.req.Name)
		}
	} else {
		if p.root.draining.Load() {
			srv.draining.Store(true)
		}
		e.state, e.bytes, e.loadedAt = pool.Ready, bytes, loadedAt
		e.srv, e.rpc, e.loaded = srv, &grpcService{s: srv, meta: oipgrpc.MetadataResponse(srv.meta)}, lm
		e.lastUsed.Store(loadedAt.UnixNano())
		p.used += bytes
	}
	close(e.done)
	p.mu.Unlock()

	if refused {
		closeLoaded(lm)
		p.root.log.Warn("model load refused: over the memory budget", "model", e.req.Name, "error", err)
	} else if err != nil {
		p.root.log.Error("model load failed", "model", e.req.Name, "error", err)
	} else {
		p.root.log.Info("model loaded", "model", e.req.Name, "engine", e.req.Engine, "bytes", bytes,
			"engineBytes", engineBytes, "rssDeltaBytes", rss, "load", e.loadTook.String())
	}
}

// call runs the loader, turning a panic into an error.
func (p *modelPool) call(ctx context.Context, req LoadRequest) (lm LoadedModel, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("loading model %s panicked: %v", req.Name, v)
		}
	}()
	lm, err = p.opts.Load(ctx, req)
	if err == nil && lm.Model == nil {
		err = fmt.Errorf("loading model %s returned no model", req.Name)
	}
	return lm, err
}

// newModelServer returns the Server of one loaded model of the pool.
func (p *modelPool) newModelServer(req LoadRequest, m engine.Model, loadedAt time.Time) *Server {
	o := p.root.opts
	o.Logger = o.Logger.With("model", req.Name)
	o.ModelLoadedAt = loadedAt
	o.ModelVersion = req.ModelVersion
	o.Secret = "" // the pool's server checked it
	o.OnReady = nil
	o.Artifact = nil
	return New(req.Name, m, o)
}

// unload takes the model named name out of the index, waits for its
// requests in flight and closes it. Errors: 404 when it is not here.
func (p *modelPool) unload(ctx context.Context, name string) (ModelStatus, error) {
	p.mu.Lock()
	e := p.models[name]
	if e != nil && e.state == pool.Loading {
		p.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return ModelStatus{}, &RequestError{http.StatusServiceUnavailable, fmt.Sprintf("model %q is still loading; unload it once loaded", name)}
		}
		p.mu.Lock()
		e = p.models[name]
	}
	if e == nil {
		p.mu.Unlock()
		return ModelStatus{}, &RequestError{http.StatusNotFound, fmt.Sprintf("model %q is not loaded on this replica", name)}
	}
	delete(p.models, name)
	st := e.status()
	p.mu.Unlock()

	e.refs.Wait()
	if e.state == pool.Ready {
		closeLoaded(e.loaded)
		p.mu.Lock()
		p.used -= e.bytes
		p.mu.Unlock()
		p.root.log.Info("model unloaded", "model", name, "bytes", e.bytes)
	}
	st.State, st.InFlight = pool.Unavailable, 0
	st.Reason = "unloaded"
	return st, nil
}

// closeLoaded closes a model that holds resources (io.Closer), then
// releases what its loader holds for it.
func closeLoaded(lm LoadedModel) {
	if c, ok := lm.Model.(io.Closer); ok {
		_ = c.Close()
	}
	if lm.Release != nil {
		lm.Release()
	}
}

// index returns the models, by name; with readyOnly, the ready ones.
func (p *modelPool) index(readyOnly bool) []ModelStatus {
	p.mu.RLock()
	out := make([]ModelStatus, 0, len(p.models))
	for _, e := range p.models {
		if !readyOnly || e.state == pool.Ready {
			out = append(out, e.status())
		}
	}
	p.mu.RUnlock()
	slices.SortFunc(out, func(a, b ModelStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// info returns the pool's memory for /ebb/v1/replica; nil for a Server of
// one model.
func (p *modelPool) info() *PoolInfo {
	if p == nil {
		return nil
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return &PoolInfo{BudgetBytes: p.opts.Budget, UsedBytes: p.used, Models: len(p.models), RSSBytes: residentBytes()}
}

// drain makes every loaded model report not ready.
func (p *modelPool) drain() {
	if p == nil {
		return
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, e := range p.models {
		if e.state == pool.Ready {
			e.srv.draining.Store(true)
		}
	}
}

// localFileBytes returns the size of model when it is a local file; 0 for
// a directory, a remote URI or a path that cannot be read.
func localFileBytes(model string) int64 {
	fi, err := os.Stat(strings.TrimPrefix(model, "file://"))
	if err != nil || !fi.Mode().IsRegular() {
		return 0
	}
	return fi.Size()
}

// errStatus is the HTTP status for an error of load or unload.
func errStatus(err error) int {
	var be *BudgetError
	var re *RequestError
	switch {
	case errors.As(err, &be):
		return http.StatusInsufficientStorage
	case errors.As(err, &re):
		return re.Status
	default:
		return http.StatusBadRequest // the model could not be loaded
	}
}
