package batch

import (
	"time"

	"github.com/ebb-ml/ebb/internal/telemetry"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (Options.Tracer). The spans are recorded after the fact, with
// the times the batcher keeps anyway, for each request whose context
// carries a sampled span (the replica's caller's, from its traceparent):
//
//   - telemetry.SpanBatchWait, from when the request was queued to when
//     its batch was taken out of the queue, with the batch's rows
//     (telemetry.AttrBatchSize) and why it left (telemetry.AttrBatchTrigger:
//     full, preferred or delay);
//   - telemetry.SpanEngineCall, the model call that ran the request's
//     batch (one per call: a batch that an input error split runs each
//     request again alone), with Options.SpanAttrs.
//
// Requests that are not traced cost a check of their context.

// Batch triggers, for telemetry.AttrBatchTrigger.
const (
	triggerFull      = "full"
	triggerPreferred = "preferred"
	triggerDelay     = "delay"
)

// markTaken notes on batch's requests, taken at now, why the batch left
// the queue: full (MaxBatchSize rows, or rest's first request would not
// fit), of a preferred size, or its oldest request waited the delay.
func (b *Batcher) markTaken(batch, rest []*request, now time.Time) {
	rows := 0
	for _, r := range batch {
		rows += r.rows
	}
	trigger := triggerDelay
	switch {
	case rows >= b.max || (len(rest) > 0 && rows+rest[0].rows > b.max):
		trigger = triggerFull
	case b.preferred[rows]:
		trigger = triggerPreferred
	}
	for _, r := range batch {
		r.taken, r.trigger, r.batchRows = now, trigger, rows
	}
}

// traced reports whether r's context carries a sampled span.
func traced(r *request) bool {
	return trace.SpanContextFromContext(r.ctx).IsSampled()
}

// traceWait records the SpanBatchWait of each traced request of batch.
func (b *Batcher) traceWait(batch []*request) {
	for _, r := range batch {
		if !traced(r) || r.taken.IsZero() {
			continue
		}
		_, span := b.tracer.Start(r.ctx, telemetry.SpanBatchWait, trace.WithTimestamp(r.enqueued),
			trace.WithAttributes(telemetry.AttrBatchSize.Int(r.batchRows), telemetry.AttrBatchTrigger.String(r.trigger)))
		span.End(trace.WithTimestamp(r.taken))
	}
}

// traceCall records the SpanEngineCall, from start to now, of each traced
// request of batch, a model call that returned *err.
func (b *Batcher) traceCall(batch []*request, start time.Time, err *error) {
	end := b.clock.Now()
	rows := 0
	for _, r := range batch {
		rows += r.rows
	}
	for _, r := range batch {
		if !traced(r) {
			continue
		}
		_, span := b.tracer.Start(r.ctx, telemetry.SpanEngineCall, trace.WithTimestamp(start),
			trace.WithAttributes(b.spanAttrs...), trace.WithAttributes(telemetry.AttrBatchSize.Int(rows)))
		if *err != nil {
			span.SetStatus(codes.Error, (*err).Error())
		}
		span.End(trace.WithTimestamp(end))
	}
}
