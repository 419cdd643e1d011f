package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestHTTPEngineGRPCAndModelName deploys, through ebb up, an http-engine
// deployment in front of an OIP v2 server that speaks REST only and knows
// its model by another name (spec.upstreamModel): gRPC calls through the
// gateway are answered (they used to wait out their deadline), and answers
// name the deployment.
func TestHTTPEngineGRPCAndModelName(t *testing.T) {
	grpcAddr := freeAddr(t)
	p := startEbb(t, freeAddr(t), t.TempDir(), "--grpc-addr", grpcAddr)
	// ebb's echo replica stands in for Triton or MLServer; the http
	// engine reaches it over REST only.
	d := serving.Deployment{Name: "renamed", Spec: serving.Spec{Engine: "http", UpstreamModel: "echo-upstream",
		Command: []string{"sh", "-c", "exec " + ebbBin + " replica --engine echo --deployment echo-upstream --addr 127.0.0.1:$PORT"},
		Scaling: serving.Scaling{MinReplicas: 0, MaxReplicas: 1}}}
	if code := p.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("create deployment: %d", code)
	}
	code, body := post(t, p.base+"/v2/models/renamed/infer", `{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`)
	if code != http.StatusOK || !strings.Contains(body, `"model_name":"renamed"`) {
		t.Fatalf("REST infer = %d %s; want 200 naming the deployment", code, body)
	}

	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := oipgrpc.NewGRPCInferenceServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, 3}, Data: []float32{1, 2.5, -3}}}
	req := &oipgrpc.ModelInferRequest{ModelName: "renamed"}
	if err := oipgrpc.SetInputs(req, in, true); err != nil {
		t.Fatal(err)
	}
	resp, err := c.ModelInfer(ctx, req)
	if err != nil {
		t.Fatalf("gRPC infer through the http engine: %v", err)
	}
	out, err := oipgrpc.OutputTensors(resp)
	if err != nil || resp.GetModelName() != "renamed" {
		t.Fatalf("gRPC answer %v (%v); want outputs of model renamed", resp, err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("echoed tensors (-want +got):\n%s", diff)
	}
	meta, err := c.ModelMetadata(ctx, &oipgrpc.ModelMetadataRequest{Name: "renamed"})
	if err != nil || meta.GetName() != "renamed" || meta.GetPlatform() != "ebb_echo" {
		t.Errorf("gRPC metadata = %v, %v; want the echo model's, named renamed", meta, err)
	}
}
