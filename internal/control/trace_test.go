package control

import (
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTraceColdStart records a pod's cold start, as the kube backend
// reports its phases, and checks the spans: a cold start of the
// deployment from the replica's start, a span per phase under it with the
// telemetry names, each from the end of the one before, and the
// artifact's URI, size and cache hit.
func TestTraceColdStart(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	cs := telemetry.NewColdStarts(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	c := New(nil, nil, &routing.Table{}, Options{ColdStarts: cs, Cluster: true})
	t0 := time.Unix(1700000000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	hit := false
	r := &replicaRec{h: replica.Handle{Spec: replica.Spec{ID: "iris-7", Model: "s3://models/iris/3"}, ScheduledAt: t0}, version: "iris:3", phases: []serving.Phase{
		{Name: "scheduled", At: at(100), Duration: serving.D(100 * time.Millisecond)},
		{Name: "image_pulled", At: at(900), Duration: serving.D(700 * time.Millisecond)},
		{Name: "container_started", At: at(1000), Duration: serving.D(100 * time.Millisecond)},
		{Name: serving.PhaseArtifactFetched, At: at(1500), Duration: serving.D(500 * time.Millisecond), Bytes: 4096, CacheHit: &hit},
		{Name: serving.PhaseModelLoaded, At: at(1800), Duration: serving.D(300 * time.Millisecond)},
		{Name: serving.PhaseReady, At: at(1810), Duration: serving.D(10 * time.Millisecond)},
	}}
	c.traceColdStart("iris", r)

	type span struct {
		Parent     string
		From, To   int // ms after t0
		Attributes map[string]string
	}
	byID := map[string]string{}
	for _, s := range rec.Ended() {
		byID[s.SpanContext().SpanID().String()] = s.Name()
	}
	got := map[string]span{}
	for _, s := range rec.Ended() {
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		got[s.Name()] = span{Parent: byID[s.Parent().SpanID().String()], From: int(s.StartTime().Sub(t0).Milliseconds()),
			To: int(s.EndTime().Sub(t0).Milliseconds()), Attributes: attrs}
	}
	none := map[string]string{}
	want := map[string]span{
		telemetry.SpanColdStart: {"", 0, 1810, map[string]string{"ebb.deployment": "iris", "ebb.replica": "iris-7",
			"ebb.backend": "kube", "ebb.model.version": "iris:3"}},
		telemetry.SpanPhaseScheduled:       {telemetry.SpanColdStart, 0, 100, none},
		telemetry.SpanPhaseImage:           {telemetry.SpanColdStart, 100, 900, none},
		telemetry.SpanPhaseProcessStarted:  {telemetry.SpanColdStart, 900, 1000, none},
		telemetry.SpanPhaseArtifactFetched: {telemetry.SpanColdStart, 1000, 1500, map[string]string{"ebb.artifact.bytes": "4096", "ebb.artifact.cached": "false", "ebb.artifact.uri": "s3://models/iris/3"}},
		telemetry.SpanPhaseModelLoaded:     {telemetry.SpanColdStart, 1500, 1800, none},
		telemetry.SpanPhaseReady:           {telemetry.SpanColdStart, 1800, 1810, none},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cold-start spans (-want +got):\n%s", diff)
	}
	if _, ok := cs.Since("iris", at(1000)); !ok {
		t.Error("the cold start is not remembered for the holds it released")
	}

	// Without ColdStarts nothing is recorded.
	rec.Reset()
	New(nil, nil, &routing.Table{}, Options{}).traceColdStart("iris", r)
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans without ColdStarts", n)
	}
}
