package e2e

import (
	"bytes"
	"context"
	"io"
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestBinaryTensorsThroughGateway sends binary tensor data (Triton's
// Inference-Header-Content-Length extension) and JSON with NaN and
// infinities through `ebb up`'s gateway to a batching replica: the gateway
// passes bodies and the header through unchanged, both ways. FP16, which
// gRPC carries raw only, crosses the gRPC gateway too.
func TestBinaryTensorsThroughGateway(t *testing.T) {
	grpcAddr := freeAddr(t)
	p := startEbb(t, freeAddr(t), t.TempDir(), "--grpc-addr", grpcAddr)
	name := "binary-echo"
	spec := serving.Spec{Engine: "echo", Scaling: serving.Scaling{MinReplicas: 0, MaxReplicas: 1},
		Batching: &serving.Batching{MaxBatchSize: 64, MaxQueueDelay: serving.D(2 * time.Millisecond)}}
	if code := p.do(http.MethodPost, "/v1/deployments", serving.Deployment{Name: name, Spec: spec}, nil); code != http.StatusCreated {
		t.Fatalf("create deployment: %d", code)
	}
	t.Cleanup(func() { p.do(http.MethodDelete, "/v1/deployments/"+name, nil, nil) })

	rows := 1000
	x := make([]float32, 4*rows)
	for i := range x {
		x[i] = float32(i) * 0.25
	}
	x[0], x[1], x[2] = float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))
	in := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{int64(rows), 4}, Data: x}}
	for _, binary := range []bool{true, false} {
		req := oip.InferRequest{}
		if binary {
			req.Parameters = map[string]any{oip.ParamBinaryDataOutput: true}
		}
		body, jsonLen, err := oip.RequestBody(req, in, binary)
		if err != nil {
			t.Fatal(err)
		}
		hreq, err := http.NewRequest(http.MethodPost, p.base+"/v2/models/"+name+"/infer", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if binary {
			hreq.Header.Set(oip.HeaderInferenceHeaderLength, strconv.Itoa(jsonLen))
			hreq.Header.Set("Content-Type", "application/octet-stream")
		}
		resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		rb, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("binary %v: infer = %d %s (%v)", binary, resp.StatusCode, rb[:min(len(rb), 500)], err)
		}
		n := len(rb)
		if h := resp.Header.Get(oip.HeaderInferenceHeaderLength); h != "" {
			n, _ = strconv.Atoi(h)
		}
		if binary != (n < len(rb)) {
			t.Errorf("binary %v: response JSON %d of %d bytes", binary, n, len(rb))
		}
		if binary && len(rb)-n != 4*len(x) {
			t.Errorf("binary part of %d bytes, want %d", len(rb)-n, 4*len(x))
		}
		got, err := oip.ParseResponse(rb, n)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(in, got.Outputs, cmpopts.EquateNaNs()); diff != "" {
			t.Errorf("binary %v (-want +got):\n%s", binary, diff)
		}
	}

	half := make([]oip.Float16, len(x))
	for i, v := range x {
		half[i] = oip.Float16From(v)
	}
	in16 := []oip.Tensor{{Name: "input", Datatype: oip.FP16, Shape: []int64{int64(rows), 4}, Data: half}}
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	req := &oipgrpc.ModelInferRequest{ModelName: name}
	if err := oipgrpc.SetInputs(req, in16, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := oipgrpc.NewGRPCInferenceServiceClient(cc).ModelInfer(ctx, req)
	if err != nil {
		t.Fatalf("gRPC FP16: %v", err)
	}
	got, err := oipgrpc.OutputTensors(resp)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in16, got); diff != "" {
		t.Errorf("gRPC FP16 (-want +got):\n%s", diff)
	}
}
