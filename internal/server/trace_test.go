package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/telemetry"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// TestTraceEngineCall checks the replica's span of an unbatched request:
// an engine call under the traceparent the request came with (fasthttp
// REST, net/http REST, gRPC), with the engine and the replica; none for a
// request whose trace context is not sampled, or that has none.
func TestTraceEngineCall(t *testing.T) {
	const traceID, parentID = "0ebb0000000000000000000000000007", "0ebb000000000007"
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s := New("m", &fakeModel{width: 2}, Options{ReplicaID: "m-1", Engine: "fake", Tracer: tp.Tracer(telemetry.TracerName)})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ServeWithGRPC(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := oipgrpc.NewGRPCInferenceServiceClient(cc)
	const body = `{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`

	for _, tt := range []struct {
		api, traceparent string
		want             bool
	}{
		{"fasthttp", "00-" + traceID + "-" + parentID + "-01", true},
		{"fasthttp", "00-" + traceID + "-" + parentID + "-00", false},
		{"fasthttp", "", false},
		{"net/http", "00-" + traceID + "-" + parentID + "-01", true},
		{"grpc", "00-" + traceID + "-" + parentID + "-01", true},
		{"grpc", "00-" + traceID + "-" + parentID + "-00", false},
	} {
		t.Run(tt.api+" "+tt.traceparent, func(t *testing.T) {
			rec.Reset()
			switch tt.api {
			case "fasthttp":
				req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/v2/models/m/infer", strings.NewReader(body))
				if tt.traceparent != "" {
					req.Header.Set("traceparent", tt.traceparent)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", resp.StatusCode)
				}
			case "net/http":
				req, _ := http.NewRequest(http.MethodPost, "/v2/models/m/infer", strings.NewReader(body))
				req.Header.Set("traceparent", tt.traceparent)
				w := httptest.NewRecorder()
				s.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					t.Fatalf("status %d: %s", w.Code, w.Body)
				}
			case "grpc":
				ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", tt.traceparent)
				req := &oipgrpc.ModelInferRequest{ModelName: "m", Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 2},
					Contents: &oipgrpc.InferTensorContents{Fp32Contents: []float32{1, 2}}}}}
				if _, err := client.ModelInfer(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			spans := rec.Ended()
			if !tt.want {
				if len(spans) > 0 {
					t.Errorf("%d spans for a request not traced: %s", len(spans), spans[0].Name())
				}
				return
			}
			if len(spans) != 1 || spans[0].Name() != telemetry.SpanEngineCall {
				t.Fatalf("spans %v; want one %s", spans, telemetry.SpanEngineCall)
			}
			sp := spans[0]
			if sp.SpanContext().TraceID().String() != traceID || sp.Parent().SpanID().String() != parentID || !sp.Parent().IsRemote() {
				t.Errorf("engine call in trace %s under %v; want trace %s under the remote %s", sp.SpanContext().TraceID(), sp.Parent(), traceID, parentID)
			}
			got := map[string]string{}
			for _, kv := range sp.Attributes() {
				got[string(kv.Key)] = kv.Value.Emit()
			}
			if got["ebb.engine"] != "fake" || got["ebb.replica"] != "m-1" {
				t.Errorf("engine call attributes %v; want ebb.engine=fake, ebb.replica=m-1", got)
			}
		})
	}
}
