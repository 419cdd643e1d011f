package control

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/prometheus/client_golang/prometheus"
)

// publishStatus refreshes the status readers see for d.
func (c *Controller) publishStatus(d *deployment) {
	if d.deleted && len(d.replicas) == 0 {
		return
	}
	st := serving.Status{DesiredReplicas: d.desired, Reason: d.reason, SpecGeneration: d.runGen}
	if len(d.spec.Scaling.Schedule) > 0 {
		sch := d.bounds.Status()
		st.Schedule = &sch
	}
	if why := d.rollReason(); why != "" {
		st.Reason = why
	}
	if d.run != nil {
		st.ModelVersion = d.run.Version
		st.Metadata = registryMetadata(d.served, d.run)
	}
	if d.local {
		st.Ignored = d.ignored()
	}
	if why := c.capReason(d); why != "" {
		st.Reason = why
	}
	if d.count(func(r *replicaRec) bool { return r.state == serving.ReplicaReady }) == 0 {
		if d.failure != "" {
			st.Failure = d.failure
			st.Reason = "replicas fail to start: " + d.failure
		} else if why := d.restartingReason(c.opts); why != "" {
			st.Reason = why
		}
	}
	if d.unresolved != "" && st.Failure == "" {
		// Reported while replicas of an earlier resolution still serve:
		// none can start, which matters more than the autoscaler's reason.
		st.Failure, st.Reason = d.unresolved, d.unresolved
	}
	if !d.lastScale.IsZero() {
		t := d.lastScale.UTC()
		st.LastScaleTime = &t
	}
	for _, r := range d.replicas {
		st.Replicas++
		if r.state == serving.ReplicaReady && !r.stopping {
			st.ReadyReplicas++
		}
		st.ReplicaStatuses = append(st.ReplicaStatuses, serving.ReplicaStatus{
			ID:           r.h.Spec.ID,
			State:        r.state,
			Endpoint:     r.h.Endpoint,
			StartedAt:    r.h.ScheduledAt.UTC(),
			ColdStart:    r.phases,
			Message:      r.message,
			ModelVersion: r.version,
			Track:        d.track,
			Outdated:     r.generation != d.generation,
		})
	}
	slices.SortFunc(st.ReplicaStatuses, func(a, b serving.ReplicaStatus) int {
		return cmp.Or(a.StartedAt.Compare(b.StartedAt), cmp.Compare(a.ID, b.ID))
	})
	c.statusMu.Lock()
	c.status[d.name] = st
	c.inUse[d.name] = d.versionsInUse()
	if d.track == "" {
		c.tracks[d.name] = d.tracks
	}
	c.statusMu.Unlock()
	c.opts.Metrics.replicas(d.name, st)
}

// rollReason says how far d's roll to a new model or spec got while
// replicas of an earlier one remain: "rolling replicas from a.json to
// b.json: 1 of 2 new ready; old: 2 serving, 1 draining". It is "" when no
// replica of an earlier one remains.
func (d *deployment) rollReason() string {
	if d.run == nil {
		return ""
	}
	var newReady, oldServing, oldDraining int
	for _, r := range d.replicas {
		switch {
		case r.generation == d.generation:
			if r.state == serving.ReplicaReady && !r.stopping {
				newReady++
			}
		case r.stopping:
			oldDraining++
		default:
			oldServing++
		}
	}
	if oldServing+oldDraining == 0 {
		return ""
	}
	from := cmp.Or(d.servingModel(func(r *replicaRec) bool { return r.generation != d.generation }), "an earlier model")
	return fmt.Sprintf("rolling replicas %s: %d of %d new ready; old: %d serving, %d draining",
		rollText(from, modelOf(d.run)), newReady, d.desired, oldServing, oldDraining)
}

// servingModel names the model (registry version, else path or URI) of
// d's replicas that match: the first in ID order of those ready, else of
// all; "" when none matches.
func (d *deployment) servingModel(match func(*replicaRec) bool) string {
	var best *replicaRec
	for _, r := range d.replicas {
		if !match(r) {
			continue
		}
		rReady := r.state == serving.ReplicaReady && !r.stopping
		bestReady := best != nil && best.state == serving.ReplicaReady && !best.stopping
		if best == nil || (rReady && !bestReady) || (rReady == bestReady && r.h.Spec.ID < best.h.Spec.ID) {
			best = r
		}
	}
	if best == nil {
		return ""
	}
	return cmp.Or(best.version, best.h.Spec.Model)
}

// Metrics are the control loop's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	desired    *prometheus.GaugeVec
	ready      *prometheus.GaugeVec
	existing   *prometheus.GaugeVec
	restarts   *prometheus.CounterVec
	coldStarts *prometheus.HistogramVec
	capped     *prometheus.CounterVec
	used       *prometheus.CounterVec // replica-seconds (cost.go)
	gpuUsed    *prometheus.CounterVec // GPU-seconds (cost.go)
}

// NewMetrics creates the control loop's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		desired: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_control_desired_replicas",
			Help: "Replicas the autoscaler wants, by deployment.",
		}, []string{"deployment"}),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_control_ready_replicas",
			Help: "Replicas receiving traffic, by deployment.",
		}, []string{"deployment"}),
		existing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ebb_control_replicas",
			Help: "Replicas in any state (starting, ready, draining), by deployment.",
		}, []string{"deployment"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_control_replica_crashes_total",
			Help: "Replicas that exited without being asked to, by deployment.",
		}, []string{"deployment"}),
		coldStarts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ebb_control_cold_start_duration_seconds",
			Help:    "Time each phase of a replica's cold start took: process_started, model_loaded, ready.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"phase"}),
		used: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_control_replica_seconds_total",
			Help: "Replica-seconds used (replicas existing, a tick at a time), by deployment, its split's tracks and shadow included: what ebb cost reports against always-on.",
		}, []string{"deployment"}),
		gpuUsed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_control_gpu_seconds_total",
			Help: "GPU-seconds used (replica-seconds × the GPUs each replica asks for), by deployment, as ebb_control_replica_seconds_total; absent for a deployment without GPUs.",
		}, []string{"deployment"}),
		capped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ebb_control_replica_starts_capped_total",
			Help: "Replica starts the host-wide cap (ebb up --max-replicas-total) held back, by deployment; a start still held back is counted again at each reconcile.",
		}, []string{"deployment"}),
	}
	reg.MustRegister(m.desired, m.ready, m.existing, m.restarts, m.coldStarts, m.capped, m.used, m.gpuUsed)
	return m
}

func (m *Metrics) replicas(name string, st serving.Status) {
	if m == nil {
		return
	}
	m.desired.WithLabelValues(name).Set(float64(st.DesiredReplicas))
	m.ready.WithLabelValues(name).Set(float64(st.ReadyReplicas))
	m.existing.WithLabelValues(name).Set(float64(st.Replicas))
}

func (m *Metrics) restarted(name string) {
	if m == nil {
		return
	}
	m.restarts.WithLabelValues(name).Inc()
}

func (m *Metrics) heldBack(name string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.capped.WithLabelValues(name).Add(float64(n))
}

func (m *Metrics) coldStart(phases []serving.Phase) {
	if m == nil {
		return
	}
	for _, p := range phases {
		m.coldStarts.WithLabelValues(p.Name).Observe(p.Duration.Seconds())
	}
}

func (m *Metrics) forget(name string) {
	if m == nil {
		return
	}
	m.desired.DeleteLabelValues(name)
	m.ready.DeleteLabelValues(name)
	m.existing.DeleteLabelValues(name)
	m.restarts.DeleteLabelValues(name)
	m.capped.DeleteLabelValues(name)
	m.used.DeleteLabelValues(name)
	m.gpuUsed.DeleteLabelValues(name)
}

// replicaSeconds counts s replica-seconds, and g GPU-seconds, used by
// deployment.
func (m *Metrics) replicaSeconds(deployment string, s, g float64) {
	if m != nil && s > 0 {
		m.used.WithLabelValues(deployment).Add(s)
	}
	if m != nil && g > 0 {
		m.gpuUsed.WithLabelValues(deployment).Add(g)
	}
}

// ignored lists the spec fields of d that one machine cannot honour; the
// engine of a registry version is known once it resolved.
func (d *deployment) ignored() []string {
	spec := d.spec
	if d.run != nil {
		spec.Engine = d.run.Spec.Engine
	}
	return serving.Ignored(&spec)
}
