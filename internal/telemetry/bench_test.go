package telemetry

import (
	"context"
	"testing"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// BenchmarkSpan is the cost on the request path of one span start and end:
// with tracing off (the no-op provider), and with a real OTLP provider
// that samples nothing (ratio 0; the exporter never connects, since no
// span is sampled).
func BenchmarkSpan(b *testing.B) {
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"noop", Config{}},
		{"otlp-ratio-0", Config{Endpoint: "127.0.0.1:1", SampleRatio: 0}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tp, shutdown, err := Setup(context.Background(), bc.cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = shutdown(context.Background()) }()
			tr := tp.Tracer(TracerName)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_, s := tr.Start(ctx, SpanRequest)
				s.End()
			}
		})
	}
}

// BenchmarkPropagation is the cost of carrying trace context through a
// fasthttp header.
func BenchmarkPropagation(b *testing.B) {
	var empty, full fasthttp.RequestHeader
	full.Set(HeaderTraceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ctx := context.Background()
	sctx := trace.SpanContextFromContext(ExtractFastHTTP(ctx, &full))
	remote := trace.ContextWithSpanContext(ctx, sctx)
	b.Run("extract-absent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = ExtractFastHTTP(ctx, &empty)
		}
	})
	b.Run("extract", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = ExtractFastHTTP(ctx, &full)
		}
	})
	b.Run("inject", func(b *testing.B) {
		var h fasthttp.RequestHeader
		b.ReportAllocs()
		for b.Loop() {
			InjectFastHTTP(remote, &h)
		}
	})
}
