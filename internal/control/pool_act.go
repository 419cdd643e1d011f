package control

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/serving"
)

// The acting half of pools (see pool.go): plans, each replica's queue of
// loads and unloads over OIP v2's repository extension, index polls, and
// what a replica's death means for the models it held.

// Timing of a pool's work.
const (
	// poolPollEvery is how often a pool's replicas' indexes are read:
	// what they hold, each model's last use and requests in flight. A
	// read is O(models held) on the replica and the loop (a replica of
	// 5,000 models answers 1 MB of JSON), so not every tick: the loop's
	// own actions keep its view current meanwhile, and the gateway's
	// counts say which models are in use now.
	poolPollEvery = 10 * time.Second
	// poolIdlePlanEvery is how often a pool with no demand is planned
	// (to unload models outside their shards, narrow widened ones): a
	// plan is O(placements) too.
	poolIdlePlanEvery = 10 * time.Second
	// poolStatusEvery is how often ticks refresh a pool's status (its
	// replicas' changes refresh it at once).
	poolStatusEvery = 2 * time.Second
	// unloadGrace separates taking a model out of its route from
	// unloading it, so that a request the gateway routed just before
	// reaches the model still loaded.
	unloadGrace = 20 * time.Millisecond
	// Bounds of one repository request: a load (fetch and load, which
	// may be large), an unload (which waits for requests in flight), an
	// index read.
	poolLoadTimeout   = 5 * time.Minute
	poolUnloadTimeout = time.Minute
	poolIndexTimeout  = 10 * time.Second
)

// poolEvent is what a pool's background work reports to the loop; the
// event's deployment is the pool's name (the model's, for poolResolved).
type poolEvent struct {
	kind poolEventKind
	// poolResolved.
	seq int
	res resolve.Resolution
	// poolActed and poolBatchDone: the replica (ID) and action; status is
	// the HTTP status of the answer, 0 for none (the event's err says
	// why); entry is the model's status as the replica answered it.
	replica      string
	action       pool.Action
	status       int
	entry        indexEntry
	began, ended time.Time
	// poolIndexed.
	indexes []replicaIndex
}

type poolEventKind int

const (
	poolResolved  poolEventKind = iota // a pooled model's resolution finished
	poolActed                          // a load or unload finished
	poolBatchDone                      // a replica's batch of actions finished
	poolIndexed                        // an index poll finished
)

// indexEntry is one model in a replica's repository index, and the
// answer to a load or unload (server.ModelStatus on the wire); a 507
// answer has the model's size in Bytes too.
type indexEntry struct {
	Name     string         `json:"name"`
	State    pool.LoadState `json:"state"`
	Reason   string         `json:"reason"`
	Bytes    int64          `json:"bytes"`
	Measured bool           `json:"measured"`
	InFlight int            `json:"inFlight"`
	LastUsed time.Time      `json:"lastUsed"`
	Error    string         `json:"error"`
}

// replicaIndex is one replica's index as a poll read it.
type replicaIndex struct {
	id      string
	epoch   int
	entries []indexEntry
	err     error
}

// handlePoolEvent applies one pool event.
func (c *Controller) handlePoolEvent(ev event) {
	pe := ev.pool
	if pe.kind == poolResolved {
		if m := c.pooled[ev.deployment]; m != nil {
			if p := c.pools[m.pool]; p != nil {
				c.resolvedPooled(p, m, pe.seq, pe.res, ev.err)
			}
		}
		return
	}
	p := c.pools[ev.deployment]
	if p == nil {
		return
	}
	switch pe.kind {
	case poolActed:
		if r := p.reps[pe.replica]; r != nil {
			c.acted(p, r, pe, ev.err)
		}
	case poolBatchDone:
		if r := p.reps[pe.replica]; r != nil {
			r.busy = false
			r.epoch++
			if p.replan {
				p.replan = false
				c.planPool(p)
			}
			c.kickPoolReplica(p, r)
		}
	case poolIndexed:
		p.polling = false
		c.indexed(p, pe.indexes)
	}
}

// planPool runs pool.Plan over the view of p's ready replicas and its
// models' demand, and queues the actions.
func (c *Controller) planPool(p *poolState) {
	if !p.stored || len(p.reps) == 0 {
		return
	}
	now := c.opts.Clock.Now()
	p.lastPlan = now
	bySlot := make(map[string]*poolReplica, len(p.reps))
	st := pool.State{Models: p.mem.Models, Crashes: p.mem.Crashes}
	for len(p.scratch) < len(p.reps) {
		p.scratch = append(p.scratch, nil)
	}
	i := 0
	for _, r := range p.reps {
		bySlot[r.slot] = r
		hs := p.scratch[i][:0]
		for name, h := range r.hosted {
			if !r.unloading[name] {
				hs = append(hs, *h)
			}
		}
		p.scratch[i] = hs
		i++
		st.Replicas = append(st.Replicas, pool.Replica{ID: r.slot, Budget: p.budget, Models: hs})
	}
	// Placement is over the pool's slots, not its ready replicas: a
	// model whose replicas are down (a crash, a start) waits for them
	// instead of moving onto, and perhaps crashing, every other replica.
	// Loads planned on a slot that is not ready are dropped, and planned
	// again once it is.
	for _, slot := range p.slots() {
		if bySlot[slot] == nil {
			st.Replicas = append(st.Replicas, pool.Replica{ID: slot, Budget: p.budget})
		}
	}
	var demand []pool.Demand
	for name := range p.active {
		m := p.models[name]
		if m == nil || m.run == nil || c.failureOf(p, m) != "" {
			continue
		}
		if d := m.demand(c.modelInFlight(m), c.routedAnywhere(p, m.name)); d.InFlight > 0 || d.Rate > 0 || d.Held > 0 {
			demand = append(demand, d)
		}
	}
	dec := pool.PlanActions(now, st, demand, p.policy)
	touched := map[string]bool{}
	for name, rec := range dec.Models {
		if rec.Quarantine != "" && p.mem.Models[name].Quarantine == "" {
			c.record(name, serving.EventWarning, serving.ReasonQuarantined, "pool %s quarantined the model: %s", p.name, rec.Quarantine)
			c.log.Warn("pooled model quarantined", "pool", p.name, "model", name, "reason", rec.Quarantine)
		}
		p.mem.Models[name] = rec
		touched[name] = true
	}
	for _, a := range dec.Actions {
		r := bySlot[a.Replica]
		m := p.models[a.Model]
		switch {
		case r == nil:
			continue // a slot whose replica is not ready
		case a.Kind == pool.Unload && !r.unloading[a.Model]:
			r.unloading[a.Model] = true
		case a.Kind == pool.Load && r.hosted[a.Model] == nil && m != nil && m.run != nil:
			r.hosted[a.Model] = &pool.Hosted{Model: a.Model, State: pool.Loading}
		default:
			continue
		}
		r.queue = append(r.queue, a)
		touched[a.Model] = true
	}
	for name := range touched {
		if m := p.models[name]; m != nil {
			c.publishPooled(p, m)
		}
	}
	for _, r := range p.reps {
		c.kickPoolReplica(p, r)
	}
}

// slots are the pool's placement slots: those of its replicas that are
// not stopping, and the lowest ones up to the desired count (a slot whose
// replica died and restarts stays in).
func (p *poolState) slots() []string {
	set := map[string]bool{}
	if d := p.dep; d != nil {
		for _, r := range d.replicas {
			if sp := r.h.Spec.Pool; sp != nil && !r.stopping {
				set[sp.Slot] = true
			}
		}
		for i := range int(d.desired) {
			set[strconv.Itoa(i)] = true
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// kickPoolReplica starts r's queued actions unless a batch runs: its
// unloads, then its loads, one at a time, each reported as poolActed,
// then poolBatchDone.
func (c *Controller) kickPoolReplica(p *poolState, r *poolReplica) {
	if r.busy || len(r.queue) == 0 {
		return
	}
	batch := r.queue
	r.queue, r.busy = nil, true
	r.epoch++
	slices.SortStableFunc(batch, func(a, b pool.Action) int {
		return cmp.Compare(loadLast(a), loadLast(b)) // unloads first
	})
	bodies := make([][]byte, len(batch))
	for i, a := range batch {
		if a.Kind == pool.Load {
			bodies[i] = c.loadBody(p, p.models[a.Model])
		}
	}
	h, name, id := r.rec.h, p.name, r.rec.h.Spec.ID
	c.wg.Go(func() {
		for i, a := range batch {
			if i == 0 && a.Kind == pool.Unload {
				time.Sleep(unloadGrace)
			}
			pe := &poolEvent{kind: poolActed, replica: id, action: a, began: c.opts.Clock.Now()}
			var err error
			if a.Kind == pool.Load && bodies[i] == nil {
				err = errors.New("the model left the pool")
			} else {
				timeout, verb := poolUnloadTimeout, "/unload"
				if a.Kind == pool.Load {
					timeout, verb = poolLoadTimeout, "/load"
				}
				var body []byte
				pe.status, body, err = c.poolPost(h, "/v2/repository/models/"+a.Model+verb, bodies[i], timeout)
				if err == nil {
					err = json.Unmarshal(body, &pe.entry)
					if pe.status != http.StatusOK && pe.entry.Error != "" {
						pe.entry.Reason = pe.entry.Error
					} else if pe.status != http.StatusOK && err != nil {
						pe.entry.Reason, err = string(body), nil
					}
				}
			}
			pe.ended = c.opts.Clock.Now()
			c.send(event{kind: evPool, deployment: name, pool: pe, err: err})
		}
		c.send(event{kind: evPool, deployment: name, pool: &poolEvent{kind: poolBatchDone, replica: id}})
	})
}

// loadLast orders an unload before a load.
func loadLast(a pool.Action) int {
	if a.Kind == pool.Load {
		return 1
	}
	return 0
}

// loadBody is the body of a load of m: its artifact as the replica's
// flags name it, and its measured size when known; nil when m is gone.
func (c *Controller) loadBody(p *poolState, m *poolModel) []byte {
	if m == nil || m.run == nil {
		return nil
	}
	params := map[string]any{"model": m.run.Spec.Model, "engine": cmp.Or(m.run.Spec.Engine, p.spec.Engine)}
	if a := m.run.Artifact; a != nil {
		params["model"], params["model-sha256"] = a.URI, a.SHA256
		if a.Dir {
			params["model-unpack"] = true
		}
		if a.Entry != "" {
			params["model-entry"] = a.Entry
		}
	}
	if m.run.Version != "" {
		params["model-version"] = m.run.Version
	}
	if py := m.run.Spec.Python; py != nil {
		// A python pool's model is an instance of its own class.
		params["python-class"] = py.Class
		if py.Interpreter != "" {
			params["python-interpreter"] = py.Interpreter
		}
	}
	if b := p.mem.Models[m.name].Bytes; b > 0 {
		params["bytes"] = b
	}
	body, _ := json.Marshal(map[string]any{"parameters": params})
	return body
}

// acted applies the result of one load or unload on r.
func (c *Controller) acted(p *poolState, r *poolReplica, pe *poolEvent, err error) {
	a, m := pe.action, p.models[pe.action.Model]
	if a.Kind == pool.Unload {
		if err == nil && (pe.status == http.StatusOK || pe.status == http.StatusNotFound) {
			delete(r.hosted, a.Model)
		}
		delete(r.unloading, a.Model)
		if m != nil {
			c.publishPooled(p, m)
		}
		return
	}
	switch {
	case err != nil:
		// No answer: the replica is likely dying, and its exit says
		// which models to blame; the entry stays, loading, until then
		// (or the next index read).
		c.log.Warn("pooled model load got no answer", "pool", p.name, "model", a.Model, "replica", pe.replica, "err", err)
	case pe.status == http.StatusOK && pe.entry.State == pool.Ready && m != nil && pe.began.Before(m.rolledAt):
		// It loaded what the model ran before its spec or alias changed.
		r.hosted[a.Model] = &pool.Hosted{Model: a.Model, State: pool.Ready, Bytes: pe.entry.Bytes}
		r.unloading[a.Model] = true
		r.queue = append(r.queue, pool.Action{Kind: pool.Unload, Replica: r.slot, Model: a.Model, Reason: "the model changed while it loaded"})
		p.replan = true
	case pe.status == http.StatusOK && pe.entry.State == pool.Ready:
		r.hosted[a.Model] = &pool.Hosted{Model: a.Model, State: pool.Ready, Bytes: pe.entry.Bytes, LastUsed: pe.ended}
		rec := p.mem.Models[a.Model]
		rec.Bytes = max(rec.Bytes, pe.entry.Bytes)
		p.mem.Models[a.Model] = rec
		if m != nil {
			c.loadedOn(p, r, m, pe)
		}
	case pe.status == http.StatusInsufficientStorage:
		// Over the budget once measured: plan again with the size.
		delete(r.hosted, a.Model)
		if pe.entry.Measured && pe.entry.Bytes > 0 {
			rec := p.mem.Models[a.Model]
			rec.Bytes = max(rec.Bytes, pe.entry.Bytes)
			p.mem.Models[a.Model] = rec
		}
		p.replan = true
	case pe.status == http.StatusConflict || pe.status == http.StatusServiceUnavailable:
		// Another artifact under that name (an older version), or a
		// replica draining: unload it, and plan again.
		r.hosted[a.Model] = &pool.Hosted{Model: a.Model, State: pool.Ready}
		r.unloading[a.Model] = true
		r.queue = append(r.queue, pool.Action{Kind: pool.Unload, Replica: r.slot, Model: a.Model, Reason: "load refused: " + pe.entry.Reason})
		p.replan = true
	default:
		r.hosted[a.Model] = &pool.Hosted{Model: a.Model, State: pool.Unavailable, Reason: pe.entry.Reason}
		if m != nil {
			m.failure = fmt.Sprintf("model %s does not load in pool %s: %s", m.name, p.name, pe.entry.Reason)
			c.record(m.name, serving.EventWarning, serving.ReasonModelLoadFailed, "replica %s (slot %s) cannot load the model: %s", pe.replica, r.slot, pe.entry.Reason)
		}
	}
	if m != nil {
		c.publishPooled(p, m)
	}
}

// loadedOn records a model's load on r as a cold start.
func (c *Controller) loadedOn(p *poolState, r *poolReplica, m *poolModel, pe *poolEvent) {
	now := c.opts.Clock.Now()
	var phases []serving.Phase
	if !m.coldSince.IsZero() && pe.began.After(m.coldSince) {
		phases = append(phases, phase(phasePoolReplica, m.coldSince, pe.began))
	}
	phases = append(phases, phase(serving.PhaseModelLoaded, pe.began, pe.ended), phase(serving.PhaseReady, pe.ended, now))
	m.coldSince = time.Time{}
	m.failure = ""
	m.loads++
	m.phases[r.rec.h.Spec.ID] = phases
	c.opts.Metrics.coldStart(phases)
	c.tracePoolLoad(p, r, m, phases) // trace.go
	c.record(m.name, serving.EventNormal, serving.ReasonModelLoaded, "replica %s (slot %s of pool %s) loaded the model (%s): cold start %s",
		r.rec.h.Spec.ID, r.slot, p.name, pool.FormatBytes(pe.entry.Bytes), coldStartText(phases))
}

// poolPost posts body to path on the replica of h and returns the answer.
func (c *Controller) poolPost(h replica.Handle, path string, body []byte, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.Endpoint+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if h.Secret != "" {
		req.Header.Set(replica.SecretHeader, h.Secret)
	}
	resp, err := c.poolHTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// syncPoolReplicas brings p's view in line with its deployment's ready
// replicas: a new one is polled and planned for; one that stopped being
// ready leaves the view, and the routes of the models it served.
func (c *Controller) syncPoolReplicas(p *poolState) {
	d := p.dep
	ready := map[string]*replicaRec{}
	if d != nil && !d.deleted {
		for id, r := range d.replicas {
			if r.state == serving.ReplicaReady && !r.stopping && r.h.Spec.Pool != nil {
				ready[id] = r
			}
		}
	}
	added := false
	for id, rec := range ready {
		if p.reps[id] == nil {
			p.reps[id] = &poolReplica{rec: rec, slot: rec.h.Spec.Pool.Slot, hosted: map[string]*pool.Hosted{}, unloading: map[string]bool{}}
			added = true
		}
	}
	for id, r := range p.reps {
		if ready[id] == nil {
			c.dropPoolReplica(p, r)
		}
	}
	if added {
		p.lastPoll = time.Time{}
		c.pollPool(p) // a recovered replica may hold models already
		c.planPool(p)
	}
}

// dropPoolReplica takes r out of the view and the routes.
func (c *Controller) dropPoolReplica(p *poolState, r *poolReplica) {
	id := r.rec.h.Spec.ID
	delete(p.reps, id)
	maps.DeleteFunc(p.eps, func(k epKey, _ *balance.Endpoint) bool { return k.replica == id })
	for name := range r.hosted {
		if m := p.models[name]; m != nil {
			delete(m.phases, id)
			c.publishPooled(p, m)
		}
	}
}

// poolReplicaExited blames models for the unexpected exit of r (see
// pool.Crash): those it was loading; or, when it loaded none, those with
// requests in flight on it (as its last index said, or its route and the
// gateway's count say now).
func (c *Controller) poolReplicaExited(p *poolState, r *replicaRec, ex replica.Exit) {
	v := p.reps[r.h.Spec.ID]
	if v == nil || r.stopping {
		return
	}
	now := c.opts.Clock.Now()
	var loading, busy []string
	for name, h := range v.hosted {
		switch {
		case h.State == pool.Loading:
			loading = append(loading, name)
		case h.InFlight > 0, v.serves(name) && p.models[name] != nil && p.models[name].rec.InFlight() > 0:
			busy = append(busy, name)
		}
	}
	blamed := loading
	if len(blamed) == 0 {
		blamed = busy
	}
	slices.Sort(blamed)
	for _, name := range blamed {
		p.mem.Crashes = append(p.mem.Crashes, pool.Crash{Model: name, Replica: v.slot, At: now})
		c.record(name, serving.EventWarning, serving.ReasonReplicaExited, "replica %s (slot %s of pool %s) exited while the model was %s: %v",
			r.h.Spec.ID, v.slot, p.name, map[bool]string{true: "loading", false: "serving requests"}[len(loading) > 0], ex.Err)
	}
	if len(blamed) > 0 {
		c.log.Warn("pool replica exited; blaming models", "pool", p.name, "replica", r.h.Spec.ID, "slot", v.slot, "models", blamed)
	}
	window := cmp.Or(p.policy.CrashWindow, pool.DefaultCrashWindow)
	p.mem.Crashes = slices.DeleteFunc(p.mem.Crashes, func(cr pool.Crash) bool { return now.Sub(cr.At) >= window })
	c.dropPoolReplica(p, v)
	c.planPool(p) // quarantines, and the survivors serve what it held
}

// poolTick polls and plans every pool with replicas, and refreshes its
// status.
func (c *Controller) poolTick(now time.Time) {
	for _, p := range c.pools {
		if len(p.reps) > 0 {
			if now.Sub(p.lastPoll) >= poolPollEvery {
				c.pollPool(p) // plans once read
			} else if len(p.active) > 0 || now.Sub(p.lastPlan) >= poolIdlePlanEvery {
				c.planPool(p)
			}
		}
		if now.Sub(p.lastStatus) >= poolStatusEvery {
			c.publishPoolStatus(p) // O(placements) too
		}
	}
}
