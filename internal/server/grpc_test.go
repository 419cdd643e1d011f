package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/server/servertest"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// serveGRPC runs s.ServeWithGRPC on a loopback listener until the test ends
// and returns a gRPC client and the REST base URL of the same port.
func serveGRPC(t *testing.T, s *Server) (oipgrpc.GRPCInferenceServiceClient, string) {
	t.Helper()
	c := servertest.Start(t, s)
	return c.GRPC, c.Base
}

func TestGRPCHealthAndMetadata(t *testing.T) {
	s := New("m", &fakeModel{width: 3, versions: []string{"1", "2"}}, Options{Version: "v9"})
	c, base := serveGRPC(t, s)
	ctx := context.Background()

	live, err := c.ServerLive(ctx, &oipgrpc.ServerLiveRequest{})
	if err != nil || !live.GetLive() {
		t.Errorf("ServerLive = %v, %v; want live", live, err)
	}
	ready, err := c.ServerReady(ctx, &oipgrpc.ServerReadyRequest{})
	if err != nil || !ready.GetReady() {
		t.Errorf("ServerReady = %v, %v; want ready", ready, err)
	}
	sm, err := c.ServerMetadata(ctx, &oipgrpc.ServerMetadataRequest{})
	if err != nil || sm.GetName() != "ebb" || sm.GetVersion() != "v9" {
		t.Errorf("ServerMetadata = %v, %v; want ebb v9", sm, err)
	}
	for _, v := range []string{"", "2"} {
		mr, err := c.ModelReady(ctx, &oipgrpc.ModelReadyRequest{Name: "m", Version: v})
		if err != nil || !mr.GetReady() {
			t.Errorf("ModelReady(m, %q) = %v, %v; want ready", v, mr, err)
		}
	}
	meta, err := c.ModelMetadata(ctx, &oipgrpc.ModelMetadataRequest{Name: "m"})
	if err != nil {
		t.Fatalf("ModelMetadata: %v", err)
	}
	want := &oipgrpc.ModelMetadataResponse{
		Name: "m", Versions: []string{"1", "2"}, Platform: "fake",
		Inputs: []*oipgrpc.ModelMetadataResponse_TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 3}}},
		Outputs: []*oipgrpc.ModelMetadataResponse_TensorMetadata{
			{Name: "score", Datatype: "FP32", Shape: []int64{-1}},
			{Name: "label", Datatype: "INT64", Shape: []int64{-1}},
		},
	}
	if !proto.Equal(want, meta) {
		t.Errorf("ModelMetadata = %v; want %v", meta, want)
	}

	notFound := []struct {
		name string
		call func() error
		want string
	}{
		{"ModelReady other model", func() error {
			_, err := c.ModelReady(ctx, &oipgrpc.ModelReadyRequest{Name: "other"})
			return err
		}, `model "other" not found: this replica serves "m"`},
		{"ModelMetadata unknown version", func() error {
			_, err := c.ModelMetadata(ctx, &oipgrpc.ModelMetadataRequest{Name: "m", Version: "3"})
			return err
		}, `has no version "3"`},
		{"ModelInfer other model", func() error {
			_, err := c.ModelInfer(ctx, &oipgrpc.ModelInferRequest{ModelName: "other"})
			return err
		}, `model "other" not found`},
	}
	for _, tt := range notFound {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != codes.NotFound || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Errorf("error = %v; want NotFound containing %q", err, tt.want)
			}
		})
	}

	// REST keeps working on the same port.
	resp, err := http.Get(base + "/v2/models/m/ready")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"ready":true`) {
		t.Errorf("REST ready on the gRPC port = %d %s; want 200 ready", resp.StatusCode, b)
	}
}

func TestGRPCInferEcho(t *testing.T) {
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := serveGRPC(t, New("echo", m, Options{ModelVersion: "echo:7"}))
	in := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{2, 2}, Data: []float32{1, 2.5, -3, float32(math.Inf(1))}}}
	for _, raw := range []bool{false, true} {
		t.Run(map[bool]string{false: "typed", true: "raw"}[raw], func(t *testing.T) {
			req := &oipgrpc.ModelInferRequest{ModelName: "echo", ModelVersion: "7", Id: "req-1"}
			if err := oipgrpc.SetInputs(req, in, raw); err != nil {
				t.Fatal(err)
			}
			resp, err := c.ModelInfer(context.Background(), req)
			if err != nil {
				t.Fatalf("ModelInfer: %v", err)
			}
			if resp.GetModelName() != "echo" || resp.GetModelVersion() != "7" || resp.GetId() != "req-1" {
				t.Errorf("response names model %q version %q id %q; want echo 7 req-1", resp.GetModelName(), resp.GetModelVersion(), resp.GetId())
			}
			if got := len(resp.GetRawOutputContents()) > 0; got != raw {
				t.Errorf("raw_output_contents set = %v; want %v (as the request)", got, raw)
			}
			out, err := oipgrpc.OutputTensors(resp)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(in, out); diff != "" {
				t.Errorf("echoed outputs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGRPCInferErrors(t *testing.T) {
	c, _ := serveGRPC(t, New("m", &fakeModel{width: 3}, Options{}))
	x := func(shape []int64, data []float32) *oipgrpc.ModelInferRequest_InferInputTensor {
		return &oipgrpc.ModelInferRequest_InferInputTensor{Name: "x", Datatype: "FP32", Shape: shape,
			Contents: &oipgrpc.InferTensorContents{Fp32Contents: data}}
	}
	tests := []struct {
		name string
		req  *oipgrpc.ModelInferRequest
		want string
	}{
		{"count does not match shape",
			&oipgrpc.ModelInferRequest{ModelName: "m", Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{x([]int64{2, 3}, []float32{1, 2, 3})}},
			`input "x": shape [2,3] holds 6 elements but contents.fp32_contents has 3`},
		{"raw size does not match shape",
			&oipgrpc.ModelInferRequest{ModelName: "m", Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 3}}},
				RawInputContents: [][]byte{make([]byte, 8)}},
			`raw_input_contents[0] holds 8 bytes but shape [1,3] of FP32 needs 12`},
		{"wrong width",
			&oipgrpc.ModelInferRequest{ModelName: "m", Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{x([]int64{1, 2}, []float32{1, 2})}},
			`input "x": shape [1,2] given, model expects [-1,3]`},
		{"unknown input",
			&oipgrpc.ModelInferRequest{ModelName: "m", Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{{Name: "y", Datatype: "FP32", Shape: []int64{0}}}},
			`unknown input "y"`},
		{"missing input",
			&oipgrpc.ModelInferRequest{ModelName: "m"},
			`missing input "x"`},
		{"unknown output",
			&oipgrpc.ModelInferRequest{ModelName: "m", Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{x([]int64{1, 3}, []float32{1, 2, 3})},
				Outputs: []*oipgrpc.ModelInferRequest_InferRequestedOutputTensor{{Name: "nope"}}},
			`unknown output "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.ModelInfer(context.Background(), tt.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Errorf("ModelInfer error = %v; want InvalidArgument containing %q", err, tt.want)
			}
		})
	}

	t.Run("requested output only", func(t *testing.T) {
		req := &oipgrpc.ModelInferRequest{ModelName: "m", Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{x([]int64{2, 3}, []float32{1, 2, 3, -4, -5, -6})},
			Outputs: []*oipgrpc.ModelInferRequest_InferRequestedOutputTensor{{Name: "label"}}}
		resp, err := c.ModelInfer(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		out, err := oipgrpc.OutputTensors(resp)
		if err != nil {
			t.Fatal(err)
		}
		want := []oip.Tensor{{Name: "label", Datatype: "INT64", Shape: []int64{2}, Data: []int64{1, 0}}}
		if diff := cmp.Diff(want, out); diff != "" {
			t.Errorf("outputs (-want +got):\n%s", diff)
		}
	})
}

// TestGRPCDiabetes serves the diabetes example with the trees engine and
// checks the golden predictions over gRPC, typed and raw.
func TestGRPCDiabetes(t *testing.T) {
	data, err := os.ReadFile(diabetesDir + "/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Inputs      [][]float64 `json:"inputs"`
		Predictions []float64   `json:"predictions"`
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden.Inputs) == 0 || len(golden.Inputs) != len(golden.Predictions) {
		t.Fatalf("golden.json has %d inputs and %d predictions", len(golden.Inputs), len(golden.Predictions))
	}
	m, err := trees.Load(diabetesDir + "/model.json")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := serveGRPC(t, New("diabetes", m, Options{}))
	var rows []float32
	for _, r := range golden.Inputs {
		for _, v := range r {
			rows = append(rows, float32(v))
		}
	}
	in := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{int64(len(golden.Inputs)), 10}, Data: rows}}
	for _, raw := range []bool{false, true} {
		t.Run(map[bool]string{false: "typed", true: "raw"}[raw], func(t *testing.T) {
			req := &oipgrpc.ModelInferRequest{ModelName: "diabetes"}
			if err := oipgrpc.SetInputs(req, in, raw); err != nil {
				t.Fatal(err)
			}
			resp, err := c.ModelInfer(context.Background(), req)
			if err != nil {
				t.Fatalf("ModelInfer: %v", err)
			}
			out, err := oipgrpc.OutputTensors(resp)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 1 || out[0].Name != "predict" {
				t.Fatalf("outputs %+v; want one named predict", out)
			}
			got, err := out[0].Float32s()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(golden.Predictions) {
				t.Fatalf("%d predictions; want %d", len(got), len(golden.Predictions))
			}
			for i, want := range golden.Predictions {
				if d := math.Abs(float64(got[i]) - want); d > 1e-6*math.Abs(want) && d > 1e-6 {
					t.Errorf("row %d: predicted %.9g, xgboost says %.9g", i, got[i], want)
				}
			}
		})
	}
}

// TestServeWithGRPCDrains cancels the serving context while a gRPC call is
// in the model: the call finishes, ServerReady turns false on a handler
// level, and ServeWithGRPC returns nil.
func TestServeWithGRPCDrains(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	base := &fakeModel{width: 1}
	slow := &fakeModel{width: 1, predict: func(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
		close(entered)
		<-release
		return base.Predict(ctx, in)
	}}
	s := New("m", slow, Options{DrainTimeout: 10 * time.Second})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ServeWithGRPC(ctx, ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := oipgrpc.NewGRPCInferenceServiceClient(cc)

	type result struct {
		resp *oipgrpc.ModelInferResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.ModelInfer(context.Background(), &oipgrpc.ModelInferRequest{ModelName: "m",
			Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 1},
				Contents: &oipgrpc.InferTensorContents{Fp32Contents: []float32{2}}}}})
		done <- result{resp, err}
	}()
	<-entered
	cancel()
	waitFor(t, "the server to report not ready", func() bool { return !s.Ready() })
	select {
	case err := <-served:
		t.Fatalf("ServeWithGRPC returned %v with a call in flight", err)
	default:
	}
	close(release)
	r := <-done
	if r.err != nil {
		t.Fatalf("in-flight call failed during the drain: %v", r.err)
	}
	if got := r.resp.GetOutputs()[0].GetContents().GetFp32Contents(); len(got) != 1 || got[0] != 2 {
		t.Errorf("in-flight call answered %v; want score 2", got)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeWithGRPC after the drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeWithGRPC did not return after the drain")
	}
}

// TestSplitterShortHTTPRequest sends an HTTP/1.0 request shorter than the
// HTTP/2 preface: the splitter must route it on its first differing byte,
// not wait for more.
func TestSplitterShortHTTPRequest(t *testing.T) {
	_, base := serveGRPC(t, New("m", &fakeModel{width: 1}, Options{}))
	addr := strings.TrimPrefix(base, "http://")
	// A connection that closes before sending anything must not disturb the
	// server.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const req = "GET /v2 HTTP/1.0\r\n\r\n" // 20 bytes < 24
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", req, err)
	}
	if !strings.HasPrefix(string(b), "HTTP/1.0 200") || !strings.Contains(string(b), `"name":"ebb"`) {
		t.Errorf("answer = %q; want 200 with the server metadata", b)
	}
}

// TestServeWithGRPCClosesSilentConnections checks that a connection that
// never sent a byte does not outlive the server.
func TestServeWithGRPCClosesSilentConnections(t *testing.T) {
	s := New("m", &fakeModel{width: 1}, Options{})
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ServeWithGRPC(ctx, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// An answered request proves the server accepted connections by now.
	if resp, err := http.Get("http://" + ln.Addr().String() + "/v2/health/live"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("ServeWithGRPC: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read on a silent connection after shutdown = %d, %v; want EOF (closed by the server)", n, err)
	}
}

// BenchmarkRESTOverTCP measures one-row REST infer requests over a real
// keep-alive connection, served by Serve (REST only) and by ServeWithGRPC
// (REST and gRPC on one port), to show what the connection split costs REST.
func BenchmarkRESTOverTCP(b *testing.B) {
	body := []byte(`{"id":"42","inputs":[{"name":"x","shape":[1,10],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,6.2,2.9,4.3,1.3,0.7,-1.25]}]}`)
	for _, mode := range []string{"Serve", "ServeWithGRPC"} {
		b.Run(mode, func(b *testing.B) {
			s := New("m", &fakeModel{width: 10}, Options{})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() {
				if mode == "Serve" {
					served <- s.Serve(ctx, ln)
				} else {
					served <- s.ServeWithGRPC(ctx, ln)
				}
			}()
			defer func() { cancel(); <-served }()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			url := "http://" + ln.Addr().String() + "/v2/models/m/infer"
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

// BenchmarkGRPCInferOneRow measures one-row gRPC infer calls over a real
// connection, for comparison with BenchmarkRESTOverTCP.
func BenchmarkGRPCInferOneRow(b *testing.B) {
	s := New("m", &fakeModel{width: 10}, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ServeWithGRPC(ctx, ln) }()
	defer func() { cancel(); <-served }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	c := oipgrpc.NewGRPCInferenceServiceClient(cc)
	req := &oipgrpc.ModelInferRequest{ModelName: "m", Id: "42", Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 10},
		Contents: &oipgrpc.InferTensorContents{Fp32Contents: []float32{5.1, 3.5, 1.4, 0.2, 6.2, 2.9, 4.3, 1.3, 0.7, -1.25}},
	}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.ModelInfer(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
