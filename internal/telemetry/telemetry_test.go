package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestResolve(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	type want struct {
		protocol, hostPort, path string
		tls                      bool
	}
	tests := []struct {
		name    string
		cfg     Config
		env     map[string]string
		want    *want
		wantErr string
	}{
		{name: "off", cfg: Config{}},
		{name: "loopback grpc", cfg: Config{Endpoint: "127.0.0.1:4317"}, want: &want{"grpc", "127.0.0.1:4317", "/v1/traces", false}},
		{name: "default grpc port", cfg: Config{Endpoint: "localhost"}, want: &want{"grpc", "localhost:4317", "/v1/traces", false}},
		{name: "http url", cfg: Config{Endpoint: "http://[::1]:4318", Protocol: "http"}, want: &want{"http", "[::1]:4318", "/v1/traces", false}},
		{name: "http url with base path", cfg: Config{Endpoint: "http://127.0.0.1:9/otlp/", Protocol: "http"}, want: &want{"http", "127.0.0.1:9", "/otlp/v1/traces", false}},
		{name: "remote host means TLS", cfg: Config{Endpoint: "collector.example:4317"}, want: &want{"grpc", "collector.example:4317", "/v1/traces", true}},
		{name: "https loopback", cfg: Config{Endpoint: "https://127.0.0.1", Protocol: "http"}, want: &want{"http", "127.0.0.1:4318", "/v1/traces", true}},
		{name: "plaintext to a remote host", cfg: Config{Endpoint: "http://collector.example:4318", Protocol: "http"}, wantErr: "plaintext is only allowed to a loopback address"},
		{name: "plaintext with a CA", cfg: Config{Endpoint: "http://127.0.0.1:4318", CAFile: ca}, wantErr: "plaintext is only allowed"},
		{name: "bad CA", cfg: Config{Endpoint: "127.0.0.1:4317", CAFile: ca}, wantErr: "holds no PEM certificate"},
		{name: "bad protocol", cfg: Config{Endpoint: "127.0.0.1:1", Protocol: "udp"}, wantErr: `OTLP protocol "udp"`},
		{name: "bad ratio", cfg: Config{Endpoint: "127.0.0.1:1", SampleRatio: 1.5}, wantErr: "not in [0, 1]"},
		{name: "grpc with a path", cfg: Config{Endpoint: "http://127.0.0.1:1/x"}, wantErr: "has no path"},
		{name: "bad port", cfg: Config{Endpoint: "127.0.0.1:http"}, wantErr: "bad host or port"},
		{name: "env endpoint and protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
			want: &want{"http", "127.0.0.1:4318", "/v1/traces", false}},
		{name: "flag beats env", cfg: Config{Endpoint: "127.0.0.2:5", Protocol: "grpc"}, env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
			want: &want{"grpc", "127.0.0.2:5", "/v1/traces", false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := tt.cfg.resolve()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tt.want == nil) {
				t.Fatalf("target = %+v; want %+v", got, tt.want)
			}
			if got == nil {
				return
			}
			g := want{got.protocol, got.hostPort, got.path, got.tls != nil}
			if diff := cmp.Diff(*tt.want, g, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("target (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddFlags(t *testing.T) {
	var c Config
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	c.AddFlags(fs)
	if c.SampleRatio != 1 {
		t.Errorf("default ratio %v; want 1", c.SampleRatio)
	}
	if err := fs.Parse([]string{"--otlp-endpoint=127.0.0.1:4317", "--otlp-protocol=http", "--trace-sample-ratio=0.25", "--otlp-ca-file=/ca.pem"}); err != nil {
		t.Fatal(err)
	}
	want := Config{Endpoint: "127.0.0.1:4317", Protocol: "http", SampleRatio: 0.25, CAFile: "/ca.pem"}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestSetupOff(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	tp, shutdown, err := Setup(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tp.(offProvider); !ok {
		t.Errorf("provider %T; want the no-op one", tp)
	}
	// An incoming trace context passes through a span of the no-op
	// provider unchanged, and nothing is allocated.
	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: 1, Remote: true})
	in := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	ctx, span := tp.Tracer(TracerName).Start(in, SpanRequest)
	if !span.SpanContext().Equal(remote) || span.IsRecording() || ctx != in {
		t.Errorf("span %+v (recording %v); want the incoming context, not recording", span.SpanContext(), span.IsRecording())
	}
	span.End()
	tr := tp.Tracer(TracerName)
	if a := testing.AllocsPerRun(100, func() { _, s := tr.Start(in, SpanRequest); s.End() }); a != 0 {
		t.Errorf("%v allocations per span; want 0", a)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestLogHandler(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer(TracerName).Start(context.Background(), "x")
	defer span.End()
	sc := span.SpanContext()
	tests := []struct {
		name string
		ctx  context.Context
		want map[string]any
	}{
		{"with a span", ctx, map[string]any{"msg": "hi", "k": "v", LogTraceID: sc.TraceID().String(), LogSpanID: sc.SpanID().String()}},
		{"without", context.Background(), map[string]any{"msg": "hi", "k": "v"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(NewLogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
						return slog.Attr{}
					}
					return a
				},
			}))).With("k", "v")
			l.InfoContext(tt.ctx, "hi")
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("record (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordPhases(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := tp.Tracer(TracerName)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx, root := tr.Start(context.Background(), SpanRequest)
	cs := RecordPhases(ctx, tr, t0, []Phase{
		{Name: SpanPhaseScheduled, End: t0.Add(10 * time.Millisecond)},
		{Name: SpanPhaseImage}, // did not happen
		{Name: SpanPhaseProcessStarted, End: t0.Add(50 * time.Millisecond)},
		{Name: SpanPhaseArtifactFetched, End: t0.Add(250 * time.Millisecond), Attrs: []attribute.KeyValue{AttrArtifactCached.Bool(false)}},
		{Name: SpanPhaseModelLoaded, End: t0.Add(400 * time.Millisecond)},
		{Name: SpanPhaseReady, End: t0.Add(420 * time.Millisecond)},
	}, AttrDeployment.String("d"))
	root.End()

	type got struct {
		Name       string
		Parent     string
		Start, End time.Duration
	}
	byID := map[trace.SpanID]string{}
	for _, s := range rec.Ended() {
		byID[s.SpanContext().SpanID()] = s.Name()
	}
	var spans []got
	for _, s := range rec.Ended() {
		if s.Name() == SpanRequest {
			continue
		}
		spans = append(spans, got{s.Name(), byID[s.Parent().SpanID()], s.StartTime().Sub(t0), s.EndTime().Sub(t0)})
	}
	ms := time.Millisecond
	want := []got{
		{SpanPhaseScheduled, SpanColdStart, 0, 10 * ms},
		{SpanPhaseProcessStarted, SpanColdStart, 10 * ms, 50 * ms},
		{SpanPhaseArtifactFetched, SpanColdStart, 50 * ms, 250 * ms},
		{SpanPhaseModelLoaded, SpanColdStart, 250 * ms, 400 * ms},
		{SpanPhaseReady, SpanColdStart, 400 * ms, 420 * ms},
		{SpanColdStart, SpanRequest, 0, 420 * ms},
	}
	if diff := cmp.Diff(want, spans); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
	if !cs.IsValid() || cs.TraceID() != root.SpanContext().TraceID() {
		t.Errorf("cold-start span context %v is not in the request's trace", cs)
	}
}
