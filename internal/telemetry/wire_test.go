package telemetry

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/metadata"
)

func TestEnabled(t *testing.T) {
	off, _, err := Setup(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		tp   trace.TracerProvider
		want bool
	}{
		{"nil", nil, false},
		{"Setup without an endpoint", off, false},
		{"otel's no-op", noop.NewTracerProvider(), false},
		{"an SDK provider", sdktrace.NewTracerProvider(), true},
	} {
		if got := Enabled(tt.tp); got != tt.want {
			t.Errorf("%s: Enabled = %v; want %v", tt.name, got, tt.want)
		}
	}
}

// TestArgs checks the flags a child process gets, and that they parse
// back (AddFlags) to the same configuration.
func TestArgs(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		env    string
		caFile bool
		want   []string
	}{
		{name: "off", cfg: Config{SampleRatio: 1}},
		{name: "grpc", cfg: Config{Endpoint: "127.0.0.1:4317", SampleRatio: 0.25},
			want: []string{"--otlp-endpoint", "127.0.0.1:4317", "--otlp-protocol", "grpc", "--trace-sample-ratio", "0.25"}},
		{name: "from the environment", cfg: Config{SampleRatio: 1}, env: "http://127.0.0.1:4318",
			want: []string{"--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-protocol", "grpc", "--trace-sample-ratio", "1"}},
		{name: "https", cfg: Config{Endpoint: "https://collector.example", Protocol: "http", SampleRatio: 1}, caFile: true,
			want: []string{"--otlp-endpoint", "https://collector.example", "--otlp-protocol", "http", "--trace-sample-ratio", "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tt.env)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
			got := tt.cfg.Args(tt.caFile)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("Args (-want +got):\n%s", diff)
			}
			if got == nil {
				return
			}
			var back Config
			fs := pflag.NewFlagSet("child", pflag.ContinueOnError)
			back.AddFlags(fs)
			if err := fs.Parse(got); err != nil {
				t.Fatal(err)
			}
			if back.SampleRatio != tt.cfg.SampleRatio || back.Args(false) == nil {
				t.Errorf("parsed back: %+v", back)
			}
		})
	}
}

func TestGRPCPropagation(t *testing.T) {
	state, err := trace.ParseTraceState("vendor=x")
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range []trace.SpanContext{
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2}, SpanID: trace.SpanID{3}, TraceFlags: trace.FlagsSampled}),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{4}, SpanID: trace.SpanID{5}, TraceState: state}),
	} {
		out := InjectGRPC(trace.ContextWithSpanContext(context.Background(), sc))
		md, _ := metadata.FromOutgoingContext(out)
		in := metadata.NewIncomingContext(context.Background(), md)
		got := trace.SpanContextFromContext(ExtractGRPC(in))
		if !got.Equal(sc.WithRemote(true)) {
			t.Errorf("through metadata %v: got %v; want %v", md, got, sc)
		}
	}
	if ctx := context.Background(); InjectGRPC(ctx) != ctx {
		t.Error("InjectGRPC without a span context changed the context")
	}
	bad := metadata.NewIncomingContext(context.Background(), metadata.Pairs("traceparent", "00-zz"))
	if ExtractGRPC(bad) != bad {
		t.Error("ExtractGRPC took an invalid traceparent")
	}
}

func TestColdStarts(t *testing.T) {
	var none *ColdStarts
	if _, ok := none.Since("m", time.Time{}); ok || none.Record("m", time.Now(), nil).IsValid() {
		t.Error("a nil ColdStarts recorded something")
	}
	if NewColdStarts(noop.NewTracerProvider()) != nil {
		t.Error("NewColdStarts of a provider that does not trace is not nil")
	}
	c := NewColdStarts(sdktrace.NewTracerProvider())
	t0 := time.Now()
	sc := c.Record("m", t0, []Phase{{Name: SpanPhaseReady, End: t0.Add(time.Second)}})
	for _, tt := range []struct {
		deployment string
		holdFrom   time.Time
		want       bool
	}{
		{"m", t0.Add(-time.Second), true},
		{"m", t0.Add(time.Second), true},
		{"m", t0.Add(2 * time.Second), false}, // ended before the hold began
		{"other", t0, false},
	} {
		got, ok := c.Since(tt.deployment, tt.holdFrom)
		if ok != tt.want || (ok && !got.Equal(sc)) {
			t.Errorf("Since(%s, %v) = %v, %v; want %v", tt.deployment, tt.holdFrom.Sub(t0), got, ok, tt.want)
		}
	}
}

func TestPhaseSpan(t *testing.T) {
	for in, want := range map[string]string{
		"scheduled":         SpanPhaseScheduled,
		"image_pulled":      SpanPhaseImage,
		"process_started":   SpanPhaseProcessStarted,
		"container_started": SpanPhaseProcessStarted,
		"artifact_fetched":  SpanPhaseArtifactFetched,
		"pool_replica":      SpanPhasePoolReplica,
		"model_loaded":      SpanPhaseModelLoaded,
		"ready":             SpanPhaseReady,
		"warming":           "",
	} {
		if got := PhaseSpan(in); got != want {
			t.Errorf("PhaseSpan(%q) = %q; want %q", in, got, want)
		}
	}
}
