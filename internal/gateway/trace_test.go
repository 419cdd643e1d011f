package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/telemetry"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// seenContext is what a stand-in replica saw of a request's trace
// context.
type seenContext struct {
	mu                      sync.Mutex
	traceparent, tracestate string
}

func (s *seenContext) set(tp, ts string) {
	s.mu.Lock()
	s.traceparent, s.tracestate = tp, ts
	s.mu.Unlock()
}

func (s *seenContext) get() (string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.traceparent, s.tracestate
}

// restStandIn answers every infer request and notes its trace context.
func restStandIn(t *testing.T, seen *seenContext) *balance.Endpoint {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.set(r.Header.Get("traceparent"), r.Header.Get("tracestate"))
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"model_name":"m","outputs":[]}`))
	}))
	t.Cleanup(srv.Close)
	return balance.NewEndpoint("r1", srv.URL)
}

// grpcStandIn answers every ModelInfer and notes its trace context.
type grpcStandIn struct {
	oipgrpc.UnimplementedGRPCInferenceServiceServer
	seen *seenContext
}

func (s grpcStandIn) ModelInfer(ctx context.Context, _ *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
	s.seen.set(first(metadata.ValueFromIncomingContext(ctx, "traceparent")), first(metadata.ValueFromIncomingContext(ctx, "tracestate")))
	return &oipgrpc.ModelInferResponse{ModelName: "m"}, nil
}

func grpcStandInEndpoint(t *testing.T, seen *seenContext) *balance.Endpoint {
	ln := listenLoopback(t)
	s := grpc.NewServer()
	oipgrpc.RegisterGRPCInferenceServiceServer(s, grpcStandIn{seen: seen})
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return balance.NewEndpoint("r1", "http://"+ln.Addr().String())
}

// TestTraceContextToReplica checks what a replica gets of a request's
// trace context, REST and gRPC: without a Tracer, the client's as it came;
// with one, the client's trace with the gateway's SpanProxy as parent when
// sampled, and an unsampled context (flags 00) of the gateway's span when
// the sampler leaves a request out, which then records no span.
func TestTraceContextToReplica(t *testing.T) {
	const clientTP = "00-0ebb0000000000000000000000000001-0ebb000000000001-01"
	const clientTS = "vendor=x"
	tests := []struct {
		name     string
		tracing  sdktrace.Sampler // nil: no Tracer
		header   bool             // the client sends clientTP and clientTS
		wantSame bool             // the replica gets clientTP itself
		wantRE   string           // else: the traceparent's trace id and flags, "" for none
		wantRec  []string         // the spans recorded, sorted
	}{
		{name: "off, with trace context", header: true, wantSame: true},
		{name: "off, without", wantRE: ""},
		{name: "on, sampled parent", tracing: sdktrace.ParentBased(sdktrace.NeverSample()), header: true,
			wantRE: "0ebb0000000000000000000000000001/01", wantRec: []string{telemetry.SpanProxy, telemetry.SpanRequest}},
		{name: "on, root left out", tracing: sdktrace.ParentBased(sdktrace.NeverSample()), wantRE: "*/00"},
		{name: "on, root sampled", tracing: sdktrace.ParentBased(sdktrace.AlwaysSample()),
			wantRE: "*/01", wantRec: []string{telemetry.SpanProxy, telemetry.SpanRequest}},
	}
	for _, tt := range tests {
		for _, api := range []string{"rest", "grpc"} {
			t.Run(tt.name+", "+api, func(t *testing.T) {
				var opts Options
				rec := tracetest.NewSpanRecorder()
				if tt.tracing != nil {
					tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(tt.tracing), sdktrace.WithSpanProcessor(rec))
					opts.Tracer = tp.Tracer(telemetry.TracerName)
				}
				seen := &seenContext{}
				tab := &routing.Table{}
				act := activator.New(tab, &publisher{tab: tab}, activator.Options{Timeout: time.Second, Tracer: opts.Tracer})
				if api == "rest" {
					tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{restStandIn(t, seen)}})
					g := New(tab, act, opts)
					t.Cleanup(g.Close)
					req, _ := http.NewRequest(http.MethodPost, serve(t, g)+"/v2/models/m/infer", strings.NewReader(body))
					if tt.header {
						req.Header.Set("traceparent", clientTP)
						req.Header.Set("tracestate", clientTS)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("status %d", resp.StatusCode)
					}
				} else {
					tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{grpcStandInEndpoint(t, seen)}})
					g := NewGRPC(tab, act, opts)
					ln := listenLoopback(t)
					gs := g.NewServer()
					go gs.Serve(ln)
					t.Cleanup(func() { gs.Stop(); g.Close() })
					cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
					if err != nil {
						t.Fatal(err)
					}
					defer cc.Close()
					ctx := context.Background()
					if tt.header {
						ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", clientTP, "tracestate", clientTS)
					}
					if _, err := oipgrpc.NewGRPCInferenceServiceClient(cc).ModelInfer(ctx, inferRequest(t, "m")); err != nil {
						t.Fatal(err)
					}
				}
				tp, ts := seen.get()
				switch {
				case tt.wantSame:
					if tp != clientTP || ts != clientTS {
						t.Errorf("the replica got traceparent %q, tracestate %q; want the client's %q, %q", tp, ts, clientTP, clientTS)
					}
				case tt.wantRE == "":
					if tp != "" {
						t.Errorf("the replica got traceparent %q; want none", tp)
					}
				default:
					sc, ok := parseTP(tp)
					wantTrace, wantFlags, _ := strings.Cut(tt.wantRE, "/")
					switch {
					case !ok:
						t.Errorf("the replica got traceparent %q; want a valid one", tp)
					case wantTrace != "*" && sc.TraceID().String() != wantTrace:
						t.Errorf("the replica got trace %s; want the client's %s", sc.TraceID(), wantTrace)
					case (wantFlags == "01") != sc.IsSampled():
						t.Errorf("the replica got traceparent %q; want flags %s", tp, wantFlags)
					case tt.header && sc.SpanID().String() == "0ebb000000000001":
						t.Errorf("the replica got the client's span as parent, not the gateway's")
					}
					if tt.header && ts != clientTS {
						t.Errorf("the replica got tracestate %q; want the client's %q", ts, clientTS)
					}
				}
				var got []string
				for _, s := range rec.Ended() {
					got = append(got, s.Name())
				}
				slices.Sort(got)
				if !slices.Equal(got, tt.wantRec) {
					t.Errorf("spans recorded %v; want %v", got, tt.wantRec)
				}
			})
		}
	}
}

// parseTP parses a traceparent as a replica does.
func parseTP(tp string) (trace.SpanContext, bool) {
	md := metadata.Pairs("traceparent", tp)
	sc := trace.SpanContextFromContext(telemetry.ExtractGRPC(metadata.NewIncomingContext(context.Background(), md)))
	return sc, sc.IsValid()
}
