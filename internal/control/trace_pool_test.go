package control

import (
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestTracePoolLoad records a pooled model's load, which waited for a
// replica of its pool to start, as loadedOn does, and checks the spans: a
// cold start of the model's deployment from when it went cold, naming the
// pool and the replica, with the wait for the replica, the load (which
// fetched the artifact: its URI) and the time to ready under it; and that
// a hold released by it can link to it.
func TestTracePoolLoad(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	cs := telemetry.NewColdStarts(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t0 := time.Unix(1700000000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	clk := clocktesting.NewFakeClock(at(1250))
	c := New(nil, nil, &routing.Table{}, Options{ColdStarts: cs, Clock: clk})
	p := &poolState{name: "tabular"}
	r := &poolReplica{rec: &replicaRec{h: replica.Handle{Spec: replica.Spec{ID: "tabular-0"}}}, slot: "0"}
	m := &poolModel{name: "iris", pool: "tabular", coldSince: t0, phases: map[string][]serving.Phase{},
		run: &resolve.Resolution{Version: "iris:3", Artifact: &replica.Artifact{URI: "s3://models/iris/3", SHA256: "ab"}}}
	c.loadedOn(p, r, m, &poolEvent{began: at(800), ended: at(1200)})

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
		telemetry.SpanColdStart: {"", 0, 1250, map[string]string{"ebb.deployment": "iris", "ebb.replica": "tabular-0",
			"ebb.backend": "process", "ebb.pool": "tabular", "ebb.model.version": "iris:3"}},
		telemetry.SpanPhasePoolReplica: {telemetry.SpanColdStart, 0, 800, none},
		telemetry.SpanPhaseModelLoaded: {telemetry.SpanColdStart, 800, 1200, map[string]string{"ebb.artifact.uri": "s3://models/iris/3"}},
		telemetry.SpanPhaseReady:       {telemetry.SpanColdStart, 1200, 1250, none},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pool cold-start spans (-want +got):\n%s", diff)
	}
	if _, ok := cs.Since("iris", at(100)); !ok {
		t.Error("the pooled model's cold start is not remembered for the holds it released")
	}

	// A model loaded on a replica already up has no wait; one given by
	// path names it; without ColdStarts nothing is recorded.
	rec.Reset()
	m.coldSince, m.run = time.Time{}, &resolve.Resolution{Spec: serving.Spec{Model: "/models/iris.json"}}
	c.loadedOn(p, r, m, &poolEvent{began: at(800), ended: at(1200)})
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
		if s.Name() == telemetry.SpanPhaseModelLoaded && len(s.Attributes()) != 1 {
			t.Errorf("model_loaded attributes %v; want the model's path", s.Attributes())
		}
	}
	if len(names) != 3 {
		t.Errorf("spans %v; want the cold start, model_loaded and ready", names)
	}
	rec.Reset()
	New(nil, nil, &routing.Table{}, Options{Clock: clk}).loadedOn(p, r, m, &poolEvent{began: at(800), ended: at(1200)})
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans without ColdStarts", n)
	}
}
