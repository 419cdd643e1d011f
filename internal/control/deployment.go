package control

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/autoscale"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// deployment is the loop's state for one deployment.
type deployment struct {
	// name is the loop's key: the deployment's name, or for a traffic
	// split's non-primary target, its track key (serving.Track).
	name string
	// served is the deployment's name, which its replicas serve as; track
	// is the target's tag for a non-primary track, else "".
	served, track string
	// tracks are, for a deployment that splits its traffic, every target
	// (the primary first); nil otherwise.
	tracks []serving.Track
	// spec is the deployment's spec as stored.
	spec serving.Spec
	// run is what replicas of the current generation run (spec with its
	// model resolved to a local artifact); nil until resolved.
	run *resolve.Resolution
	// generation counts changes of run; replicas of an older generation
	// are replaced once enough of the current one is ready.
	generation int64
	// specGen is the stored generation of spec (serving.Deployment's);
	// runGen is the one whose spec run comes from (status.specGeneration):
	// behind specGen while a new spec resolves or fails to.
	specGen, runGen int64
	// resolving is set while a resolution runs; resolveSeq discards stale
	// results.
	resolving  bool
	resolveSeq int

	rec    *stats.Recorder
	window *stats.Window
	scale  autoscale.State
	// meter measures the requests of a unit of a traffic split (its
	// primary or a track) for a rollout's analysis, from the first publish
	// that needs it until the split ends; nil otherwise (splitMeter).
	meter *traffic.Meter
	// shadow is the data plane's view of spec.shadow, kept across
	// publishes while the shadow is unchanged (shadowRoute).
	shadow *routing.Shadow

	desired   int32
	reason    string
	lastScale time.Time
	// bounds are the replica bounds of the last decision, the schedule
	// applied; coldStart is the latest cold start measured, how far ahead
	// of a window its floor's replicas start (scheduleLead).
	bounds    autoscale.Bounds
	coldStart time.Duration
	// pinned is whether reason comes from a pin (spec.replicas).
	pinned bool

	replicas map[string]*replicaRec

	// local is set when replicas are processes on this machine (not
	// Options.Cluster): they get process limits, and status reports what
	// one machine ignores.
	local bool

	// failures counts consecutive failed starts or early crashes, and
	// failTimes holds when the last CrashLimit of them happened;
	// lastFailure is the last one's message; nextStart is when the next
	// start may happen; failure, set once the deployment is failed
	// (crashloop.go), is routed so held requests fail fast.
	failures    int
	failTimes   []time.Time
	lastFailure string
	nextStart   time.Time
	failure     string
	// unresolved, set while the last resolution of spec.model failed, is
	// why (status.failure): no replica starts meanwhile, and those already
	// running on an earlier resolution keep serving.
	unresolved string

	deleted bool
	// pool, for the deployment that runs a pool's replicas, is the pool
	// (pool.go); nil for every other.
	pool *poolState
}

// replicaRec is one replica of a deployment.
type replicaRec struct {
	h          replica.Handle // Endpoint is empty until Start returns
	state      string
	generation int64
	stopping   bool
	ep         *balance.Endpoint
	readyAt    time.Time
	phases     []serving.Phase
	message    string
	probeFails int
	// recovered is set for replicas started by an earlier ebb process.
	recovered bool
	// version is the registry version the replica serves ("model:N").
	version string
	// exited is set when the replica ended before Ready returned.
	exited bool
}

// replicaSpec is what a replica of d's current generation runs; d.run must
// be set.
func (d *deployment) replicaSpec(id string) replica.Spec {
	s := replica.SpecFor(d.served, d.run.Spec)
	s.ID = id
	if d.pool != nil {
		// A replica of a pool: no model, a budget, and the lowest free
		// slot.
		s.Model = ""
		s.Pool = &replica.PoolReplica{MemoryBudget: d.pool.budget, Slot: d.freeSlot()}
	}
	s.Track = d.track
	s.Artifact = d.run.Artifact
	s.Version = d.run.Version
	if d.local {
		s.Env = withProcessEnv(s.Env, &d.run.Spec)
	}
	return s
}

// withProcessEnv returns env plus the variables that make a replica process
// honour spec's resource limits (serving.ProcessEnv); env itself is not
// changed.
func withProcessEnv(env map[string]string, spec *serving.Spec) map[string]string {
	extra := serving.ProcessEnv(spec)
	if len(extra) == 0 {
		return env
	}
	out := make(map[string]string, len(env)+len(extra))
	maps.Copy(out, env)
	maps.Copy(out, extra)
	return out
}

// SameRuntime reports whether two deployment specs run identical replicas,
// whatever their scaling, pin, cold-start, split, shadow, routing and
// scatter options.
func SameRuntime(a, b serving.Spec) bool {
	a.Scaling, b.Scaling = serving.Scaling{}, serving.Scaling{}
	a.Replicas, b.Replicas = nil, nil
	a.ColdStart, b.ColdStart = serving.ColdStart{}, serving.ColdStart{}
	a.Traffic, b.Traffic = nil, nil
	a.Shadow, b.Shadow = nil, nil
	a.Routing, b.Routing = nil, nil // the gateway's choice among replicas
	a.Scatter, b.Scatter = nil, nil // how the gateway splits a request
	return sameJSON(a, b)
}

// sameJSON compares values as stored, where nil and empty are one.
func sameJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// generationOf returns the generation a replica running s belongs to: the
// current one when it runs exactly what the current one runs, else an
// older one.
func (d *deployment) generationOf(s replica.Spec) int64 {
	if d.run == nil {
		return d.generation - 1
	}
	want := d.replicaSpec(s.ID)
	if want.Pool != nil && s.Pool != nil {
		want.Pool.Slot = s.Pool.Slot // any slot runs the same
	}
	if sameJSON(want, s) {
		return d.generation
	}
	return d.generation - 1
}

// upsertAll creates or updates the loop's state of a stored deployment: the
// deployment itself and, when it splits its traffic, one track per other
// target (serving.Spec.Tracks), each with replicas of its own. Tracks no
// longer in the split are marked deleted. It returns them all, tracks first.
func (c *Controller) upsertAll(ctx context.Context, sd serving.Deployment) []*deployment {
	tracks := sd.Spec.Tracks(sd.Name)
	keep := map[string]bool{sd.Name: true}
	var out []*deployment
	for _, t := range tracks {
		if t.Primary {
			continue
		}
		keep[t.Key] = true
		out = append(out, c.upsert(ctx, t.Key, sd.Name, t.Tag, sd.Spec.ForTrack(t), sd.Generation))
	}
	if t, ok := sd.Spec.ShadowTrack(sd.Name); ok {
		keep[t.Key] = true
		out = append(out, c.upsert(ctx, t.Key, sd.Name, t.Tag, sd.Spec.ForTrack(t), sd.Generation))
	}
	for key, d := range c.deps {
		if d.served == sd.Name && !keep[key] && !d.deleted {
			d.deleted = true
			out = append(out, d)
		}
	}
	d := c.upsert(ctx, sd.Name, sd.Name, "", sd.Spec, sd.Generation)
	d.tracks = tracks
	return append(out, d)
}

// upsert creates or updates the loop's state of one deployment or track
// from spec, the deployment's generation gen, and starts resolving its
// model when the spec changed.
func (c *Controller) upsert(ctx context.Context, key, served, track string, spec serving.Spec, gen int64) *deployment {
	d := c.deps[key]
	if d == nil {
		d = &deployment{
			name:     key,
			served:   served,
			track:    track,
			spec:     spec,
			specGen:  gen,
			rec:      &stats.Recorder{},
			window:   stats.NewWindow(windowAge(spec)),
			replicas: map[string]*replicaRec{},
			local:    !c.opts.Cluster,
		}
		c.deps[key] = d
		if name, ok := serving.PoolOfKey(key); ok && c.pools[name] != nil {
			d.pool, c.pools[name].dep = c.pools[name], d // the replicas of a pool
		}
		c.resolve(ctx, d)
		return d
	}
	changed := !SameRuntime(spec, d.spec)
	d.spec = spec
	d.specGen = gen
	d.window.SetMaxAge(windowAge(spec))
	d.deleted = false
	switch {
	case changed:
		c.resolve(ctx, d)
	case d.run != nil && !d.resolving && d.unresolved == "":
		d.runGen = gen // replicas run this spec already
	}
	return d
}

// defaultColdStart is how far ahead of a schedule window its floor's
// replicas start while the deployment has no measured cold start.
const defaultColdStart = 30 * time.Second

// scheduleLead is how long before a schedule window opens its floor
// applies: the deployment's latest measured cold start (defaultColdStart
// before one), plus a tick for the decision to be taken.
func (c *Controller) scheduleLead(d *deployment) time.Duration {
	cs := d.coldStart
	if cs <= 0 {
		cs = defaultColdStart
	}
	return cs + c.opts.Tick
}

// windowAge is how much demand history a deployment's autoscaling reads:
// its stable window, plus a tick of slack. Keeping no more matters with
// thousands of deployments.
func windowAge(s serving.Spec) time.Duration {
	return max(s.Scaling.StableWindow.Duration, serving.DefaultStableWindow) + 2*time.Second
}

// reload re-reads a deployment after the API changed it, with its tracks.
func (c *Controller) reload(ctx context.Context, name string) {
	if pool, ok := serving.PoolOfKey(name); ok {
		c.reloadPool(ctx, pool) // pool.go
		return
	}
	name = serving.ParentOf(name)
	sd, err := c.store.GetDeployment(ctx, name)
	if err == nil && sd.Spec.Pool != nil {
		c.upsertPooled(ctx, sd) // pool.go
		return
	}
	if err == nil || errors.Is(err, store.ErrNotFound) {
		c.dropPooled(name) // deleted, or out of its pool
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		for _, d := range c.deps {
			if d.served == name {
				d.deleted = true
				c.reconcile(ctx, d)
			}
		}
		return
	case err != nil:
		c.log.Error("reload deployment", "deployment", name, "err", err)
		return
	}
	now := c.opts.Clock.Now()
	for _, d := range c.upsertAll(ctx, sd) {
		c.decide(d, now)
		c.reconcile(ctx, d)
		c.publish(d)
	}
}

// onTick samples demand, decides and reconciles every deployment.
func (c *Controller) onTick(ctx context.Context) {
	now := c.opts.Clock.Now()
	used := map[string]int{}   // replicas existing, by deployment served
	gpus := map[string]int64{} // their GPUs (Spec.GPUs per replica)
	// The time since the last tick (a busy loop may skip one), at most
	// a few ticks, so that a stalled loop or a suspended machine does not
	// count time nobody measured.
	elapsed := c.opts.Tick
	if !c.lastTick.IsZero() {
		elapsed = min(max(now.Sub(c.lastTick), 0), 5*c.opts.Tick)
	}
	c.lastTick = now
	defer func() {
		for name, n := range used {
			c.costs.add(name, now, n, gpus[name], elapsed)
			c.opts.Metrics.replicaSeconds(name, float64(n)*elapsed.Seconds(), float64(gpus[name])*elapsed.Seconds())
		}
	}()
	defer c.poolTick(now) // pool_act.go
	for _, d := range c.deps {
		if n := len(d.replicas); n > 0 {
			used[d.served] += n
			gpus[d.served] += int64(n) * d.spec.GPUs()
		}
		sample := c.sample(d, now)
		d.window.Add(sample)
		if d.idle(sample) && c.inFlight(d) == 0 && len(d.spec.Scaling.Schedule) == 0 {
			continue // at zero with no demand or schedule: nothing to decide or do
		}
		before := len(d.replicas)
		changed := c.decide(d, now)
		c.reconcile(ctx, d)
		// Status is published by every change of replicas; a tick only
		// adds a new decision or new replicas. Idle deployments cost no
		// status work, which matters with thousands of them.
		if changed || len(d.replicas) != before {
			c.publishStatus(d)
		}
	}
}

// onWake reacts at once to a request waiting for a cold deployment.
func (c *Controller) onWake(ctx context.Context, name string) {
	if m := c.pooled[name]; m != nil {
		c.onPoolWake(ctx, m) // pool.go
		return
	}
	d := c.deps[name]
	if d == nil {
		return
	}
	if (d.run == nil || d.unresolved != "") && !d.resolving {
		c.resolve(ctx, d) // an earlier resolution failed: try again
	}
	c.decide(d, c.opts.Clock.Now())
	c.reconcile(ctx, d)
	c.publishStatus(d)
}

// decide runs the autoscaler for d and reports whether the desired count
// changed.
func (c *Controller) decide(d *deployment, now time.Time) bool {
	ready := d.count(func(r *replicaRec) bool { return r.state == serving.ReplicaReady && !r.stopping })
	// The schedule's window, if any, bounds this decision.
	spec := d.spec
	before := d.bounds
	d.bounds = autoscale.Scheduled(now, spec.Scaling, c.scheduleLead(d))
	boundsMoved := d.bounds != before
	spec.Scaling.MinReplicas, spec.Scaling.MaxReplicas = d.bounds.MinReplicas, d.bounds.MaxReplicas
	m := autoscale.Observe(now, d.window, c.inFlight(d), ready, spec.Scaling)
	dec := autoscale.Scale(now, &spec, m, d.scale)
	c.decisions.add(d.name, autoscale.NewRecord(now, spec.Scaling, spec.Replicas, d.bounds.Status().Applies(), m, d.scale, dec))
	if w := d.bounds.Status().Applies(); w != "" && spec.Replicas == nil {
		dec.Reason += " (" + w + ")"
	}
	d.scale = dec.State
	if dec.Desired != d.desired {
		c.log.Info("scale", "deployment", d.name, "from", d.desired, "to", dec.Desired, "reason", dec.Reason)
		if c.opts.OnScale != nil {
			c.opts.OnScale(d.name, d.desired, dec.Desired, dec.Reason)
		}
		c.scaledEvent(d.name, d.desired, dec.Desired, dec.Reason)
		d.desired = dec.Desired
		d.lastScale = now
		d.reason = dec.Reason
		d.pinned = d.spec.Replicas != nil
		return true
	}
	if pinned := d.spec.Replicas != nil; pinned != d.pinned {
		// A pin set or removed at the current count: say so. Otherwise
		// the reason changes with the count only, so that a steady
		// deployment's status stays put.
		d.pinned = pinned
		d.reason = dec.Reason
		return true
	}
	if boundsMoved {
		// A window opened or closed at the current count: say so.
		d.reason = dec.Reason
		return true
	}
	return false
}

// idle reports whether d is at zero replicas, wants none and sample shows no
// demand (or is pinned at zero, where demand does not count): the
// autoscaler can only answer zero again, so a tick skips it. With thousands
// of deployments, most are idle.
func (d *deployment) idle(sample stats.Sample) bool {
	atZero := d.desired == 0 && len(d.replicas) == 0 && !d.deleted && d.run != nil
	if n, pinned := d.spec.Pinned(); pinned {
		return atZero && n == 0
	}
	return atZero && !sample.Active() && d.spec.Scaling.MinReplicas == 0
}

func (d *deployment) count(pred func(*replicaRec) bool) int {
	n := 0
	for _, r := range d.replicas {
		if pred(r) {
			n++
		}
	}
	return n
}

// reconcile starts or stops replicas so that the current generation has
// d.desired of them, and retires older generations once enough of the
// current one is ready.
func (c *Controller) reconcile(ctx context.Context, d *deployment) {
	if d.deleted {
		c.retire(d)
		return
	}
	if d.run == nil {
		return // nothing to run until the model resolves
	}
	now := c.opts.Clock.Now()
	current := func(r *replicaRec) bool { return !r.stopping && r.generation == d.generation }
	active := d.count(current)
	if want := int(d.desired); active < want && !now.Before(d.nextStart) && d.unresolved == "" {
		for range c.allowStarts(d, want-active) {
			c.startReplica(ctx, d)
		}
	} else if active > want {
		c.stopExtra(d, active-want)
	}
	// Old generations serve until the new one can take over.
	readyNew := d.count(func(r *replicaRec) bool { return current(r) && r.state == serving.ReplicaReady })
	if readyNew >= int(d.desired) {
		for _, r := range d.replicas {
			if r.generation != d.generation && !r.stopping {
				c.stopReplica(d, r)
			}
		}
	}
}

// stopExtra stops n replicas of the current generation: those still starting
// first, then the ready ones with the fewest requests in flight.
func (c *Controller) stopExtra(d *deployment, n int) {
	var cand []*replicaRec
	for _, r := range d.replicas {
		if !r.stopping && r.generation == d.generation {
			cand = append(cand, r)
		}
	}
	slices.SortFunc(cand, func(a, b *replicaRec) int {
		if (a.state == serving.ReplicaReady) != (b.state == serving.ReplicaReady) {
			if a.state == serving.ReplicaReady {
				return 1
			}
			return -1
		}
		return cmp.Compare(inFlight(a), inFlight(b))
	})
	for _, r := range cand[:min(n, len(cand))] {
		c.stopReplica(d, r)
	}
}

func inFlight(r *replicaRec) int64 {
	if r.ep == nil {
		return 0
	}
	return r.ep.InFlight()
}

// retire stops everything of a deleted deployment and forgets it once no
// replica is left.
func (c *Controller) retire(d *deployment) {
	for _, r := range d.replicas {
		if !r.stopping {
			c.stopReplica(d, r)
		}
	}
	if c.pooled[d.name] == nil {
		c.routes.Remove(d.name) // else a pool serves it now
	}
	d.meter = nil // a track that comes back is measured afresh
	if d.pool != nil {
		c.syncPoolReplicas(d.pool)
	}
	if len(d.replicas) == 0 {
		if p := d.pool; p != nil && p.dep == d {
			p.dep = nil
			if !p.stored && len(p.models) == 0 {
				delete(c.pools, p.name)
			}
		}
		if d.name == d.served {
			c.costs.forget(d.name)
		}
		delete(c.deps, d.name)
		c.statusMu.Lock()
		delete(c.status, d.name)
		delete(c.tracks, d.name)
		delete(c.inUse, d.name)
		c.statusMu.Unlock()
		c.opts.Metrics.forget(d.name)
		c.history.forget(d.name)
		c.decisions.forget(d.name)
	}
}

// newReplicaID returns "<deployment>-<6 random base-36 chars>"; a pool's
// key ("pool:NAME") becomes "pool-NAME", so that the ID is a valid pod
// name.
func newReplicaID(deployment string) string {
	deployment = strings.ReplaceAll(deployment, ":", "-")
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return deployment + "-" + string(b)
}
