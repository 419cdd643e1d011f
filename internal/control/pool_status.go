package control

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
)

// PoolStatus returns the latest observed status of a pool; the zero
// PoolStatus when the loop has not seen it. Safe for concurrent use.
func (c *Controller) PoolStatus(name string) serving.PoolStatus {
	c.statusMu.RLock()
	defer c.statusMu.RUnlock()
	return c.poolStatus[name]
}

// PoolModelBytes returns the size a replica of pool measured for model,
// the largest seen; 0 when none did. Safe for concurrent use.
func (c *Controller) PoolModelBytes(pool, model string) int64 {
	c.statusMu.RLock()
	defer c.statusMu.RUnlock()
	if st, ok := c.status[model]; ok && st.Pool != nil && st.Pool.Pool == pool {
		return st.Pool.Bytes
	}
	return 0
}

// publishPoolStatus refreshes the status readers see for p: its
// replicas' (as a deployment's), its models and quarantines, and each
// replica's memory. It runs each tick and when replicas change, not per
// load: a pool of 10,000 models would pay for it on every one.
func (c *Controller) publishPoolStatus(p *poolState) {
	if !p.stored || p.dep == nil {
		return
	}
	p.lastStatus = c.opts.Clock.Now()
	c.statusMu.RLock()
	dst := c.status[p.dep.name]
	c.statusMu.RUnlock()
	st := serving.PoolStatus{Replicas: dst.Replicas, ReadyReplicas: dst.ReadyReplicas, DesiredReplicas: dst.DesiredReplicas,
		Models: len(p.models), Reason: dst.Reason, Failure: dst.Failure}
	for name := range p.models {
		if c.routedAnywhere(p, name) {
			st.Loaded++
		}
		if q := p.mem.Models[name].Quarantine; q != "" {
			st.Quarantined = append(st.Quarantined, serving.PoolQuarantine{Model: name, Reason: q})
		}
	}
	slices.SortFunc(st.Quarantined, func(a, b serving.PoolQuarantine) int { return cmp.Compare(a.Model, b.Model) })
	for _, rs := range dst.ReplicaStatuses {
		prs := serving.PoolReplicaStatus{ID: rs.ID, State: rs.State, Endpoint: rs.Endpoint, BudgetBytes: p.budget, Message: rs.Message}
		if r := p.dep.replicas[rs.ID]; r != nil && r.h.Spec.Pool != nil {
			prs.Slot = r.h.Spec.Pool.Slot
		}
		if v := p.reps[rs.ID]; v != nil {
			for name, h := range v.hosted {
				if h.State != pool.Unavailable && !v.unloading[name] {
					prs.Models++
					prs.UsedBytes += h.Bytes
				}
			}
		}
		st.ReplicaStatuses = append(st.ReplicaStatuses, prs)
	}
	c.statusMu.Lock()
	c.poolStatus[p.name] = st
	c.statusMu.Unlock()
}

// publishPooled publishes m's route, and its status, when they changed:
// its endpoints are the pool's replicas that serve it, in ID order.
func (c *Controller) publishPooled(p *poolState, m *poolModel) {
	if c.pooled[m.name] != m {
		return
	}
	version := ""
	if m.run != nil {
		version = serving.OIPVersion(m.run.Version)
	}
	var eps []*balance.Endpoint
	for _, r := range p.reps {
		if r.serves(m.name) {
			eps = append(eps, p.endpoint(r, version))
		}
	}
	slices.SortFunc(eps, func(a, b *balance.Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	failure := ""
	if len(eps) == 0 {
		failure = c.failureOf(p, m)
	}
	var sig strings.Builder
	fmt.Fprintf(&sig, "%s|%s|", version, failure)
	for _, ep := range eps {
		sig.WriteString(ep.ID + ",")
	}
	if sig.String() != m.routed {
		m.routed = sig.String()
		rt := routing.Route{Deployment: m.name, Endpoints: eps, Failure: failure, Stats: m.rec, Version: version}
		if m.run != nil {
			rt.Model = cmp.Or(m.run.Version, m.run.Spec.Model)
			rt.Metadata = registryMetadata(m.name, m.run)
		}
		c.routes.Publish(rt)
	}
	// The status changes more often than the route (a load begins, a
	// size is measured): it is refreshed only when what it says changed.
	rec := p.mem.Models[m.name]
	loading := 0
	for _, r := range p.reps {
		if h := r.hosted[m.name]; h != nil && h.State == pool.Loading {
			loading++
		}
	}
	ssig := fmt.Sprintf("%s%d|%d|%d|%s|%s|%d", sig.String(), m.gen, loading, rec.Bytes, rec.Quarantine, c.failureOf(p, m), m.loads)
	if ssig != m.status {
		m.status = ssig
		c.publishPooledStatus(p, m)
	}
}

// publishPooledStatus refreshes the status readers see for m.
func (c *Controller) publishPooledStatus(p *poolState, m *poolModel) {
	rec := p.mem.Models[m.name]
	st := serving.Status{SpecGeneration: m.gen, DesiredReplicas: int32(max(rec.Width.Replicas, int(p.spec.ShardSize)))}
	ps := &serving.PoolModelStatus{Pool: p.name, Bytes: rec.Bytes, Quarantine: rec.Quarantine}
	ids := make([]string, 0, len(p.reps))
	for id := range p.reps {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		r := p.reps[id]
		h := r.hosted[m.name]
		if h == nil || r.unloading[m.name] || h.State == pool.Unavailable {
			continue
		}
		rs := serving.ReplicaStatus{ID: id, State: serving.ReplicaStarting, Endpoint: r.rec.h.Endpoint,
			StartedAt: r.rec.h.ScheduledAt.UTC(), ColdStart: m.phases[id], Message: "loading in slot " + r.slot}
		if h.State == pool.Ready {
			rs.State, rs.Message = serving.ReplicaReady, fmt.Sprintf("loaded in slot %s (%s)", r.slot, pool.FormatBytes(h.Bytes))
			st.ReadyReplicas++
			ps.Replicas = append(ps.Replicas, r.slot)
		}
		if m.run != nil {
			rs.ModelVersion = m.run.Version
		}
		st.Replicas++
		st.ReplicaStatuses = append(st.ReplicaStatuses, rs)
	}
	st.Pool = ps
	if m.run != nil {
		st.ModelVersion = m.run.Version
		st.Metadata = registryMetadata(m.name, m.run)
	}
	switch fail := c.failureOf(p, m); {
	case fail != "" && st.ReadyReplicas == 0:
		st.Failure, st.Reason = fail, fail
	case st.ReadyReplicas > 0:
		st.Reason = fmt.Sprintf("loaded in pool %s on %d of its replicas (slots %s)", p.name, st.ReadyReplicas, strings.Join(ps.Replicas, ", "))
	case st.Replicas > 0:
		st.Reason = "loading in pool " + p.name
	default:
		st.Reason = "not loaded: pool " + p.name + " loads it on its next request"
	}
	inUse := map[string]bool{}
	if m.run != nil && m.run.Version != "" {
		inUse[m.run.Version] = true
	}
	if ref, ok := serving.ParseModelRef(m.spec.Model); ok && ref.Version > 0 {
		inUse[ref.String()] = true
	}
	c.statusMu.Lock()
	c.status[m.name] = st
	c.inUse[m.name] = inUse
	c.statusMu.Unlock()
}
