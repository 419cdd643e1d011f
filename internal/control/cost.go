package control

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Usage: what each deployment's replicas used, by hour, for cost reports
// (Cost, CostAll), ebb_control_replica_seconds_total and
// ebb_control_gpu_seconds_total. It is kept in
// memory by the loop that runs the deployments (ebb up, or the operator
// that leads), for up to maxUsageHours; a restart starts it afresh, and a
// report over a longer period says it is partial.

// maxUsageHours bounds a deployment's record: five weeks of hours. Hours
// without replicas take no room.
const maxUsageHours = 35 * 24

// hourUsage is one hour of a deployment's record.
type hourUsage struct {
	start          time.Time
	replicaSeconds float64
	peak           int32
	gpuSeconds     float64
	peakGPUs       int64
}

// usage is the record of one deployment.
type usage struct {
	hours []hourUsage // oldest first
}

// costBook holds every deployment's usage; the loop adds to it, the API
// reads it.
type costBook struct {
	mu      sync.Mutex
	started time.Time
	deps    map[string]*usage
}

// add records n replicas, with gpus GPUs among them, existing for d at
// now.
func (b *costBook) add(deployment string, now time.Time, n int, gpus int64, d time.Duration) {
	if n <= 0 {
		return
	}
	hour := now.Truncate(time.Hour)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.deps == nil {
		b.deps = map[string]*usage{}
	}
	u := b.deps[deployment]
	if u == nil {
		u = &usage{}
		b.deps[deployment] = u
	}
	if len(u.hours) == 0 || !u.hours[len(u.hours)-1].start.Equal(hour) {
		u.hours = append(u.hours, hourUsage{start: hour})
		if len(u.hours) > maxUsageHours {
			u.hours = slices.Delete(u.hours, 0, len(u.hours)-maxUsageHours)
		}
	}
	h := &u.hours[len(u.hours)-1]
	h.replicaSeconds += float64(n) * d.Seconds()
	h.peak = max(h.peak, int32(n))
	h.gpuSeconds += float64(gpus) * d.Seconds()
	h.peakGPUs = max(h.peakGPUs, gpus)
}

// cost sums deployment's record over [since, now].
func (b *costBook) cost(deployment string, since, now time.Time) serving.Cost {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := serving.Cost{Deployment: deployment, Since: since, Until: now, Recorded: since}
	if b.started.After(since) {
		c.Partial, c.Recorded = true, b.started
	}
	if u := b.deps[deployment]; u != nil {
		for _, h := range u.hours {
			if h.start.Add(time.Hour).After(since) && !h.start.After(now) {
				c.ReplicaSeconds += h.replicaSeconds
				c.PeakReplicas = max(c.PeakReplicas, h.peak)
				c.GPUSeconds += h.gpuSeconds
				c.PeakGPUs = max(c.PeakGPUs, h.peakGPUs)
			}
		}
	}
	c.AlwaysOnSeconds = float64(c.PeakReplicas) * now.Sub(c.Recorded).Seconds()
	c.AlwaysOnGPUSeconds = float64(c.PeakGPUs) * now.Sub(c.Recorded).Seconds()
	if c.AlwaysOnSeconds > 0 {
		c.Reduction = c.ReplicaSeconds / c.AlwaysOnSeconds
	}
	return c
}

// names lists the deployments with a record.
func (b *costBook) names() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.deps))
	for n := range b.deps {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// forget drops a deleted deployment's record.
func (b *costBook) forget(deployment string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.deps, deployment)
}

// Cost returns what deployment's replicas used since since, against
// always-on at its peak; the replicas of its split's tracks and shadow
// count with it. It is api.Costs for ebb up and the operator.
func (c *Controller) Cost(_ context.Context, deployment string, since time.Time) (serving.Cost, error) {
	return c.costs.cost(deployment, since, c.opts.Clock.Now()), nil
}

// CostAll returns Cost for every deployment that ran replicas since the
// record began, by name.
func (c *Controller) CostAll(ctx context.Context, since time.Time) ([]serving.Cost, error) {
	names := c.costs.names()
	out := make([]serving.Cost, 0, len(names))
	now := c.opts.Clock.Now()
	for _, n := range names {
		if cost := c.costs.cost(n, since, now); cost.ReplicaSeconds > 0 {
			out = append(out, cost)
		}
	}
	return out, nil
}
