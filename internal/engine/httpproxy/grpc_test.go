package httpproxy_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/engine/httpproxy"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// runReplica runs a Replica with opts in process on a loopback port until
// the test ends and returns its base URL once it is ready.
func runReplica(t *testing.T, opts httpproxy.Options) string {
	t.Helper()
	ready := make(chan struct{})
	opts.OnReady = func(time.Time, time.Time) { close(ready) }
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r, err := httpproxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-ran:
		t.Fatalf("replica stopped before it was ready: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("replica not ready within 20s")
	}
	return "http://" + ln.Addr().String()
}

// grpcClient dials base (http://host:port) as the gateway dials replicas:
// cleartext HTTP/2, the secret in the metadata.
func grpcClient(t *testing.T, base string) oipgrpc.GRPCInferenceServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return oipgrpc.NewGRPCInferenceServiceClient(cc)
}

func withSecret(ctx context.Context, secret string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, replica.SecretHeader, secret)
}

// echoUpstream serves ebb's echo model over REST as name, and returns its URL.
func echoUpstream(t *testing.T, name string) string {
	t.Helper()
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New(name, m, server.Options{}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestGRPCAndRenamingOverEbbServer fronts ebb's own REST server, which
// knows the model as "up-echo", with a replica of deployment "echo-http":
// gRPC calls are answered by translation to REST, and REST calls reach the
// model under its upstream name and answer with the deployment's.
func TestGRPCAndRenamingOverEbbServer(t *testing.T) {
	base := runReplica(t, httpproxy.Options{Upstream: echoUpstream(t, "up-echo"), Deployment: "echo-http", UpstreamModel: "up-echo", Secret: "s3cret"})
	c := grpcClient(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sctx := withSecret(ctx, "s3cret")

	if live, err := c.ServerLive(ctx, &oipgrpc.ServerLiveRequest{}); err != nil || !live.GetLive() {
		t.Errorf("ServerLive without the secret = %v, %v; want live (health checks need none)", live, err)
	}
	req := &oipgrpc.ModelInferRequest{ModelName: "echo-http", Id: "q1"}
	in := oip.Tensor{Name: "input", Datatype: oip.FP32, Shape: []int64{1, 3}, Data: []float32{1, 2.5, -3}}
	if err := oipgrpc.SetInputs(req, []oip.Tensor{in}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ModelInfer(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ModelInfer without the secret = %v; want Unauthenticated", err)
	}
	for _, raw := range []bool{false, true} {
		if err := oipgrpc.SetInputs(req, []oip.Tensor{in}, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := c.ModelInfer(sctx, req)
		if err != nil {
			t.Fatalf("ModelInfer (raw %v): %v", raw, err)
		}
		if resp.GetModelName() != "echo-http" || resp.GetId() != "q1" {
			t.Errorf("answer names model %q id %q; want echo-http q1", resp.GetModelName(), resp.GetId())
		}
		if got := len(resp.GetRawOutputContents()) > 0; got != raw {
			t.Errorf("raw outputs %v for raw inputs %v; want them alike", got, raw)
		}
		out, err := oipgrpc.OutputTensors(resp)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]oip.Tensor{in}, out); diff != "" {
			t.Errorf("echoed tensors (raw %v) (-want +got):\n%s", raw, diff)
		}
	}

	meta, err := c.ModelMetadata(sctx, &oipgrpc.ModelMetadataRequest{Name: "echo-http"})
	if err != nil || meta.GetName() != "echo-http" || meta.GetPlatform() != "ebb_echo" || len(meta.GetInputs()) != 1 {
		t.Errorf("ModelMetadata = %v, %v; want the echo model's, named echo-http", meta, err)
	}
	if mr, err := c.ModelReady(sctx, &oipgrpc.ModelReadyRequest{Name: "echo-http"}); err != nil || !mr.GetReady() {
		t.Errorf("ModelReady = %v, %v; want ready", mr, err)
	}

	// Errors: another model; a request the server behind refuses, with
	// its own message.
	other := &oipgrpc.ModelInferRequest{ModelName: "other", Inputs: req.Inputs, RawInputContents: req.RawInputContents}
	if _, err := c.ModelInfer(sctx, other); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `this replica serves "echo-http"`) {
		t.Errorf("ModelInfer of another model = %v; want NotFound", err)
	}
	bad := &oipgrpc.ModelInferRequest{ModelName: "echo-http"}
	if err := oipgrpc.SetInputs(bad, []oip.Tensor{{Name: "nope", Datatype: oip.FP32, Shape: []int64{1, 1}, Data: []float32{1}}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ModelInfer(sctx, bad); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "nope") || !strings.Contains(err.Error(), "status 400") {
		t.Errorf("ModelInfer with an unknown input = %v; want InvalidArgument with the server's message naming it", err)
	}

	// REST: the path carries the upstream's name, the answers the
	// deployment's.
	status, got := callWith(t, "s3cret", "POST", base+"/v2/models/echo-http/infer", echoRequest)
	if status != 200 || got["model_name"] != "echo-http" {
		t.Errorf("REST infer = %d %v; want 200 with model_name echo-http", status, got)
	}
	status, got = callWith(t, "s3cret", "GET", base+"/v2/models/echo-http", "")
	if status != 200 || got["name"] != "echo-http" || got["platform"] != "ebb_echo" {
		t.Errorf("REST metadata = %d %v; want 200 named echo-http", status, got)
	}
	status, got = callWith(t, "s3cret", "GET", base+"/v2/models/echo-http/ready", "")
	if status != 200 || got["name"] != "echo-http" || got["ready"] != true {
		t.Errorf("REST model ready = %d %v; want 200 named echo-http", status, got)
	}
}

// recordingUpstream is an OIP v2 REST server that answers infer with the
// request's inputs as outputs, and records each infer request.
type recordingUpstream struct {
	mu     sync.Mutex
	paths  []string
	bodies []map[string]any
}

func (u *recordingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/v2/health/ready":
		return
	case strings.HasSuffix(r.URL.Path, "/infer"):
		b, _ := io.ReadAll(r.Body)
		var req map[string]any
		if err := json.Unmarshal(b, &req); err != nil {
			http.Error(w, `{"error":"not JSON"}`, http.StatusBadRequest)
			return
		}
		u.mu.Lock()
		u.paths = append(u.paths, r.URL.Path)
		u.bodies = append(u.bodies, req)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"model_name": "whatever", "model_version": "7", "id": req["id"],
			"parameters": map[string]any{"sequence_id": 42, "note": "hi"}, "outputs": req["inputs"]})
	default:
		http.NotFound(w, r)
	}
}

func (u *recordingUpstream) last() (string, map[string]any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.paths[len(u.paths)-1], u.bodies[len(u.bodies)-1]
}

// TestGRPCInferTranslation checks the REST request a gRPC call becomes, and
// the gRPC answer the REST answer becomes, for each datatype the gRPC
// messages carry.
func TestGRPCInferTranslation(t *testing.T) {
	up := &recordingUpstream{}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	base := runReplica(t, httpproxy.Options{Upstream: srv.URL, Deployment: "d", UpstreamModel: "resnet_50"})
	c := grpcClient(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tensors := []oip.Tensor{
		{Name: "b", Datatype: oip.BOOL, Shape: []int64{2}, Data: []bool{true, false}},
		{Name: "i32", Datatype: oip.INT32, Shape: []int64{1, 2}, Data: []int32{-7, 8}},
		{Name: "i64", Datatype: oip.INT64, Shape: []int64{2, 1}, Data: []int64{1 << 40, -1}},
		{Name: "f32", Datatype: oip.FP32, Shape: []int64{3}, Data: []float32{0.5, -1.25, 3}},
		{Name: "f64", Datatype: oip.FP64, Shape: []int64{1}, Data: []float64{2.75}},
		{Name: "s", Datatype: oip.BYTES, Shape: []int64{2}, Data: []string{"héllo", ""}},
		{Name: "scalar", Datatype: oip.FP32, Shape: []int64{}, Data: []float32{9}},
		{Name: "u8", Datatype: oip.UINT8, Shape: []int64{2}, Data: []uint8{0, 255}},
		{Name: "f16", Datatype: oip.FP16, Shape: []int64{2}, Data: []oip.Float16{oip.Float16From(1.5), oip.Float16From(-2)}},
	}
	req := &oipgrpc.ModelInferRequest{ModelName: "d", ModelVersion: "3", Id: "r-1",
		Parameters: map[string]*oipgrpc.InferParameter{"priority": {ParameterChoice: &oipgrpc.InferParameter_Int64Param{Int64Param: 2}}},
		Outputs:    []*oipgrpc.ModelInferRequest_InferRequestedOutputTensor{{Name: "f32"}}}
	if err := oipgrpc.SetInputs(req, tensors, true); err != nil {
		t.Fatal(err)
	}
	resp, err := c.ModelInfer(ctx, req)
	if err != nil {
		t.Fatalf("ModelInfer: %v", err)
	}
	path, sent := up.last()
	if path != "/v2/models/resnet_50/versions/3/infer" {
		t.Errorf("upstream path %q; want /v2/models/resnet_50/versions/3/infer", path)
	}
	wantSent := map[string]any{
		"id": "r-1", "parameters": map[string]any{"priority": 2.0}, "outputs": []any{map[string]any{"name": "f32"}},
		"inputs": []any{
			map[string]any{"name": "b", "datatype": "BOOL", "shape": []any{2.0}, "data": []any{true, false}},
			map[string]any{"name": "i32", "datatype": "INT32", "shape": []any{1.0, 2.0}, "data": []any{-7.0, 8.0}},
			map[string]any{"name": "i64", "datatype": "INT64", "shape": []any{2.0, 1.0}, "data": []any{float64(1 << 40), -1.0}},
			map[string]any{"name": "f32", "datatype": "FP32", "shape": []any{3.0}, "data": []any{0.5, -1.25, 3.0}},
			map[string]any{"name": "f64", "datatype": "FP64", "shape": []any{1.0}, "data": []any{2.75}},
			map[string]any{"name": "s", "datatype": "BYTES", "shape": []any{2.0}, "data": []any{"héllo", ""}},
			map[string]any{"name": "scalar", "datatype": "FP32", "shape": []any{}, "data": []any{9.0}},
			// Numbers, not base64 bytes; half floats as their values.
			map[string]any{"name": "u8", "datatype": "UINT8", "shape": []any{2.0}, "data": []any{0.0, 255.0}},
			map[string]any{"name": "f16", "datatype": "FP16", "shape": []any{2.0}, "data": []any{1.5, -2.0}},
		},
	}
	if diff := cmp.Diff(wantSent, sent); diff != "" {
		t.Errorf("REST request sent upstream (-want +got):\n%s", diff)
	}
	if resp.GetModelName() != "d" || resp.GetModelVersion() != "7" || resp.GetId() != "r-1" {
		t.Errorf("answer model %q version %q id %q; want d 7 r-1", resp.GetModelName(), resp.GetModelVersion(), resp.GetId())
	}
	if p := resp.GetParameters(); p["sequence_id"].GetInt64Param() != 42 || p["note"].GetStringParam() != "hi" {
		t.Errorf("answer parameters %v; want sequence_id 42 and note hi", p)
	}
	out, err := oipgrpc.OutputTensors(resp)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tensors, out, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("answered tensors (-want +got):\n%s", diff)
	}
}

// TestGRPCUpstreamErrors maps the REST statuses of the server behind to
// gRPC codes, keeping its message.
func TestGRPCUpstreamErrors(t *testing.T) {
	var mu sync.Mutex
	var answer struct {
		status int
		body   string
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/health/ready" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(answer.status)
		io.WriteString(w, answer.body)
	}))
	t.Cleanup(srv.Close)
	base := runReplica(t, httpproxy.Options{Upstream: srv.URL, Deployment: "d"})
	c := grpcClient(t, base)
	req := &oipgrpc.ModelInferRequest{ModelName: "d"}
	if err := oipgrpc.SetInputs(req, []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{1}, Data: []float32{1}}}, false); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		status int
		body   string
		code   codes.Code
		msg    string
	}{
		{400, `{"error":"input x: bad shape"}`, codes.InvalidArgument, "input x: bad shape"},
		{404, `{"error":"model d not found"}`, codes.NotFound, "model d not found"},
		{413, `{"error":"too big"}`, codes.ResourceExhausted, "too big"},
		{503, `overloaded`, codes.Unavailable, "overloaded"},
		{500, `{"error":"CUDA error: out of memory"}`, codes.Internal, "CUDA error: out of memory"},
		{200, `{"outputs":[{"name":"y","datatype":"FP32","shape":[2],"data":[1]}]}`, codes.Internal, `cannot be read: decoding output "y"`},
		{200, `not json`, codes.Internal, "cannot be read: the response is not an infer response"},
	}
	for _, tt := range tests {
		mu.Lock()
		answer.status, answer.body = tt.status, tt.body
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.ModelInfer(ctx, req)
		cancel()
		if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("upstream %d %s: ModelInfer = %v; want %v containing %q", tt.status, tt.body, err, tt.code, tt.msg)
		}
	}
}
