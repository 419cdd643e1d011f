package control

// Multi-model pools.
//
// A pool (serving.Pool) is a set of replicas of one engine that host many
// models each; a deployment whose spec names a pool (spec.pool) is a
// model hosted in it instead of a deployment with replicas of its own.
// Package pool decides where each model lives; the loop acts:
//
//   - The pool's replicas are a deployment of the loop's own, keyed
//     serving.PoolKey(name), started, watched, probed, restarted and
//     recovered through replica.Backend as any deployment's, and scaled
//     0:N by the autoscaler on the demand of all its models together
//     (their stats recorders summed). Each replica has a slot ("0", "1",
//     ...: the lowest free one when it starts, kept in its handle), which
//     is its name in placement, so a replica restarted in the slot of one
//     that died hosts the same models.
//   - Each model has a route of its own, under its deployment's name,
//     whose endpoints are the pool's replicas that hold it ready: the
//     gateway needs nothing else. A cold model's route has no endpoints,
//     so the activator holds its requests and wakes the loop, which plans
//     at once; the route gets its first endpoint when a load is READY,
//     and the model's status shows that load as a cold start.
//   - The loop keeps a view of what each ready replica holds: what its
//     own loads and unloads did, refreshed by polling the replica's
//     repository index (pool_act.go). Each plan (pool.Plan over the view
//     and the models' demand) queues its actions per replica; a replica
//     runs its queue in order, one action at a time, unloads first (after
//     the routes stop sending the unloaded model there), and each result
//     comes back to the loop as an event.
//   - A replica that dies while it was loading a model blames that model;
//     one that dies otherwise blames the models with requests in flight on
//     it (pool.Crash). A model blamed pool.Policy.CrashLimit times is
//     quarantined: its route fails at once with the reason, the API shows
//     it, and a new spec for the deployment clears it.
//
// Pools live in the store when it keeps them (store.PoolStore: ebb up's
// SQL store, the operator's ModelPools). Without one (a cluster without
// the ModelPool CRD) a pooled deployment's route fails with a message
// that says so.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/store"
)

// phasePoolReplica is the cold-start phase of a pooled model that waited
// for a replica of its pool to start before its load could.
const phasePoolReplica = "pool_replica"

// poolState is the loop's state of one pool. Only the loop goroutine
// touches it.
type poolState struct {
	name string
	// stored is set while the pool exists in the store; a pool that only
	// models name has no replicas and fails their routes.
	stored bool
	spec   serving.PoolSpec
	budget int64
	policy pool.Policy
	// dep runs the pool's replicas; nil while not stored.
	dep    *deployment
	models map[string]*poolModel
	// mem is what plans carry from one to the next: the models' records
	// (measured sizes, widths, quarantines) and the crashes.
	mem pool.State
	// reps are the ready replicas, by replica ID; eps their endpoints,
	// one per replica and OIP version, shared by every model's route.
	reps map[string]*poolReplica
	eps  map[epKey]*balance.Endpoint
	// polling is set while an index poll runs; lastPoll is when the last
	// began. replan asks for a plan when the running batch or poll ends;
	// woken is set by a wake until the loop plans.
	polling  bool
	lastPoll time.Time
	// lastPlan and lastStatus are when the pool was last planned and
	// its status published.
	lastPlan, lastStatus time.Time
	replan               bool
	woken                bool
	// lastSample is when its models' demand was last sampled; active
	// are the models with demand then, or woken since: the only ones a
	// plan weighs, so that a plan for one cold model among 10,000 idle
	// ones does not visit them all.
	lastSample time.Time
	active     map[string]bool
	// scratch holds each replica's models for plans, reused.
	scratch [][]pool.Hosted
}

type epKey struct{ replica, version string }

// poolReplica is the loop's view of one ready replica of a pool.
type poolReplica struct {
	rec  *replicaRec
	slot string
	// hosted is what the replica holds or loads, as its index last said
	// and the loop's actions since changed it.
	hosted map[string]*pool.Hosted
	// unloading are the models whose unload is queued or running: not
	// routed, and left out of plans.
	unloading map[string]bool
	queue     []pool.Action
	busy      bool
	// epoch counts the batches begun and ended; an index read across a
	// change of it cannot say which models the replica holds.
	epoch int
}

// poolModel is one pooled deployment: a model hosted in a pool.
type poolModel struct {
	name string
	pool string
	spec serving.Spec
	gen  int64
	// run is what the model resolved to; nil until it did.
	run                 *resolve.Resolution
	resolving           bool
	resolveSeq          int
	unresolved, failure string
	rec                 *stats.Recorder
	conc, rate          float64 // the last tick's demand
	coldSince           time.Time
	// rolledAt is when run last changed: a load begun before loaded what
	// ran then.
	rolledAt time.Time
	// loads counts its loads that succeeded.
	loads int
	// phases is the latest load's cold start on each replica, by ID.
	phases map[string][]serving.Phase
	// routed is what its route last said, so that an unchanged route is
	// not published again (each publish wakes the requests it holds);
	// status what its status last said.
	routed, status string
}

// poolStore returns the store's pools; nil when it keeps none.
func (c *Controller) poolStore() store.PoolStore {
	ps, _ := c.store.(store.PoolStore)
	return ps
}

// loadPools reads the stored pools at start, before the deployments.
func (c *Controller) loadPools(ctx context.Context) error {
	ps := c.poolStore()
	if ps == nil {
		return nil
	}
	pools, err := ps.ListPools(ctx)
	if err != nil {
		return fmt.Errorf("control: load pools: %w", err)
	}
	for _, p := range pools {
		// Only the state: load() reconciles and publishes the pool's
		// replicas once it has recovered those that run, so that a
		// restart neither starts replicas beside them nor stops them.
		c.setPool(ctx, p)
	}
	return nil
}

// poolNamed returns the pool called name, creating an unstored one.
func (c *Controller) poolNamed(name string) *poolState {
	p := c.pools[name]
	if p == nil {
		p = &poolState{name: name, models: map[string]*poolModel{}, reps: map[string]*poolReplica{}, active: map[string]bool{},
			eps: map[epKey]*balance.Endpoint{}, mem: pool.State{Models: map[string]pool.Model{}}}
		c.pools[name] = p
	}
	return p
}

// reloadPool re-reads a pool after the API changed it.
func (c *Controller) reloadPool(ctx context.Context, name string) {
	ps := c.poolStore()
	if ps == nil {
		return
	}
	sp, err := ps.GetPool(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.removePool(ctx, name)
	case err != nil:
		c.log.Error("reload pool", "pool", name, "err", err)
	default:
		c.upsertPool(ctx, sp)
	}
}

// upsertPool creates or updates the loop's state of a stored pool (its
// replicas' deployment, its policy) and acts on it: its replicas, and its
// models' routes.
func (c *Controller) upsertPool(ctx context.Context, sp serving.Pool) {
	p, d := c.setPool(ctx, sp)
	c.decide(d, c.opts.Clock.Now())
	c.reconcile(ctx, d)
	c.publish(d)
	for _, m := range p.models {
		c.publishPooled(p, m)
	}
}

// setPool creates or updates the loop's state of a stored pool, and
// returns it with its replicas' deployment.
func (c *Controller) setPool(ctx context.Context, sp serving.Pool) (*poolState, *deployment) {
	p := c.poolNamed(sp.Name)
	spec := sp.Spec
	spec.Default()
	budget := spec.BudgetBytes()
	rebudget := p.dep != nil && !p.dep.deleted && budget != p.budget
	p.stored, p.spec, p.budget, p.policy = true, spec, budget, spec.Policy()
	d := c.upsert(ctx, serving.PoolKey(sp.Name), sp.Name, "", spec.DeploymentSpec(), sp.Generation)
	d.pool, p.dep = p, d
	if rebudget && d.run != nil {
		// The budget is a flag of the replicas: they roll.
		d.generation++
	}
	return p, d
}

// removePool forgets a deleted pool: its replicas stop, and the models
// that still name it fail.
func (c *Controller) removePool(ctx context.Context, name string) {
	p := c.pools[name]
	if p == nil {
		return
	}
	p.stored = false
	if d := p.dep; d != nil {
		d.deleted = true
		c.reconcile(ctx, d)
	}
	c.statusMu.Lock()
	delete(c.poolStatus, name)
	c.statusMu.Unlock()
	if len(p.models) == 0 {
		delete(c.pools, name)
	}
	for _, m := range p.models {
		c.publishPooled(p, m)
	}
}

// upsertPooled creates or updates the loop's state of a deployment whose
// model is hosted in a pool.
func (c *Controller) upsertPooled(ctx context.Context, sd serving.Deployment) {
	if d := c.deps[sd.Name]; d != nil && !d.deleted {
		// It had replicas of its own: they go, the pool serves it now.
		d.deleted = true
		c.reconcile(ctx, d)
	}
	m := c.pooled[sd.Name]
	if m != nil && m.pool != sd.Spec.Pool.Name {
		c.dropPooled(sd.Name) // moved to another pool
		m = nil
	}
	if m == nil {
		m = &poolModel{name: sd.Name, pool: sd.Spec.Pool.Name, rec: &stats.Recorder{}, phases: map[string][]serving.Phase{}}
		c.pooled[sd.Name] = m
	}
	p := c.poolNamed(m.pool)
	p.models[m.name] = m
	changed := m.gen == 0 || !sameJSON(m.spec, sd.Spec)
	m.spec, m.gen = sd.Spec, sd.Generation
	if changed {
		c.resolvePooled(ctx, p, m)
	}
	c.publishPooled(p, m)
}

// dropPooled forgets a pooled deployment that was deleted, moved to
// another pool or out of pools: it is unloaded wherever it is, and its
// route and status go.
func (c *Controller) dropPooled(name string) {
	m := c.pooled[name]
	if m == nil {
		return
	}
	delete(c.pooled, name)
	p := c.pools[m.pool]
	if p != nil {
		delete(p.models, name)
		c.unloadEverywhere(p, name)
		delete(p.mem.Models, name)
		p.mem.Crashes = slices.DeleteFunc(p.mem.Crashes, func(cr pool.Crash) bool { return cr.Model == name })
		if !p.stored && len(p.models) == 0 && (p.dep == nil || len(p.dep.replicas) == 0) {
			delete(c.pools, m.pool)
		}
	}
	if c.deps[name] == nil {
		c.routes.Remove(name)
	}
	c.statusMu.Lock()
	delete(c.status, name)
	delete(c.inUse, name)
	c.statusMu.Unlock()
	c.history.forget(name)
}

// resolvePooled resolves a pooled model's spec as resolve does a
// deployment's: a path at once, a registry version in the background.
func (c *Controller) resolvePooled(ctx context.Context, p *poolState, m *poolModel) {
	m.resolveSeq++
	seq, spec, name := m.resolveSeq, m.spec, m.name
	if !isRef(spec) {
		res, err := c.opts.Resolver.Resolve(ctx, spec)
		c.resolvedPooled(p, m, seq, res, err)
		return
	}
	m.resolving = true
	c.wg.Go(func() {
		res, err := c.opts.Resolver.Resolve(ctx, spec)
		c.send(event{kind: evPool, deployment: name, pool: &poolEvent{kind: poolResolved, seq: seq, res: res}, err: err})
	})
}

// resolvedPooled applies a pooled model's resolution. A model that now
// runs something else starts afresh: its copies are unloaded, its size,
// failure and quarantine forgotten.
func (c *Controller) resolvedPooled(p *poolState, m *poolModel, seq int, res resolve.Resolution, err error) {
	if seq != m.resolveSeq {
		return
	}
	m.resolving = false
	if err != nil {
		c.resolveFailedEvent(m.name, m.spec.Model, err)
		m.unresolved = unresolvedMessage(m.spec.Model, err, m.run)
		c.publishPooled(p, m)
		return
	}
	m.unresolved = ""
	if m.run != nil && sameJSON(res.Spec, m.run.Spec) && sameJSON(res.Artifact, m.run.Artifact) && res.Version == m.run.Version {
		c.publishPooled(p, m)
		return
	}
	if m.run != nil {
		c.rolledEvent(m.name, modelOf(m.run), modelOf(&res))
	}
	m.run, m.failure, m.rolledAt = &res, "", c.opts.Clock.Now()
	delete(p.mem.Models, m.name)
	p.mem.Crashes = slices.DeleteFunc(p.mem.Crashes, func(cr pool.Crash) bool { return cr.Model == m.name })
	c.unloadEverywhere(p, m.name)
	c.publishPooled(p, m)
}

// unloadEverywhere queues the unload of model from every replica that
// holds it.
func (c *Controller) unloadEverywhere(p *poolState, model string) {
	for _, r := range p.reps {
		if h := r.hosted[model]; h != nil && !r.unloading[model] {
			r.unloading[model] = true
			r.queue = append(r.queue, pool.Action{Kind: pool.Unload, Replica: r.slot, Model: model, Reason: "the model changed or left the pool"})
			c.kickPoolReplica(p, r)
		}
	}
}

// onPoolWake reacts to a request held for a cold pooled model: the pool
// scales from zero if it must, and plans once the wakes are in
// (flushPoolWakes).
func (c *Controller) onPoolWake(ctx context.Context, m *poolModel) {
	p := c.pools[m.pool]
	if p == nil || p.dep == nil {
		return
	}
	if m.coldSince.IsZero() && !c.routedAnywhere(p, m.name) {
		m.coldSince = c.opts.Clock.Now()
	}
	if (m.run == nil || m.unresolved != "") && !m.resolving {
		c.resolvePooled(ctx, p, m)
	}
	p.woken = true
	p.active[m.name] = true
	c.decide(p.dep, c.opts.Clock.Now())
	c.reconcile(ctx, p.dep)
	c.publishStatus(p.dep)
}

// flushPoolWakes plans each pool woken since the last flush, once.
func (c *Controller) flushPoolWakes() {
	for _, p := range c.pools {
		if p.woken {
			p.woken = false
			c.planPool(p)
		}
	}
}

// samplePool returns the demand of a pool's replicas: the sum of its
// models' samples, each kept for placement (rate, concurrency).
func (c *Controller) samplePool(p *poolState, now time.Time) stats.Sample {
	elapsed := now.Sub(p.lastSample)
	if p.lastSample.IsZero() || elapsed <= 0 {
		elapsed = c.opts.Tick
	}
	p.lastSample = now
	sum := stats.Sample{At: now}
	clear(p.active)
	for _, m := range p.models {
		s := c.modelSample(m, now)
		m.conc, m.rate = s.Concurrency, 0
		if elapsed > 0 {
			m.rate = float64(s.Requests) / elapsed.Seconds()
		}
		sum.Concurrency += s.Concurrency
		sum.Requests += s.Requests
		if s.Active() || c.modelInFlight(m) > 0 {
			p.active[m.name] = true
		}
	}
	return sum
}

// modelSample and modelInFlight are a pooled model's demand: what the
// gateways report under its deployment's name where they run apart (the
// cluster), else what its route's recorder counted.
func (c *Controller) modelSample(m *poolModel, now time.Time) stats.Sample {
	if c.opts.Demand != nil {
		return c.opts.Demand.Sample(m.name, now)
	}
	return m.rec.Sample(now)
}

func (c *Controller) modelInFlight(m *poolModel) int {
	if c.opts.Demand != nil {
		return c.opts.Demand.InFlight(m.name)
	}
	return m.rec.InFlight()
}

// poolInFlight is the requests in flight or held for a pool's models.
func (c *Controller) poolInFlight(p *poolState) int {
	n := 0
	for _, m := range p.models {
		n += c.modelInFlight(m)
	}
	return n
}

// demand is m's demand for a plan: the last tick's, and the requests now
// in flight (in), counted as held while no replica serves it.
func (m *poolModel) demand(in int, routed bool) pool.Demand {
	d := pool.Demand{Model: m.name, InFlight: max(m.conc, float64(in)), Rate: m.rate}
	if !routed && in > 0 {
		d.InFlight, d.Held = m.conc, in
	}
	return d
}

// freeSlot returns the lowest slot no replica of d holds.
func (d *deployment) freeSlot() string {
	used := map[string]bool{}
	for _, r := range d.replicas {
		if sp := r.h.Spec.Pool; sp != nil {
			used[sp.Slot] = true
		}
	}
	for i := 0; ; i++ {
		if s := strconv.Itoa(i); !used[s] {
			return s
		}
	}
}

// routedAnywhere reports whether a ready replica of p serves model.
func (c *Controller) routedAnywhere(p *poolState, model string) bool {
	for _, r := range p.reps {
		if r.serves(model) {
			return true
		}
	}
	return false
}

// serves reports whether the replica serves model: ready, not leaving.
func (r *poolReplica) serves(model string) bool {
	h := r.hosted[model]
	return h != nil && h.State == pool.Ready && !r.unloading[model]
}

// endpoint returns the endpoint of replica r for OIP version v.
func (p *poolState) endpoint(r *poolReplica, v string) *balance.Endpoint {
	k := epKey{r.rec.h.Spec.ID, v}
	if ep := p.eps[k]; ep != nil {
		return ep
	}
	ep := balance.NewEndpoint(r.rec.h.Spec.ID, r.rec.h.Endpoint)
	ep.Version, ep.Secret, ep.Socket = v, r.rec.h.Secret, r.rec.h.Socket
	p.eps[k] = ep
	return ep
}

// failureOf says why a pooled model cannot be served now, or "".
func (c *Controller) failureOf(p *poolState, m *poolModel) string {
	switch {
	case c.poolStore() == nil:
		return fmt.Sprintf("deployment %s names pool %s, but this control plane keeps no pools (in a cluster, the ModelPool CRD is not installed: apply deploy/crds/serving.ebb.dev_modelpools.yaml and restart the operator): deploy the model without spec.pool", m.name, m.pool)
	case !p.stored:
		return fmt.Sprintf("pool %s does not exist: create it (ebb pools apply -f pool.yaml) or change spec.pool of deployment %s", m.pool, m.name)
	case m.unresolved != "":
		return m.unresolved
	case m.run != nil && m.run.Spec.Engine != "" && m.run.Spec.Engine != p.spec.Engine:
		return fmt.Sprintf("model %s is a %s model, but pool %s runs engine %s: host it in a %s pool or deploy it on its own", modelOf(m.run), m.run.Spec.Engine, p.name, p.spec.Engine, m.run.Spec.Engine)
	case p.mem.Models[m.name].Quarantine != "":
		return fmt.Sprintf("model %s is quarantined in pool %s: %s", m.name, p.name, p.mem.Models[m.name].Quarantine)
	}
	if b := p.mem.Models[m.name].Bytes; b > p.budget && p.budget > 0 {
		return (&pool.TooLargeError{Model: m.name, Bytes: b, Budget: p.budget}).Error()
	}
	if p.dep != nil && p.dep.failure != "" && len(p.reps) == 0 {
		return "pool " + p.name + "'s replicas fail to start: " + p.dep.failure
	}
	return m.failure
}
