// Package python serves a user's Python model class behind ebb's replica
// server. The server (package server) owns the protocol for Python models as
// for any other engine: REST, gRPC, validation, batching and metadata. A
// Model hands the decoded tensors of each request to one of its Python
// worker processes, each running worker.py (shipped here; standard library
// only, numpy when it can be imported) over a Unix socket in a small binary
// framing: tensors travel as raw little-endian bytes that the worker wraps in
// numpy arrays without a copy, and there is no JSON and no HTTP on the
// request path (frame.go; worker.py's docstring specifies the framing).
//
// The class contract is worker.py's: an optional load(path), called once
// with the absolute model path; predict(inputs), given a dict of input name
// to numpy array (nested lists without numpy) and returning a dict of output
// name to array-like, or one array-like served as output "predict"; and an
// optional metadata() declaring the tensors. A class that declares its inputs
// gets the server's checks, gRPC metadata and, with spec.batching, batches:
// predict then receives the rows of several requests at once. A class that
// declares none takes whatever inputs a request carries (AnyInputs).
//
// Pools: a Host (host.go) runs workers that host many models each, loaded
// by name, for classes that opt in with ebb_multi_model = True.
//
// A worker remembers the top-level modules it found missing, so a library
// that tries an optional import on every call (scikit-learn tries pandas)
// does not search sys.path each time; a module installed into a running
// worker is found after importlib.invalidate_caches() or a restart.
//
// Parallelism: a worker runs one predict at a time (Python's GIL), so a
// replica runs Options.Workers of them. A request goes to the worker with
// the fewest requests in flight, at most maxInflight of them per worker, so
// a worker finds its next request waiting when it finishes one.
//
// Failures: an exception in predict fails its request only, with the
// exception's type and message (500, or 400 when the exception carries a 4xx
// http_status attribute: a ValueError is not taken to mean bad input, since
// libraries raise it for their own bugs too). A worker that exits fails the
// requests it holds with "python worker exited: STATUS (worker N, pid P);
// its last lines on stderr: ..." (500); requests held by other workers are
// unaffected, and Run restarts the worker after a backoff (nextBackoff).
// Workers ignore SIGINT and SIGTERM and exit when their channel closes:
// after Close, or when the replica process dies.
package python

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"

	"github.com/ebb-ml/ebb/internal/oip"
)

// DefaultInterpreter is the Python that runs the workers when none is given:
// the system one, which sees the distribution's packages (Debian's
// python3-sklearn, python3-torch).
const DefaultInterpreter = "/usr/bin/python3"

// MaxWorkers bounds Options.Workers.
const MaxWorkers = 64

// maxInflight is how many requests one worker holds at most: the one it
// runs and the next, already in its socket.
const maxInflight = 2

// Restart backoff (nextBackoff).
const (
	minBackoff  = 100 * time.Millisecond
	maxBackoff  = 10 * time.Second
	stableAfter = 30 * time.Second
)

// ErrClosed is returned by Predict after Close.
var ErrClosed = errors.New("engine python: the model is closed (the replica is stopping)")

// Clock is the time source of worker restarts; k8s.io/utils/clock's
// RealClock and fake clocks satisfy it.
type Clock interface {
	Now() time.Time
	Since(t time.Time) time.Duration
	NewTimer(d time.Duration) clock.Timer
}

// Options say which class the workers run, and how many.
type Options struct {
	// Interpreter is the Python to run: a path, or a name looked up in PATH.
	// Default DefaultInterpreter.
	Interpreter string
	// Class is "FILE.py:ClassName" (FILE relative to the model's directory,
	// or absolute) or "module:ClassName".
	Class string
	// Model is the path passed to the class's load method.
	Model string
	// Workers is how many worker processes run the class; default 1, at
	// most MaxWorkers.
	Workers int
	// Env is added to the workers' environment (this process's).
	Env []string
	// CacheDir is where worker.py is written; default DefaultCacheDir().
	CacheDir string
	// Stdout and Stderr receive the workers' output; default this
	// process's.
	Stdout, Stderr io.Writer
	// StopTimeout bounds how long a worker may take to exit after its
	// channel closed before it is killed; default 5s.
	StopTimeout time.Duration
	// Logger receives worker exits and restarts; default discards.
	Logger *slog.Logger
	// Clock defaults to the real clock.
	Clock Clock
}

// Model is a Python class loaded in worker processes. It implements
// engine.Model; Predict is safe for concurrent use.
type Model struct {
	opts      Options
	interp    string
	script    string
	meta      oip.ModelMetadata
	anyInputs bool
	nextID    atomic.Uint64
	// pool is set for a Host's workers: started with no class, they host
	// the models it loads, and are not restarted: onExit is called when
	// one exits.
	pool   bool
	onExit func(error)

	// mu guards the fields below and each worker's inflight.
	mu sync.Mutex
	// slots holds worker i at i, nil while it is down.
	slots []*worker
	// startErr is why the last restart failed; nil once one succeeds.
	startErr error
	// queue holds the requests waiting for a place in a worker, oldest
	// first: places are handed out in order, so no request starves.
	queue  []*waiter
	closed bool
}

// waiter is a request in Model.queue; ch receives its place or the error
// that ends its wait, once.
type waiter struct {
	ch chan acquired
}

type acquired struct {
	w   *worker
	err error
}

// reportedMeta is the metadata a worker reports when ready; a nil Inputs or
// Outputs was not declared.
type reportedMeta struct {
	Platform string                `json:"platform"`
	Versions []string              `json:"versions"`
	Inputs   *[]oip.TensorMetadata `json:"inputs"`
	Outputs  *[]oip.TensorMetadata `json:"outputs"`
	// Python and Numpy are the versions the worker runs ("" without numpy).
	Python string `json:"python"`
	Numpy  string `json:"numpy"`
	// RSSBytes is, for a pool's model, how much the worker's resident
	// memory grew as it loaded the model (or shrank, unloading it).
	RSSBytes int64 `json:"rssBytes"`
}

// Load starts opts.Workers workers, each importing the class and calling its
// load, and returns once all are ready, with the metadata the first
// reported. When one fails, the others are stopped and its error returned:
// for a failure of the user's code, a message that names the file, the
// exception and its line. Call Run to restart workers that exit, and Close
// (or end Run's context) to stop them.
func Load(ctx context.Context, opts Options) (*Model, error) {
	if strings.TrimSpace(opts.Class) == "" {
		return nil, errors.New(`engine python needs a class: set spec.python.class (--python-class) to "FILE.py:ClassName" or "module:ClassName"`)
	}
	m, err := newModel(opts)
	if err != nil {
		return nil, err
	}
	if err := m.start(ctx, m.setMetadata); err != nil {
		return nil, err
	}
	return m, nil
}

// newModel checks opts, fills in their defaults and writes the worker's
// script; it starts no worker.
func newModel(opts Options) (*Model, error) {
	if opts.Workers == 0 {
		opts.Workers = 1
	}
	if opts.Workers < 1 || opts.Workers > MaxWorkers {
		return nil, fmt.Errorf("engine python: %d workers: give 1 to %d (spec.python.workers, --python-workers)", opts.Workers, MaxWorkers)
	}
	if !littleEndian {
		return nil, errors.New("engine python needs a little-endian machine: its workers exchange tensors as little-endian bytes")
	}
	if opts.Interpreter == "" {
		opts.Interpreter = DefaultInterpreter
	}
	interp, err := exec.LookPath(opts.Interpreter)
	if err != nil {
		return nil, fmt.Errorf("engine python: interpreter %s not found: %w (install python3, e.g. apt-get install python3, or set spec.python.interpreter)", opts.Interpreter, err)
	}
	if opts.CacheDir == "" {
		opts.CacheDir = DefaultCacheDir()
	}
	script, err := WriteWorker(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Model{opts: opts, interp: interp, script: script, slots: make([]*worker, opts.Workers)}, nil
}

// start starts the workers and returns once all are ready, each installed
// in its slot, and check (when set) took the metadata the first reported;
// when one fails, or check does, the others are stopped and the error
// returned.
func (m *Model) start(ctx context.Context, check func(meta string) error) error {
	opts := m.opts
	type started struct {
		w    *worker
		meta string
		err  error
	}
	res := make([]started, opts.Workers)
	var wg sync.WaitGroup
	for i := range res {
		wg.Go(func() {
			w, meta, err := m.spawn(ctx, i, m.exited)
			res[i] = started{w, meta, err}
		})
	}
	wg.Wait()
	var err error
	for _, r := range res {
		if err == nil {
			err = r.err
		}
	}
	if err == nil && check != nil {
		err = check(res[0].meta)
	}
	if err != nil {
		m.mu.Lock()
		m.closed = true // no worker is installed; their exits are expected
		m.mu.Unlock()
		for _, r := range res {
			if r.w != nil {
				r.w.stop(opts.StopTimeout)
			}
		}
		return err
	}
	for i, r := range res {
		m.install(i, r.w)
	}
	return nil
}

// setMetadata reads the metadata JSON a worker reported.
func (m *Model) setMetadata(js string) error {
	var err error
	m.meta, m.anyInputs, _, err = parseMetadata(js)
	return err
}

// parseMetadata reads the metadata JSON a worker reported when ready or
// when it loaded a pool's model: the model's metadata, whether it declares
// no inputs, and the change of the worker's resident memory (LOADED).
func parseMetadata(js string) (meta oip.ModelMetadata, anyInputs bool, rss int64, err error) {
	var rm reportedMeta
	if err := json.Unmarshal([]byte(js), &rm); err != nil {
		return meta, false, 0, fmt.Errorf("engine python: the worker reported metadata that is not JSON: %w", err)
	}
	meta = oip.ModelMetadata{Platform: rm.Platform, Versions: rm.Versions}
	if rm.Inputs != nil {
		meta.Inputs = *rm.Inputs
	} else {
		anyInputs = true
	}
	if rm.Outputs != nil {
		meta.Outputs = *rm.Outputs
	}
	return meta, anyInputs, rm.RSSBytes, nil
}

// Metadata implements engine.Model: what the class's metadata() declared,
// with platform "python" unless it names another.
func (m *Model) Metadata() oip.ModelMetadata { return m.meta }

// AnyInputs reports whether the class declares no inputs, so that it takes
// whatever inputs a request carries, in the request's order; the server then
// checks only that each is well formed.
func (m *Model) AnyInputs() bool { return m.anyInputs }

// Workers is the number of worker processes the model runs.
func (m *Model) Workers() int { return len(m.slots) }

// Predict implements engine.Model: it runs the class's predict in a worker.
// A request the class rejected with a 4xx http_status is an
// *engine.InputError; a worker that exits fails the requests it holds.
func (m *Model) Predict(ctx context.Context, inputs []oip.Tensor) ([]oip.Tensor, error) {
	w, err := m.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer m.release(w)
	return w.call(ctx, m.nextID.Add(1), inputs)
}

// acquire returns the running worker with the fewest requests in flight,
// counting one more for the caller. While every worker holds maxInflight or
// is restarting, requests wait in a queue, served in order. It fails at once
// when no worker runs and the last restart failed.
func (m *Model) acquire(ctx context.Context) (*worker, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	if len(m.queue) == 0 {
		if w := m.pickLocked(); w != nil {
			w.inflight++
			m.mu.Unlock()
			return w, nil
		}
		if err := m.downErrLocked(); err != nil {
			m.mu.Unlock()
			return nil, err
		}
	}
	wt := &waiter{ch: make(chan acquired, 1)}
	m.queue = append(m.queue, wt)
	m.mu.Unlock()
	select {
	case a := <-wt.ch:
		return a.w, a.err
	case <-ctx.Done():
	}
	m.mu.Lock()
	if i := slices.Index(m.queue, wt); i >= 0 {
		m.queue = slices.Delete(m.queue, i, i+1)
		m.mu.Unlock()
		return nil, ctx.Err()
	}
	m.mu.Unlock()
	// It was handed a place meanwhile: give it back.
	if a := <-wt.ch; a.w != nil {
		m.release(a.w)
	}
	return nil, ctx.Err()
}

// pickLocked returns the running worker with the fewest requests in flight
// below maxInflight, or nil.
func (m *Model) pickLocked() *worker {
	var best *worker
	for _, w := range m.slots {
		if w != nil && w.inflight < maxInflight && (best == nil || w.inflight < best.inflight) {
			best = w
		}
	}
	return best
}

// downErrLocked is the error for a request that finds no worker running
// because the last restart failed; nil while one may come back.
func (m *Model) downErrLocked() error {
	if m.startErr == nil {
		return nil
	}
	for _, w := range m.slots {
		if w != nil {
			return nil
		}
	}
	if m.pool {
		return m.startErr // why the last worker exited: none restarts
	}
	return fmt.Errorf("no python worker is running: restarting one failed: %w", m.startErr)
}

// dispatchLocked hands free places to the oldest waiting requests, or ends
// their wait with the error of a closed model or of a failed restart.
func (m *Model) dispatchLocked() {
	for len(m.queue) > 0 {
		var a acquired
		if m.closed {
			a.err = ErrClosed
		} else if w := m.pickLocked(); w != nil {
			w.inflight++
			a.w = w
		} else if a.err = m.downErrLocked(); a.err == nil {
			return
		}
		m.queue[0].ch <- a
		m.queue[0] = nil
		m.queue = m.queue[1:]
	}
}

// release gives back the place acquire counted.
func (m *Model) release(w *worker) {
	m.mu.Lock()
	w.inflight--
	m.dispatchLocked()
	m.mu.Unlock()
}

// install puts w in its slot; it reports false, leaving the slot alone,
// when the model is closed.
func (m *Model) install(slot int, w *worker) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	select {
	case <-w.done:
		// It exited already; its supervisor restarts it.
	default:
		m.slots[slot] = w
	}
	m.startErr = nil
	m.dispatchLocked()
	return true
}

// exited takes w out of its slot; its reader calls it after failing w's
// calls. A pool's worker is not restarted: the requests that find no
// worker fail with why it exited, and onExit is told.
func (m *Model) exited(w *worker) {
	m.mu.Lock()
	if m.slots[w.slot] == w {
		m.slots[w.slot] = nil
	}
	closed := m.closed
	if m.pool && !closed {
		m.startErr = w.err
		m.dispatchLocked()
	}
	m.mu.Unlock()
	if !closed {
		m.opts.Logger.Warn("python worker exited", "worker", w.slot, "pid", w.cmd.Process.Pid, "error", w.err.Error())
		if m.onExit != nil {
			m.onExit(w.err)
		}
	}
}

// Run restarts workers that exit, each after a backoff (nextBackoff), until
// ctx ends; then it stops the workers (Close) and returns nil. Requests that
// find every worker down wait for a restart.
func (m *Model) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := range m.slots {
		wg.Go(func() { m.supervise(ctx, i) })
	}
	wg.Wait()
	return m.Close()
}

// supervise keeps worker slot running until ctx ends or the model closes.
func (m *Model) supervise(ctx context.Context, slot int) {
	m.mu.Lock()
	w := m.slots[slot]
	m.mu.Unlock()
	var backoff time.Duration
	var why error
	for {
		if w != nil {
			select {
			case <-ctx.Done():
				return
			case <-w.done:
			}
			backoff = nextBackoff(backoff, m.opts.Clock.Since(w.started))
			why = w.err
		} else {
			backoff = nextBackoff(backoff, 0)
		}
		if w = m.restart(ctx, slot, backoff, why); w == nil {
			return
		}
	}
}

// restart starts worker slot again after backoff, retrying with longer
// backoffs while it fails to load; it returns nil when ctx ends or the
// model closes first.
func (m *Model) restart(ctx context.Context, slot int, backoff time.Duration, why error) *worker {
	for {
		if m.isClosed() {
			return nil
		}
		m.opts.Logger.Info("restarting python worker", "worker", slot, "in", backoff.String(), "after", errText(why))
		t := m.opts.Clock.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
		w, _, err := m.spawn(ctx, slot, m.exited)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.mu.Lock()
			m.startErr = err
			m.dispatchLocked()
			m.mu.Unlock()
			m.opts.Logger.Error("python worker failed to restart", "worker", slot, "error", err.Error())
			backoff, why = nextBackoff(backoff, 0), err
			continue
		}
		if !m.install(slot, w) {
			w.stop(m.opts.StopTimeout)
			return nil
		}
		return w
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (m *Model) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// nextBackoff is the wait before restarting a worker that ran for uptime
// after the last wait was prev: minBackoff after a worker that ran stably
// (stableAfter), else twice the last wait, at most maxBackoff.
func nextBackoff(prev, uptime time.Duration) time.Duration {
	if prev == 0 || uptime >= stableAfter {
		return minBackoff
	}
	return min(2*prev, maxBackoff)
}

// Close stops the workers: each finishes the requests it was sent, then
// exits (killed after Options.StopTimeout). Later calls of Predict fail with
// ErrClosed. Close is idempotent.
func (m *Model) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	workers := make([]*worker, 0, len(m.slots))
	for _, w := range m.slots {
		if w != nil {
			workers = append(workers, w)
		}
	}
	m.dispatchLocked()
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.stop(m.opts.StopTimeout) })
	}
	wg.Wait()
	return nil
}
