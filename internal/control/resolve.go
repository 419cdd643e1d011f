package control

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Resolver turns a deployment's spec into what its replicas run, fetching
// registry versions into the host's artifact cache (see package resolve).
type Resolver interface {
	Resolve(ctx context.Context, spec serving.Spec) (resolve.Resolution, error)
	// Serving records that version ("model:N") serves deployment.
	Serving(ctx context.Context, deployment, version string) error
}

// paths is the Resolver used without a registry: models are paths.
type paths struct{}

func (paths) Resolve(_ context.Context, spec serving.Spec) (resolve.Resolution, error) {
	return resolve.Resolution{Spec: spec}, nil
}

func (paths) Serving(context.Context, string, string) error { return nil }

// isRef reports whether spec names a registry version, which can change
// under the deployment when an alias moves.
func isRef(spec serving.Spec) bool {
	_, ok := serving.ParseModelRef(spec.Model)
	return ok
}

// resolve starts resolving d's spec. A path resolves at once; a registry
// version resolves in the background (it may download an artifact) and
// reports back as evResolved.
func (c *Controller) resolve(ctx context.Context, d *deployment) {
	d.resolveSeq++
	seq, spec, name := d.resolveSeq, d.spec, d.name
	if _, ok := serving.PoolOfKey(name); ok {
		// A pool's replicas start with no model: nothing to resolve.
		c.resolved(ctx, d, seq, resolve.Resolution{Spec: spec}, nil)
		return
	}
	if !isRef(spec) {
		res, err := c.opts.Resolver.Resolve(ctx, spec)
		c.resolved(ctx, d, seq, res, err)
		return
	}
	d.resolving = true
	c.wg.Go(func() {
		res, err := c.opts.Resolver.Resolve(ctx, spec)
		c.send(event{kind: evResolved, deployment: name, seq: seq, res: res, err: err})
	})
}

// resolved applies a resolution: a different runtime starts a new
// generation; the same one keeps the current generation.
func (c *Controller) resolved(ctx context.Context, d *deployment, seq int, res resolve.Resolution, err error) {
	if seq != d.resolveSeq {
		return // a newer resolution is under way
	}
	d.resolving = false
	if err != nil {
		c.log.Error("cannot resolve model", "deployment", d.name, "model", d.spec.Model, "err", err)
		c.resolveFailedEvent(d.name, d.spec.Model, err)
		d.unresolved = unresolvedMessage(d.spec.Model, err, d.run)
		d.failure = d.unresolved
		c.publish(d)
		return
	}
	wasUnresolved := d.unresolved != ""
	d.unresolved = ""
	// What runs now is d.spec's: a later spec that did not start another
	// resolution changed nothing replicas run.
	newGen := d.runGen != d.specGen
	d.runGen = d.specGen
	if d.run != nil && SameRuntime(res.Spec, d.run.Spec) && sameJSON(res.Artifact, d.run.Artifact) && res.Version == d.run.Version {
		if wasUnresolved { // it resolves again, to what runs: start as needed
			d.failure = ""
			c.reconcile(ctx, d)
		}
		if wasUnresolved || newGen {
			c.publish(d)
		}
		return
	}
	if d.run != nil {
		// From what serves now: a roll replaced before its replicas got
		// ready leaves the earlier model serving.
		from, to := cmp.Or(d.servingModel(func(r *replicaRec) bool { return r.state == serving.ReplicaReady && !r.stopping }), modelOf(d.run)), modelOf(&res)
		c.log.Info("new model for deployment; rolling replicas", "deployment", d.name, "from", from, "to", to)
		c.rolledEvent(d.name, from, to)
		if len(d.replicas) > 0 {
			// The latest decision, until the autoscaler's next one;
			// status says how far the roll got meanwhile (rollReason).
			d.reason = "rolled replicas " + rollText(from, to)
		}
	}
	d.generation++
	d.run = &res
	d.clearFailures()
	d.failure, d.nextStart = "", time.Time{}
	// Replicas that already run exactly this (recovered ones, or an
	// alias moved back) join the new generation.
	for _, r := range d.replicas {
		if r.h.Endpoint != "" && d.generationOf(r.h.Spec) == d.generation {
			r.generation, r.version = d.generation, res.Version
		}
	}
	c.reconcile(ctx, d)
	c.publish(d)
}

// modelOf names what a resolution runs: its registry version, else its
// model's path or URI.
func modelOf(res *resolve.Resolution) string {
	return cmp.Or(res.Version, res.Spec.Model)
}

// rollText says what a roll changes: "from a.json to b.json", or "to a
// new spec of a.json" when the model stayed and other fields changed.
func rollText(from, to string) string {
	if from == to {
		return "to a new spec of " + to
	}
	return "from " + from + " to " + to
}

// unresolvedMessage is status.failure for a deployment whose spec.model
// does not resolve (err): an alias deleted after the deployment was made,
// a version that does not exist (a ModelDeployment written with kubectl,
// which the API's create-time check never saw). It says what is missing
// and how to fix it, and, when run is what the model resolved to before,
// that the replicas already running keep serving it.
func unresolvedMessage(model string, err error, run *resolve.Resolution) string {
	ref, _ := serving.ParseModelRef(model)
	var msg string
	switch {
	case errors.Is(err, store.ErrNotFound) && ref.Alias != "":
		msg = fmt.Sprintf("model %s does not resolve: model %s has no alias %q (it was deleted, or never set; `ebb get model %s` shows its aliases): "+
			"point the alias at a version with `ebb models alias %s %s VERSION`, or change spec.model", ref, ref.Model, ref.Alias, ref.Model, ref.Model, ref.Alias)
	case errors.Is(err, store.ErrNotFound):
		msg = fmt.Sprintf("model %s does not resolve: model %s has no version %d (`ebb get model %s` lists its versions): "+
			"push the model, or change spec.model to a version that exists", ref, ref.Model, ref.Version, ref.Model)
	default:
		msg = err.Error()
	}
	if run != nil {
		msg += fmt.Sprintf("; no replica starts until it does, and those running keep serving %s", cmp.Or(run.Version, run.Spec.Model))
	}
	return msg
}

// NotifyModel tells the loop that a registry model changed (an alias
// moved); deployments that name it resolve again. It never blocks.
func (c *Controller) NotifyModel(model string) { c.signal(c.models, model) }

// reresolve resolves again every deployment that names a registry version
// of model ("" for all), unless one is already under way.
func (c *Controller) reresolve(ctx context.Context, model string) {
	for _, m := range c.pooled {
		ref, ok := serving.ParseModelRef(m.spec.Model)
		if p := c.pools[m.pool]; ok && p != nil && !m.resolving && (model == "" || ref.Model == model) {
			c.resolvePooled(ctx, p, m)
		}
	}
	for _, d := range c.deps {
		ref, ok := serving.ParseModelRef(d.spec.Model)
		if !ok || d.resolving || d.deleted || (model != "" && ref.Model != model) {
			continue
		}
		c.resolve(ctx, d)
	}
}

// InUse reports whether any deployment runs or names version of model;
// retirement never touches such a version. Safe for concurrent use.
func (c *Controller) InUse(model string, version int) bool {
	key := serving.ModelRef{Model: model, Version: version}.String()
	c.statusMu.RLock()
	defer c.statusMu.RUnlock()
	for _, set := range c.inUse {
		if set[key] {
			return true
		}
	}
	return false
}

// versionsInUse lists the registry versions d runs or names directly.
func (d *deployment) versionsInUse() map[string]bool {
	set := map[string]bool{}
	if ref, ok := serving.ParseModelRef(d.spec.Model); ok && ref.Version > 0 {
		set[ref.String()] = true
	}
	if d.run != nil && d.run.Version != "" {
		set[d.run.Version] = true
	}
	for _, r := range d.replicas {
		if r.version != "" {
			set[r.version] = true
		}
	}
	return set
}
