package mlponnx

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

func TestDeploymentSpec(t *testing.T) {
	data, err := os.ReadFile("deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d serving.Deployment
	if err := yaml.UnmarshalStrict(data, &d); err != nil {
		t.Fatalf("deployment.yaml: %v", err)
	}
	want := serving.Spec{
		Model:  "examples/mlp-onnx/model.onnx",
		Engine: "onnx",
		Batching: &serving.Batching{
			MaxBatchSize:        32,
			PreferredBatchSizes: []int{16},
			MaxQueueDelay:       serving.D(2 * time.Millisecond),
		},
		Scaling: serving.Scaling{
			MinReplicas:       0,
			MaxReplicas:       2,
			TargetConcurrency: 32,
			ScaleToZeroAfter:  serving.D(60 * time.Second),
		},
	}
	if d.Name != "mlp-onnx" {
		t.Errorf("name = %q, want mlp-onnx", d.Name)
	}
	if diff := cmp.Diff(want, d.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	d.Spec.Default()
	if err := d.Validate(); err != nil {
		t.Errorf("deployment.yaml does not validate: %v", err)
	}
}

func TestRequest(t *testing.T) {
	var req oip.InferRequest
	if err := json.Unmarshal(Request, &req); err != nil {
		t.Fatalf("request.json: %v", err)
	}
	if len(req.Inputs) != 1 {
		t.Fatalf("request.json has %d inputs, want 1", len(req.Inputs))
	}
	in, err := oip.Decode(req.Inputs[0])
	if err != nil {
		t.Fatalf("request.json: %v", err)
	}
	if diff := cmp.Diff([]int64{2, 64}, in.Shape); in.Name != "input" || in.Datatype != oip.FP32 || diff != "" {
		t.Errorf("request.json input is %q %s %v, want \"input\" FP32 [2 64]", in.Name, in.Datatype, in.Shape)
	}
}

func TestModelEmbeddedAndSmall(t *testing.T) {
	onDisk, err := os.ReadFile("model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if len(Model) == 0 || string(Model) != string(onDisk) {
		t.Errorf("Model holds %d bytes, model.onnx %d: want the same bytes", len(Model), len(onDisk))
	}
	if len(Model) > 1<<20 {
		t.Errorf("model.onnx is %d bytes; keep the example under 1 MiB", len(Model))
	}
}
