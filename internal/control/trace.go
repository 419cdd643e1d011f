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
	phases := make([]telemetry.Phase, 0, len(r.phases))
	for _, p := range r.phases {
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
		phases = append(phases, tp)
	}
	backend := "process"
	if c.opts.Cluster {
		backend = "kube"
	}
	attrs := []attribute.KeyValue{telemetry.AttrReplica.String(r.h.Spec.ID), telemetry.AttrBackend.String(backend)}
	if r.version != "" {
		attrs = append(attrs, telemetry.AttrModelVersion.String(r.version))
	}
	c.opts.ColdStarts.Record(deployment, start, phases, attrs...)
}
