package control

import (
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
)

// traceColdStart records r's cold start, as its phases say, with
// Options.ColdStarts (telemetry.ColdStarts.Record): a trace of its own
// whose root is a telemetry.SpanColdStart of deployment, from when the
// replica was started to when it was routed, with a span per phase. In
// the same process as the gateway (ebb up), a request the cold start
// released links its telemetry.SpanHold to it; the operator's are found
// by their ebb.deployment and ebb.replica attributes.
func (c *Controller) traceColdStart(deployment string, r *replicaRec) {
	if c.opts.ColdStarts == nil || len(r.phases) == 0 {
		return
	}
	start := r.h.ScheduledAt
	if first := r.phases[0]; start.IsZero() || first.At.Add(-first.Duration.Duration).Before(start) {
		start = first.At.Add(-first.Duration.Duration)
	}
	phases := spanPhases(r.phases, serving.PhaseArtifactFetched, r.h.Spec.Model)
	attrs := []attribute.KeyValue{telemetry.AttrReplica.String(r.h.Spec.ID), telemetry.AttrBackend.String(c.backendName())}
	if r.version != "" {
		attrs = append(attrs, telemetry.AttrModelVersion.String(r.version))
	}
	c.opts.ColdStarts.Record(deployment, start, phases, attrs...)
}

// tracePoolLoad records the cold start of model m of pool p on replica
// r, as loadedOn measured its phases (pool_replica when the model waited
// for a replica to start, model_loaded, ready), with Options.ColdStarts:
// a telemetry.SpanColdStart of the model's deployment, as traceColdStart
// records a replica's, with the pool named (telemetry.AttrPool). The load
// fetches the model's artifact, so its model_loaded phase carries
// telemetry.AttrArtifactURI.
func (c *Controller) tracePoolLoad(p *poolState, r *poolReplica, m *poolModel, phases []serving.Phase) {
	if c.opts.ColdStarts == nil || len(phases) == 0 {
		return
	}
	first := phases[0]
	start := first.At.Add(-first.Duration.Duration)
	uri := ""
	if m.run != nil {
		uri = m.run.Spec.Model
		if a := m.run.Artifact; a != nil {
			uri = a.URI
		}
	}
	attrs := []attribute.KeyValue{telemetry.AttrReplica.String(r.rec.h.Spec.ID), telemetry.AttrBackend.String(c.backendName()),
		telemetry.AttrPool.String(p.name)}
	if m.run != nil && m.run.Version != "" {
		attrs = append(attrs, telemetry.AttrModelVersion.String(m.run.Version))
	}
	c.opts.ColdStarts.Record(m.name, start, spanPhases(phases, serving.PhaseModelLoaded, uri), attrs...)
}

// spanPhases returns the span phases of a cold start's phases (those
// telemetry.PhaseSpan names, that ended). The artifact fetch's carries
// its size and cache hit; the phase named fetchedIn, uri as
// telemetry.AttrArtifactURI when uri is not empty.
func spanPhases(ps []serving.Phase, fetchedIn, uri string) []telemetry.Phase {
	phases := make([]telemetry.Phase, 0, len(ps))
	for _, p := range ps {
		name := telemetry.PhaseSpan(p.Name)
		if name == "" || p.At.IsZero() {
			continue
		}
		tp := telemetry.Phase{Name: name, End: p.At}
		if p.Name == serving.PhaseArtifactFetched {
			tp.Attrs = []attribute.KeyValue{telemetry.AttrArtifactBytes.Int64(p.Bytes)}
			if p.CacheHit != nil {
				tp.Attrs = append(tp.Attrs, telemetry.AttrArtifactCached.Bool(*p.CacheHit))
			}
		}
		if p.Name == fetchedIn && uri != "" {
			tp.Attrs = append(tp.Attrs, telemetry.AttrArtifactURI.String(uri))
		}
		phases = append(phases, tp)
	}
	return phases
}

// backendName is the replica backend, as telemetry.AttrBackend names it.
func (c *Controller) backendName() string {
	if c.opts.Cluster {
		return "kube"
	}
	return "process"
}
