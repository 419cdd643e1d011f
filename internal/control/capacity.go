package control

import "fmt"

// This file caps the replicas of the whole host (Options.MaxReplicasTotal,
// `ebb up --max-replicas-total`): every deployment's replicas, starting,
// ready or stopping, count against one budget, so that no spec, however
// large its minReplicas, and no burst of demand across many deployments,
// starts more processes than the machine was configured for. A deployment
// held back by the cap says so in status.reason and starts the rest as
// soon as others stop.

// totalReplicas counts the replicas of every deployment, whatever their
// state: each is a process until it has exited.
func (c *Controller) totalReplicas() int {
	n := 0
	for _, d := range c.deps {
		n += len(d.replicas)
	}
	return n
}

// allowStarts returns how many of the n replicas d wants to start fit
// under Options.MaxReplicasTotal (all n when the cap is off).
func (c *Controller) allowStarts(d *deployment, n int) int {
	limit := c.opts.MaxReplicasTotal
	if limit <= 0 {
		return n
	}
	room := limit - c.totalReplicas()
	if room < n {
		c.log.Warn("replica cap reached: holding back replicas", "deployment", d.name,
			"wanted", n, "starting", max(room, 0), "maxReplicasTotal", limit)
		c.opts.Metrics.heldBack(d.name, n-max(room, 0))
	}
	return min(n, max(room, 0))
}

// capReason returns why d has fewer replicas than it wants because of the
// host-wide cap, or "" when it does not.
func (c *Controller) capReason(d *deployment) string {
	limit := c.opts.MaxReplicasTotal
	if limit <= 0 || d.deleted {
		return ""
	}
	active := d.count(func(r *replicaRec) bool { return !r.stopping && r.generation == d.generation })
	total := c.totalReplicas()
	if active >= int(d.desired) || total < limit {
		return ""
	}
	return fmt.Sprintf("held at %d of %d replicas: this host runs %d replicas, the most allowed (ebb up --max-replicas-total %d); the rest start when others stop",
		active, d.desired, total, limit)
}
