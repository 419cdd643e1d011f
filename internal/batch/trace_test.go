package batch

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestTraceSpans sends requests, each under a sampled span of its own,
// and checks the spans the batcher records for them: a batch wait from
// queued to taken, with the batch's rows and its trigger, and an engine
// call under the request's span with the options' attributes.
func TestTraceSpans(t *testing.T) {
	type want struct {
		size    int64
		trigger string
		wait    time.Duration
	}
	tests := []struct {
		name    string
		policy  serving.Batching
		rows    []int
		advance time.Duration
		want    []want // per traced request
	}{
		{name: "delay", policy: serving.Batching{MaxBatchSize: 8, MaxQueueDelay: serving.D(10 * time.Millisecond)},
			rows: []int{1}, advance: 10 * time.Millisecond, want: []want{{1, "delay", 10 * time.Millisecond}}},
		{name: "preferred", policy: serving.Batching{MaxBatchSize: 8, PreferredBatchSizes: []int{3}, MaxQueueDelay: serving.D(hour)},
			rows: []int{1, 2}, want: []want{{3, "preferred", 0}, {3, "preferred", 0}}},
		{name: "full", policy: serving.Batching{MaxBatchSize: 2, MaxQueueDelay: serving.D(hour)},
			rows: []int{1, 1}, want: []want{{2, "full", 0}, {2, "full", 0}}},
		{name: "full: the next does not fit", policy: serving.Batching{MaxBatchSize: 4, MaxQueueDelay: serving.D(hour)},
			rows: []int{3, 2}, advance: hour, want: []want{{3, "full", 0}, {2, "delay", hour}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			tracer := tp.Tracer(telemetry.TracerName)
			clk := clocktesting.NewFakeClock(time.Unix(0, 0))
			m := &rowModel{}
			b, err := New(m, tt.policy, Options{Clock: clk, Tracer: tracer, SpanAttrs: []attribute.KeyValue{telemetry.AttrEngine.String("rows")}})
			if err != nil {
				t.Fatal(err)
			}
			var answers []<-chan answer
			var parents []trace.SpanContext
			queued := 0
			for _, rows := range tt.rows {
				ctx, span := tracer.Start(context.Background(), "request")
				parents = append(parents, span.SpanContext())
				answers = append(answers, goPredict(ctx, b, rowsInput(0, rows, 2), nil))
				queued += rows
				waitFor(t, "the request to be queued or sent", func() bool { return queuedRows(b)+sum(m.Sizes()) == queued })
			}
			clk.Step(tt.advance)
			for i, ch := range answers {
				if a := <-ch; a.err != nil {
					t.Fatalf("request %d: %v", i, a.err)
				}
			}
			waits, calls := map[trace.SpanID]sdktrace.ReadOnlySpan{}, map[trace.SpanID]sdktrace.ReadOnlySpan{}
			for _, s := range rec.Ended() {
				switch s.Name() {
				case telemetry.SpanBatchWait:
					waits[s.Parent().SpanID()] = s
				case telemetry.SpanEngineCall:
					calls[s.Parent().SpanID()] = s
				}
			}
			for i, w := range tt.want {
				wait, call := waits[parents[i].SpanID()], calls[parents[i].SpanID()]
				if wait == nil || call == nil {
					t.Fatalf("request %d: batch wait %v, engine call %v; want both", i, wait, call)
				}
				got := attrs(wait)
				if diff := cmp.Diff(map[attribute.Key]any{telemetry.AttrBatchSize: w.size, telemetry.AttrBatchTrigger: w.trigger}, got); diff != "" {
					t.Errorf("request %d: batch wait attributes (-want +got):\n%s", i, diff)
				}
				if d := wait.EndTime().Sub(wait.StartTime()); d != w.wait {
					t.Errorf("request %d: waited %v; want %v", i, d, w.wait)
				}
				if diff := cmp.Diff(map[attribute.Key]any{telemetry.AttrEngine: "rows", telemetry.AttrBatchSize: w.size}, attrs(call)); diff != "" {
					t.Errorf("request %d: engine call attributes (-want +got):\n%s", i, diff)
				}
				if call.StartTime().Before(wait.EndTime()) {
					t.Errorf("request %d: the engine call starts before the wait ends", i)
				}
			}
			if n := len(waits); n != len(tt.want) {
				t.Errorf("%d batch waits recorded; want %d", n, len(tt.want))
			}
		})
	}
}

// TestTraceSkipsUntraced checks that a request without a sampled span
// gets no span.
func TestTraceSkipsUntraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.NeverSample()))
	tracer := tp.Tracer(telemetry.TracerName)
	b, err := New(&rowModel{}, serving.Batching{MaxBatchSize: 1}, Options{Tracer: tracer})
	if err != nil {
		t.Fatal(err)
	}
	for _, ctx := range []context.Context{context.Background(), func() context.Context {
		ctx, _ := tracer.Start(context.Background(), "request") // not sampled
		return ctx
	}()} {
		if _, err := b.Predict(ctx, rowsInput(0, 1, 2), nil); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	if len(names) > 0 {
		t.Errorf("spans recorded for untraced requests: %v", slices.Compact(names))
	}
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]any {
	m := map[attribute.Key]any{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.AsInterface()
	}
	return m
}
