package telemetry

import (
	"context"
	"net"
	"testing"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestExtractMatchesOtel checks ExtractFastHTTP against otel's own W3C
// propagator on valid and invalid headers.
func TestExtractMatchesOtel(t *testing.T) {
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	tests := []struct {
		name, traceparent, tracestate string
		valid                         bool
	}{
		{"sampled", "00-" + tid + "-" + sid + "-01", "", true},
		{"not sampled", "00-" + tid + "-" + sid + "-00", "", true},
		{"random flag", "00-" + tid + "-" + sid + "-03", "", true},
		{"reserved flags in version 00", "00-" + tid + "-" + sid + "-05", "", false},
		{"unknown flags of a future version dropped", "01-" + tid + "-" + sid + "-ff", "", true},
		{"with tracestate", "00-" + tid + "-" + sid + "-01", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", true},
		{"bad tracestate ignored", "00-" + tid + "-" + sid + "-01", "=,=", true},
		{"future version with more fields", "cc-" + tid + "-" + sid + "-01-what-the-future-holds", "", true},
		{"absent", "", "", false},
		{"version ff", "ff-" + tid + "-" + sid + "-01", "", false},
		{"version 00 too long", "00-" + tid + "-" + sid + "-01-x", "", false},
		{"future version, no dash after", "cc-" + tid + "-" + sid + "-01x", "", false},
		{"upper case", "00-4BF92F3577B34DA6A3CE929D0E0E4736-" + sid + "-01", "", false},
		{"zero trace id", "00-00000000000000000000000000000000-" + sid + "-01", "", false},
		{"zero span id", "00-" + tid + "-0000000000000000-01", "", false},
		{"short", "00-" + tid + "-" + sid, "", false},
		{"not hex", "00-" + tid + "-" + sid + "-0g", "", false},
		{"wrong separator", "00_" + tid + "-" + sid + "-01", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			carrier := propagation.MapCarrier{}
			if tt.traceparent != "" {
				h.Set("Traceparent", tt.traceparent)
				carrier[HeaderTraceparent] = tt.traceparent
			}
			if tt.tracestate != "" {
				h.Set("Tracestate", tt.tracestate)
				carrier[HeaderTracestate] = tt.tracestate
			}
			got := trace.SpanContextFromContext(ExtractFastHTTP(context.Background(), &h))
			want := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
			if got.IsValid() != tt.valid {
				t.Errorf("valid = %v; want %v", got.IsValid(), tt.valid)
			}
			if !got.Equal(want) || got.IsRemote() != want.IsRemote() {
				t.Errorf("got %+v;\nwant (otel) %+v", got, want)
			}
		})
	}
}

func TestInjectRoundTrip(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer(TracerName).Start(context.Background(), "x")
	defer span.End()
	state, err := trace.ParseTraceState("k=v")
	if err != nil {
		t.Fatal(err)
	}
	withState := trace.ContextWithSpanContext(ctx, span.SpanContext().WithTraceState(state))
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{{"plain", ctx}, {"with tracestate", withState}, {"no span", context.Background()}} {
		t.Run(tc.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			h.Set(HeaderTracestate, "stale=1")
			InjectFastHTTP(tc.ctx, &h)
			carrier := propagation.MapCarrier{}
			propagation.TraceContext{}.Inject(tc.ctx, carrier)
			if got, want := string(h.Peek(HeaderTraceparent)), carrier.Get(HeaderTraceparent); got != want {
				t.Errorf("traceparent %q; otel writes %q", got, want)
			}
			wantState := carrier.Get(HeaderTracestate)
			if !trace.SpanContextFromContext(tc.ctx).IsValid() {
				wantState = "stale=1" // untouched
			}
			if got := string(h.Peek(HeaderTracestate)); got != wantState {
				t.Errorf("tracestate %q; want %q", got, wantState)
			}
		})
	}
}

func TestPropagationDoesNotAllocate(t *testing.T) {
	var empty fasthttp.RequestHeader
	empty.Set("Content-Type", "application/json")
	ctx := context.Background()
	if a := testing.AllocsPerRun(100, func() { _ = ExtractFastHTTP(ctx, &empty) }); a != 0 {
		t.Errorf("Extract without traceparent: %v allocations; want 0", a)
	}
	tp := sdktrace.NewTracerProvider()
	sctx, span := tp.Tracer(TracerName).Start(ctx, "x")
	defer span.End()
	var out fasthttp.RequestHeader
	InjectFastHTTP(sctx, &out) // the header's buffers grow once
	if a := testing.AllocsPerRun(100, func() { InjectFastHTTP(sctx, &out) }); a != 0 {
		t.Errorf("Inject: %v allocations; want 0", a)
	}
	if a := testing.AllocsPerRun(100, func() { InjectFastHTTP(ctx, &out) }); a != 0 {
		t.Errorf("Inject without a span: %v allocations; want 0", a)
	}
}

// TestGRPCOptions runs a real gRPC server and client on loopback with the
// otelgrpc options and checks that the server span is the client span's
// child.
func TestGRPCOptions(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(GRPCServerOptions(tp)...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(), append(GRPCDialOptions(tp), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, parent := tp.Tracer(TracerName).Start(context.Background(), SpanRequest)
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	srv.GracefulStop()

	spans := map[trace.SpanKind]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.SpanKind()] = s
	}
	client, server := spans[trace.SpanKindClient], spans[trace.SpanKindServer]
	if client == nil || server == nil {
		t.Fatalf("spans %v; want a client and a server span", rec.Ended())
	}
	if client.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("client span's parent %v; want the request span", client.Parent().SpanID())
	}
	if server.Parent().SpanID() != client.SpanContext().SpanID() || !server.Parent().IsRemote() {
		t.Errorf("server span's parent %v; want the remote client span %v", server.Parent(), client.SpanContext().SpanID())
	}
	if server.Name() != "grpc.health.v1.Health/Check" {
		t.Errorf("server span %q", server.Name())
	}
}

// FuzzExtractFastHTTP checks ExtractFastHTTP against otel's W3C
// propagator on arbitrary headers.
func FuzzExtractFastHTTP(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "rojo=00f067aa0ba902b7")
	f.Add("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-x", "")
	f.Add("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "a=b,=")
	f.Fuzz(func(t *testing.T, traceparent, tracestate string) {
		var h fasthttp.RequestHeader
		carrier := propagation.MapCarrier{}
		// fasthttp drops header values it cannot carry (newlines); compare
		// on what it kept.
		h.Set(HeaderTraceparent, traceparent)
		h.Set(HeaderTracestate, tracestate)
		carrier[HeaderTraceparent] = string(h.Peek(HeaderTraceparent))
		carrier[HeaderTracestate] = string(h.Peek(HeaderTracestate))
		got := trace.SpanContextFromContext(ExtractFastHTTP(context.Background(), &h))
		want := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
		if !got.Equal(want) {
			t.Errorf("traceparent %q tracestate %q: got %+v; otel %+v", carrier[HeaderTraceparent], carrier[HeaderTracestate], got, want)
		}
	})
}
