package python

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ebb-ml/ebb/internal/oip"
)

// A Host is a set of Python worker processes that host many models each,
// loaded and unloaded by name: the engine of a multi-model pool's replica
// (package server's NewPool). Its workers start with no class; Load sends
// every worker the model's name, class and path (worker.py's LOAD), and
// each makes the model an instance of its class of its own, so the
// models of a Host share its processes and its interpreter.
//
// Opting in. A class hosted this way shares its process with other
// models, which a class written for a process of its own may not survive
// (a module global it sets, a class attribute it changes, a library it
// configures for itself), so it must say that it can: the class attribute
// ebb_multi_model = True. Load refuses a class without it, with a message
// that says how to opt in. An optional unload() method of the instance
// runs when its model is unloaded.
//
// Memory. Each worker measures its resident memory before and after the
// load, each time after a full collection and malloc_trim, and the model's
// size (ModelBytes) is the sum of that growth over the workers: the models
// live in the workers, not in the replica's Go heap, so the replica's own
// resident set would not see them. Unloading drops the instance, collects
// and trims, so the workers' memory falls by about as much.
//
// Failures. An exception in predict fails its request, as for Model. A
// worker that exits takes every model of the Host with it, and no worker
// is restarted: Failed is closed, requests that find no worker fail with
// the exit, and the replica should stop, so that its pool's control loop
// restarts it and blames the model that was loading or serving when it
// died (package pool's quarantine).
type Host struct {
	m *Model

	// mu runs one load or unload at a time, so each worker's memory
	// growth is the one model's; it guards next.
	mu   sync.Mutex
	next uint32

	failed  chan struct{}
	failErr error // set before failed is closed
	once    sync.Once
}

// StartHost starts opts.Workers workers with no class and returns once all
// are ready. opts.Class and opts.Model must be empty: each Load names its
// own. Close stops the workers.
func StartHost(ctx context.Context, opts Options) (*Host, error) {
	if opts.Class != "" || opts.Model != "" {
		return nil, errors.New("engine python: the workers of a pool start with no class and no model: each model's load names its own (parameter python-class)")
	}
	m, err := newModel(opts)
	if err != nil {
		return nil, err
	}
	h := &Host{m: m, failed: make(chan struct{})}
	m.pool, m.onExit = true, h.fail
	if err := m.start(ctx, nil); err != nil {
		return nil, err
	}
	return h, nil
}

// Workers is the number of worker processes; each runs one predict at a
// time.
func (h *Host) Workers() int { return len(h.m.slots) }

// PIDs returns the process IDs of the workers running now.
func (h *Host) PIDs() []int {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	var pids []int
	for _, w := range h.m.slots {
		if w != nil {
			pids = append(pids, w.cmd.Process.Pid)
		}
	}
	return pids
}

// Failed is closed once a worker exited on its own; Err says why.
func (h *Host) Failed() <-chan struct{} { return h.failed }

// Err is why a worker exited, once Failed is closed; nil before.
func (h *Host) Err() error {
	select {
	case <-h.failed:
		return h.failErr
	default:
		return nil
	}
}

func (h *Host) fail(err error) {
	h.once.Do(func() {
		h.failErr = err
		close(h.failed)
	})
}

// Close stops the workers, as Model.Close does.
func (h *Host) Close() error { return h.m.Close() }

// running returns every worker, or an error when one is down.
func (h *Host) running() ([]*worker, error) {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	if h.m.closed {
		return nil, ErrClosed
	}
	ws := make([]*worker, 0, len(h.m.slots))
	for _, w := range h.m.slots {
		if w == nil {
			return nil, fmt.Errorf("engine python: a worker of this pool exited (%v); the replica stops and a new one takes its place", h.Err())
		}
		ws = append(ws, w)
	}
	return ws, nil
}

// Load loads the model at path, under name, into every worker: an
// instance of class ("FILE.py:ClassName", FILE relative to the model's
// directory, or "module:ClassName"), whose load(path) it calls. It returns
// once every worker loaded it, or the first worker's error (the class
// does not opt in, or failed to import or load), when no worker keeps it.
func (h *Host) Load(ctx context.Context, name, class, path string) (*HostedModel, error) {
	if strings.TrimSpace(class) == "" {
		return nil, fmt.Errorf(`engine python: model %s has no class: give spec.python.class of its deployment ("FILE.py:ClassName" or "module:ClassName"), which its load request carries as parameter python-class`, name)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ws, err := h.running()
	if err != nil {
		return nil, err
	}
	h.next++
	hm := &HostedModel{h: h, name: name, number: h.next}
	req, err := json.Marshal(map[string]string{"name": name, "class": class, "path": path})
	if err != nil {
		return nil, err
	}
	texts := make([]string, len(ws))
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() {
			id := h.m.nextID.Add(1)
			texts[i], errs[i] = w.control(ctx, id, controlFrame(kindLoad, id, hm.number, req))
		})
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		for i, w := range ws {
			if errs[i] == nil {
				id := h.m.nextID.Add(1)
				w.control(context.WithoutCancel(ctx), id, controlFrame(kindUnload, id, hm.number, nil))
			}
		}
		return nil, err
	}
	for i, text := range texts {
		meta, anyInputs, rss, err := parseMetadata(text)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			hm.meta, hm.anyInputs = meta, anyInputs
		}
		hm.bytes += max(rss, 0)
	}
	return hm, nil
}

// firstError returns the first error of errs that is not nil.
func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// unload drops hm in every worker that runs; their answers say how much
// memory it gave back.
func (h *Host) unload(hm *HostedModel) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.m.mu.Lock()
	ws := make([]*worker, 0, len(h.m.slots))
	for _, w := range h.m.slots {
		if w != nil {
			ws = append(ws, w)
		}
	}
	h.m.mu.Unlock()
	var errs []error
	for _, w := range ws {
		id := h.m.nextID.Add(1)
		if _, err := w.control(context.Background(), id, controlFrame(kindUnload, id, hm.number, nil)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// HostedModel is one model of a Host. It implements engine.Model and
// engine.Sizer; Close unloads it.
type HostedModel struct {
	h         *Host
	name      string
	number    uint32
	meta      oip.ModelMetadata
	anyInputs bool
	bytes     int64
	closed    atomic.Bool
}

// Metadata implements engine.Model, as Model.Metadata does.
func (hm *HostedModel) Metadata() oip.ModelMetadata { return hm.meta }

// AnyInputs reports whether the class declares no inputs (Model.AnyInputs).
func (hm *HostedModel) AnyInputs() bool { return hm.anyInputs }

// ModelBytes implements engine.Sizer: how much the workers' resident
// memory grew, all together, as they loaded the model.
func (hm *HostedModel) ModelBytes() int64 { return hm.bytes }

// Predict implements engine.Model: it runs the instance's predict in the
// worker with the fewest requests in flight.
func (hm *HostedModel) Predict(ctx context.Context, inputs []oip.Tensor) ([]oip.Tensor, error) {
	if hm.closed.Load() {
		return nil, fmt.Errorf("engine python: model %s was unloaded", hm.name)
	}
	m := hm.h.m
	w, err := m.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer m.release(w)
	id := m.nextID.Add(1)
	bufs, _, err := inferToFrame(id, hm.number, inputs)
	if err != nil {
		return nil, err
	}
	r := w.roundTrip(ctx, id, bufs)
	return r.outputs, r.err
}

// Close unloads the model from every worker; Predict fails after it.
// Calls after the first do nothing.
func (hm *HostedModel) Close() error {
	if hm.closed.Swap(true) {
		return nil
	}
	return hm.h.unload(hm)
}
