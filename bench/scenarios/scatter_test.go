package scenarios

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

func TestScatterBody(t *testing.T) {
	body, err := scatterBody(10)
	if err != nil {
		t.Fatal(err)
	}
	var req oip.InferRequest
	if err := oip.ParseRequest(body, &req); err != nil {
		t.Fatal(err)
	}
	in, err := oip.Decode(req.Inputs[0])
	if err != nil {
		t.Fatal(err)
	}
	if in.Name != "input" || !slices.Equal(in.Shape, []int64{10, scatterInputWidth}) {
		t.Errorf("input %q %v; want \"input\" [10 %d]", in.Name, in.Shape, scatterInputWidth)
	}
}

func TestScatterSpec(t *testing.T) {
	d := serving.Deployment{Name: "mlp-scatter", Spec: scatterSpec("/m.onnx", 4, &serving.Scatter{SegmentRows: scatterSegmentRows})}
	d.Spec.Default()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if n, ok := d.Spec.Pinned(); !ok || n != 4 {
		t.Errorf("pinned = %d, %v; want 4", n, ok)
	}
	if env := serving.ProcessEnv(&d.Spec); env["GOMAXPROCS"] != "1" {
		t.Errorf("replica environment %v; want GOMAXPROCS=1", env)
	}
}

func TestScatterBound(t *testing.T) {
	tests := []struct {
		replicas, cpus int
		want           float64
	}{
		{4, 1, 1}, {4, 2, 2}, {4, 16, 4}, {4, 0, 1},
	}
	for _, tt := range tests {
		if got := scatterBound(tt.replicas, tt.cpus); got != tt.want {
			t.Errorf("scatterBound(%d, %d) = %v; want %v", tt.replicas, tt.cpus, got, tt.want)
		}
	}
	if scatterVerdict(2.5) != "goal MET" || scatterVerdict(2.49) != "goal NOT MET" {
		t.Error("scatterVerdict does not judge at 2.5×")
	}
}

// TestScatterModel runs the scenario's MLP on a few rows.
func TestScatterModel(t *testing.T) {
	if err := onnx.Available(""); err != nil {
		t.Skipf("skipping: %v", err)
	}
	path := filepath.Join(t.TempDir(), "mlp.onnx")
	if err := writeMLPONNX(path, scatterLayers, 3); err != nil {
		t.Fatal(err)
	}
	d, err := scatterEngineTime(context.Background(), path, 1000, 2)
	if err != nil || d <= 0 {
		t.Fatalf("scatterEngineTime = %v, %v", d, err)
	}
	t.Logf("1000 rows in %v with one thread", d)
}
