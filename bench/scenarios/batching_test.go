package scenarios

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/oip"
)

func TestParseWrk95(t *testing.T) {
	out := "Running 2s test\n  Non-2xx or 3xx responses: 3\nWRK95 {\"requests\":100,\"durationUs\":2000000,\"p50Us\":10,\"p90Us\":20,\"p95Us\":25,\"p99Us\":40}\n"
	got, err := parseWrk95(out)
	if err != nil {
		t.Fatal(err)
	}
	if got.Requests != 100 || got.P95Us != 25 || got.P99Us != 40 || got.Non2xx != 3 || got.RPS() != 50 {
		t.Errorf("parseWrk95 = %+v; want 100 requests, p95 25, p99 40, 3 non-2xx, 50 req/s", got)
	}
	if _, err := parseWrk95("no summary here"); err == nil {
		t.Error("parseWrk95 without a summary succeeded")
	}
}

func TestMLPBody(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	body, err := mlpBody(&harness.Env{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	var req oip.InferRequest
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("request body %s: %v", body, err)
	}
	in, err := oip.Decode(req.Inputs[0])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{1, 64}, in.Shape); in.Name != "input" || diff != "" {
		t.Errorf("request input %q shape %v; want \"input\" [1 64]", in.Name, in.Shape)
	}
	if _, err := mlpBody(&harness.Env{Root: t.TempDir()}); err == nil {
		t.Error("mlpBody without the example's golden file succeeded")
	}
}

func TestExampleModelsExist(t *testing.T) {
	for _, m := range batchingModels {
		if m.goal {
			continue
		}
		if _, err := os.Stat(filepath.Join("../../examples/mlp-onnx", m.file)); err != nil {
			t.Errorf("batching model %q: %v", m.label, err)
		}
	}
}

// TestEngineCost checks that engineCost loads and runs both models and
// returns one positive cost per row for each call size asked; it logs the
// costs and asserts nothing about how fast they are.
func TestEngineCost(t *testing.T) {
	if err := onnx.Available(""); err != nil {
		t.Skipf("skipping: %v", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range batchingModels {
		if m.goal {
			continue // generated; TestMLPONNX runs it
		}
		t.Run(m.file, func(t *testing.T) {
			path := filepath.Join(root, "examples", "mlp-onnx", m.file)
			c, err := engineCost(context.Background(), path, 1, 32)
			if err != nil {
				t.Fatal(err)
			}
			if len(c) != 2 || c[0] <= 0 || c[1] <= 0 {
				t.Fatalf("engineCost = %v, want two positive costs", c)
			}
			t.Logf("%s: %.2f µs/row at 1 row, %.2f µs/row at 32 rows", m.file, c[0], c[1])
		})
	}
}
