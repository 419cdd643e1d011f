package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys NewLogHandler adds.
const (
	LogTraceID = "trace_id"
	LogSpanID  = "span_id"
)

// logHandler adds the trace and span ids of the record's context.
type logHandler struct{ inner slog.Handler }

// NewLogHandler wraps h so that a record logged with a context that holds
// a valid span (slog's *Context methods: InfoContext, ...) carries
// trace_id and span_id, in hex as trace UIs show them. Records without
// such a context are passed on unchanged. Under WithGroup the ids land in
// the group, as any attribute added at Handle time does.
func NewLogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

func (h logHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String(LogTraceID, sc.TraceID().String()), slog.String(LogSpanID, sc.SpanID().String()))
	}
	return h.inner.Handle(ctx, r)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.inner.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler {
	return logHandler{h.inner.WithGroup(name)}
}
