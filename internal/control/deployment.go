package control

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/ebb-ml/ebb/internal/autoscale"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/store"
)

// deployment is the loop's state for one deployment.
type deployment struct {
	name string
	// spec is the deployment's spec as stored.
	spec serving.Spec
	// run is what replicas of the current generation run (spec with its
	// model resolved to a local artifact); nil until resolved.
	run *resolve.Resolution
	// generation counts changes of run; replicas of an older generation
	// are replaced once enough of the current one is ready.
	generation int64
	// releases frees the artifact lease of each generation still running.
	releases map[int64]func()
	// resolving is set while a resolution runs; resolveSeq discards stale
	// results.
	resolving  bool
	resolveSeq int

	rec    *stats.Recorder
	window *stats.Window
	scale  autoscale.State

	desired   int32
	reason    string
	lastScale time.Time

	replicas map[string]*replicaRec

	// failures counts consecutive failed starts or early crashes;
	// nextStart is when the next start may happen; failure is the last
	// failure's message, routed so held requests fail fast.
	failures  int
	nextStart time.Time
	failure   string

	deleted bool
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
	s := replica.SpecFor(d.name, d.run.Spec)
	s.ID = id
	return s
}

// sameRuntime reports whether two deployment specs run identical replicas,
// whatever their scaling.
func sameRuntime(a, b serving.Spec) bool {
	a.Scaling, b.Scaling = serving.Scaling{}, serving.Scaling{}
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
	if d.run != nil && sameJSON(d.replicaSpec(s.ID), s) {
		return d.generation
	}
	return d.generation - 1
}

// upsert creates or updates the loop's state from a stored deployment and
// starts resolving its model when the spec changed.
func (c *Controller) upsert(ctx context.Context, sd serving.Deployment) *deployment {
	d := c.deps[sd.Name]
	if d == nil {
		d = &deployment{
			name:     sd.Name,
			spec:     sd.Spec,
			rec:      &stats.Recorder{},
			window:   stats.NewWindow(windowAge(sd.Spec)),
			replicas: map[string]*replicaRec{},
			releases: map[int64]func(){},
		}
		c.deps[sd.Name] = d
		c.resolve(ctx, d)
		return d
	}
	changed := !sameRuntime(sd.Spec, d.spec)
	d.spec = sd.Spec
	d.window.SetMaxAge(windowAge(sd.Spec))
	d.deleted = false
	if changed {
		c.resolve(ctx, d)
	}
	return d
}

// windowAge is how much demand history a deployment's autoscaling reads:
// its stable window, plus a tick of slack. Keeping no more matters with
// thousands of deployments.
func windowAge(s serving.Spec) time.Duration {
	return max(s.Scaling.StableWindow.Duration, serving.DefaultStableWindow) + 2*time.Second
}

// reload re-reads a deployment after the API changed it.
func (c *Controller) reload(ctx context.Context, name string) {
	sd, err := c.store.GetDeployment(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if d := c.deps[name]; d != nil {
			d.deleted = true
			c.reconcile(ctx, d)
		}
		return
	case err != nil:
		c.log.Error("reload deployment", "deployment", name, "err", err)
		return
	}
	d := c.upsert(ctx, sd)
	c.decide(d, c.opts.Clock.Now())
	c.reconcile(ctx, d)
	c.publish(d)
}

// onTick samples demand, decides and reconciles every deployment.
func (c *Controller) onTick(ctx context.Context) {
	now := c.opts.Clock.Now()
	for _, d := range c.deps {
		sample := c.sample(d, now)
		d.window.Add(sample)
		if d.idle(sample) && c.inFlight(d) == 0 {
			continue // at zero with no demand: nothing to decide or do
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
	d := c.deps[name]
	if d == nil {
		return
	}
	if d.run == nil && !d.resolving {
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
	m := autoscale.Observe(now, d.window, c.inFlight(d), ready, d.spec.Scaling)
	dec := autoscale.Decide(now, d.spec.Scaling, m, d.scale)
	d.scale = dec.State
	if dec.Desired != d.desired {
		c.log.Info("scale", "deployment", d.name, "from", d.desired, "to", dec.Desired, "reason", dec.Reason)
		if c.opts.OnScale != nil {
			c.opts.OnScale(d.name, d.desired, dec.Desired, dec.Reason)
		}
		d.desired = dec.Desired
		d.lastScale = now
		d.reason = dec.Reason
		return true
	}
	return false
}

// idle reports whether d is at zero replicas, wants none and sample shows no
// demand: the autoscaler can only answer zero again, so a tick skips it.
// With thousands of deployments, most are idle.
func (d *deployment) idle(sample stats.Sample) bool {
	return d.desired == 0 && len(d.replicas) == 0 && !sample.Active() && !d.deleted && d.run != nil && d.spec.Scaling.MinReplicas == 0
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
	defer c.releaseIdle(d)
	if d.run == nil {
		return // nothing to run until the model resolves
	}
	now := c.opts.Clock.Now()
	current := func(r *replicaRec) bool { return !r.stopping && r.generation == d.generation }
	active := d.count(current)
	if want := int(d.desired); active < want && !now.Before(d.nextStart) {
		for range want - active {
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
	c.routes.Remove(d.name)
	if len(d.replicas) == 0 {
		d.releaseAll()
		delete(c.deps, d.name)
		c.statusMu.Lock()
		delete(c.status, d.name)
		delete(c.inUse, d.name)
		c.statusMu.Unlock()
		c.opts.Metrics.forget(d.name)
	}
}

// publish routes d's ready replicas.
func (c *Controller) publish(d *deployment) {
	if d.deleted {
		return
	}
	var eps []*balance.Endpoint
	for _, r := range d.replicas {
		if r.state == serving.ReplicaReady && !r.stopping && r.ep != nil {
			eps = append(eps, r.ep)
		}
	}
	slices.SortFunc(eps, func(a, b *balance.Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	failure := ""
	if len(eps) == 0 {
		failure = d.failure
	}
	c.routes.Publish(routing.Route{Deployment: d.name, Endpoints: eps, Failure: failure, Stats: d.rec})
	c.publishStatus(d)
}

// newReplicaID returns "<deployment>-<6 random base-36 chars>".
func newReplicaID(deployment string) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return deployment + "-" + string(b)
}
