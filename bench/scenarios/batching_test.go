package scenarios

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/bench/harness"
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

func TestMLPRequest(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	model, body, err := mlpRequest(&harness.Env{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(model); err != nil {
		t.Errorf("model %s: %v", model, err)
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
}
