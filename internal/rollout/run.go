package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// Run judges every active rollout every Options.Every until ctx ends. A
// rollout that fails a pass (the store or the API server unreachable) is
// judged again on the next.
func (m *Manager) Run(ctx context.Context) error {
	t := m.opts.Clock.NewTicker(m.opts.Every)
	defer t.Stop()
	for {
		m.Pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
	}
}

// Pass judges every active rollout once.
func (m *Manager) Pass(ctx context.Context) {
	all, err := m.st.ListRollouts(ctx, "")
	if err != nil {
		m.opts.Logger.Warn("list rollouts", "err", err)
		return
	}
	for _, r := range all {
		if !r.Active || r.Kind != store.RolloutCanary {
			continue
		}
		rec, err := decode(r)
		if err == nil {
			err = m.step(ctx, rec)
		}
		if err != nil && ctx.Err() == nil {
			m.opts.Logger.Warn("rollout pass failed; trying again", "deployment", r.Deployment, "rollout", r.ID, "err", err)
		}
	}
}

// step judges one active rollout, stores what came of it, and makes the
// deployment match.
func (m *Manager) step(ctx context.Context, rec record) error {
	name := rec.raw.Deployment
	_, err := m.deps.GetDeployment(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		rec, err = m.update(ctx, rec, func(_ time.Time, s traffic.State) (traffic.State, error) {
			if s.Phase.Final() {
				return s, nil
			}
			return traffic.Abort(s, "the deployment was deleted")
		})
		if err != nil {
			return err
		}
		return m.deactivate(ctx, rec)
	}
	if err != nil {
		return err
	}
	if rec.state.Phase == traffic.Progressing {
		var dec traffic.Decision
		before := rec.state
		rec, err = m.update(ctx, rec, func(now time.Time, s traffic.State) (traffic.State, error) {
			if s.Phase != traffic.Progressing {
				return s, nil // changed by hand since it was read
			}
			canary := m.meas.Measure(name+serving.TrackSep+CanaryTag, s.StepStarted, now)
			primary := m.meas.Measure(name, s.StepStarted, now)
			dec = traffic.Decide(now, rec.spec.Policy.traffic(), s, canary, primary)
			if dec.Action == traffic.Wait {
				s.Reason = dec.Reason
				return s, nil
			}
			return traffic.Apply(now, s, dec), nil
		})
		if err != nil {
			return err
		}
		if dec.Action != "" && dec.Action != traffic.Wait {
			m.transition(name, before, rec.state, dec)
		}
	}
	return m.sync(ctx, rec)
}

// transition logs and records a decision that moved a rollout.
func (m *Manager) transition(name string, before, after traffic.State, dec traffic.Decision) {
	typ, reason := "Normal", "RolloutAdvanced"
	switch dec.Action {
	case traffic.Promote:
		reason = "RolloutSucceeded"
	case traffic.Rollback:
		typ, reason = "Warning", "RolloutRolledBack"
	}
	msg := fmt.Sprintf("canary %d%% → %d%%: %s", before.Weight, after.Weight, dec.Reason)
	m.opts.Logger.Info("rollout "+string(dec.Action), "deployment", name, "from", before.Weight, "to", after.Weight, "reason", dec.Reason)
	m.opts.Event(name, typ, reason, msg)
}

// sync makes the deployment's spec match rec's state: the canary at its
// weight, and no shadow, while the rollout runs, the primary alone once it rolled back or
// was aborted, the canary alone once it succeeded (the alias moved, if
// the deployment follows one). A finished rollout is then marked inactive.
func (m *Manager) sync(ctx context.Context, rec record) error {
	name, s := rec.raw.Deployment, rec.state
	m.opts.State(name, rec.status())
	if s.Phase == traffic.Succeeded {
		// A deployment that follows an alias has it moved to the
		// canary's version first, so that the primary's replicas roll
		// over to it before the split ends; a failure here leaves the
		// split in place, and the next pass tries again.
		d, err := m.deps.GetDeployment(ctx, name)
		if err != nil {
			return err
		}
		if ours(d.Spec.Traffic) && sameModel(d.Spec.Model, rec.spec.To) && m.opts.Registry != nil {
			from, _ := serving.ParseModelRef(d.Spec.Model)
			to, _ := serving.ParseModelRef(rec.spec.To)
			if err := m.opts.Registry.MoveAlias(ctx, from.Model, from.Alias, to.Version, "rollout "+rec.raw.ID); err != nil {
				return fmt.Errorf("move %s to %s: %w", d.Spec.Model, rec.spec.To, err)
			}
		}
	}
	changed := false
	var shadow *serving.Shadow
	_, err := m.deps.UpdateDeployment(ctx, name, func(d *serving.Deployment) error {
		changed, shadow = false, nil
		sp := &d.Spec
		switch s.Phase {
		case traffic.Progressing, traffic.Paused:
			want := []serving.TrafficTarget{{Model: sp.Model, Weight: int32(100 - s.Weight)}, {Model: rec.spec.To, Weight: int32(s.Weight), Tag: CanaryTag}}
			if !slices.Equal(sp.Traffic, want) {
				sp.Traffic, changed = want, true
			}
			if sp.Shadow != nil {
				// The canary takes over from a shadow: the rollout
				// judges the next version now.
				shadow, sp.Shadow, changed = sp.Shadow, nil, true
			}
		case traffic.RolledBack, traffic.Aborted:
			if ours(sp.Traffic) {
				sp.Traffic, changed = nil, true
			}
		case traffic.Succeeded:
			if !ours(sp.Traffic) {
				return errUnchanged // promoted already
			}
			if m.opts.Registry == nil || !sameModel(sp.Model, rec.spec.To) {
				sp.Model = rec.spec.To // the alias, if any, moved above
			}
			sp.Traffic, changed = nil, true
		}
		if !changed {
			return errUnchanged // the deployment matches: no write, no watch event
		}
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return fmt.Errorf("update deployment %q to the rollout's weights: %w", name, err)
	}
	if changed {
		m.opts.Notify(name)
	}
	if shadow != nil {
		m.opts.Logger.Info("shadow ended by a rollout", "deployment", name, "shadow", shadow.Model, "canary", rec.spec.To)
		m.opts.Event(name, "Normal", "ShadowStopped", fmt.Sprintf("shadow of %s ended: the canary of %s takes over", shadow.Model, rec.spec.To))
	}
	if s.Phase.Final() {
		return m.deactivate(ctx, rec)
	}
	return nil
}

// sameModel reports whether alias ref a ("m@champion") and version ref b
// ("m:4") name the same registry model, so that promoting b moves a.
func sameModel(a, b string) bool {
	ra, okA := serving.ParseModelRef(a)
	rb, okB := serving.ParseModelRef(b)
	return okA && okB && ra.Alias != "" && rb.Alias == "" && ra.Model == rb.Model
}

// ours reports whether traffic is a rollout's split: two targets, one the
// canary.
func ours(t []serving.TrafficTarget) bool {
	return len(t) == 2 && t[1].Tag == CanaryTag
}

// deactivate marks a finished rollout inactive, so that a new one may
// start; it stays in the store, for status and history.
func (m *Manager) deactivate(ctx context.Context, rec record) error {
	r, err := m.st.UpdateRollout(ctx, rec.raw.ID, func(r *store.Rollout) error {
		r.Active = false
		return nil
	})
	if err != nil {
		return err
	}
	if rec, err := decode(r); err == nil {
		m.opts.State(rec.raw.Deployment, rec.status())
	}
	return nil
}
