package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/serving"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestGRPCThroughEbbUp serves the diabetes model, scaled to zero, through
// ebb up's gRPC gateway with the generated KServe/Triton client: the first
// call is held through the cold start, and predictions sent as raw and as
// typed contents match xgboost's.
func TestGRPCThroughEbbUp(t *testing.T) {
	g := loadGolden(t)
	grpcAddr := freeAddr(t)
	p := startEbb(t, freeAddr(t), t.TempDir(), "--grpc-addr", grpcAddr)
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := oipgrpc.NewGRPCInferenceServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if r, err := c.ServerReady(ctx, &oipgrpc.ServerReadyRequest{}); err != nil || !r.GetReady() {
		t.Fatalf("ServerReady = %v, %v; want ready", r, err)
	}
	if _, err := c.ModelReady(ctx, &oipgrpc.ModelReadyRequest{Name: "diabetes"}); status.Code(err) != codes.NotFound {
		t.Fatalf("ModelReady before the deployment exists: %v; want NotFound", err)
	}
	d := diabetesSpec(t, serving.Scaling{MinReplicas: 0, MaxReplicas: 2, ScaleToZeroAfter: serving.D(time.Minute)})
	if code := p.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("create deployment: %d", code)
	}
	if r, err := c.ModelReady(ctx, &oipgrpc.ModelReadyRequest{Name: "diabetes"}); err != nil || !r.GetReady() {
		t.Fatalf("ModelReady of the cold deployment = %v, %v; want ready (a call would start it)", r, err)
	}
	if st := p.deployment("diabetes").Status; st.Replicas != 0 {
		t.Fatalf("deployment has %d replicas before any call; want 0", st.Replicas)
	}

	var rows []float32
	for _, r := range g.Rows {
		for _, v := range r {
			rows = append(rows, float32(v))
		}
	}
	f32 := oip.Tensor{Name: "input", Datatype: oip.FP32, Shape: []int64{int64(len(g.Rows)), int64(len(g.Rows[0]))}, Data: rows}
	f64 := oip.Tensor{Name: "input", Datatype: oip.FP64, Shape: []int64{1, int64(len(g.Rows[0]))}, Data: g.Rows[0]}
	tests := []struct {
		name  string
		input oip.Tensor
		raw   bool
		want  []float64
	}{
		{"raw FP32, every row, from cold", f32, true, g.Predictions},
		{"typed FP64, one row", f64, false, g.Predictions[:1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &oipgrpc.ModelInferRequest{ModelName: "diabetes", Id: "e2e"}
			if err := oipgrpc.SetInputs(req, []oip.Tensor{tt.input}, tt.raw); err != nil {
				t.Fatal(err)
			}
			var hdr metadata.MD
			resp, err := c.ModelInfer(ctx, req, grpc.Header(&hdr))
			if err != nil {
				t.Fatalf("ModelInfer: %v", err)
			}
			if resp.GetId() != "e2e" || len(hdr.Get("ebb-replica")) != 1 {
				t.Errorf("response id %q, ebb-replica %v; want e2e and one replica", resp.GetId(), hdr.Get("ebb-replica"))
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
			if len(got) != len(tt.want) {
				t.Fatalf("%d predictions; want %d", len(got), len(tt.want))
			}
			for i, want := range tt.want {
				if !near(float64(got[i]), want) {
					t.Errorf("row %d: predicted %v, xgboost says %v", i, got[i], want)
				}
			}
		})
	}

	if st := p.deployment("diabetes").Status; st.Replicas < 1 {
		t.Errorf("deployment has %d replicas after the calls; want the cold start to have made one", st.Replicas)
	}
	meta, err := c.ModelMetadata(ctx, &oipgrpc.ModelMetadataRequest{Name: "diabetes"})
	if err != nil || len(meta.GetInputs()) != 1 || meta.GetInputs()[0].GetName() != "input" {
		t.Errorf("ModelMetadata = %v, %v; want the diabetes model's input", meta, err)
	}
	p.stop()
}
