package trees

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/oip"
)

const diabetesDir = "../../../examples/diabetes"

// TestDiabetesExample checks that the engine reproduces xgboost's
// predictions for the example's hold-out rows (examples/diabetes/train.py).
func TestDiabetesExample(t *testing.T) {
	checkGolden(t, diabetesDir, readGolden(t, diabetesDir+"/golden.json"))
}

// TestDiabetesRequest runs the example's request.json through the OIP
// decoding a server uses and checks the answer against golden.json.
func TestDiabetesRequest(t *testing.T) {
	data, err := os.ReadFile(diabetesDir + "/request.json")
	if err != nil {
		t.Fatal(err)
	}
	var req oip.InferRequest
	if err := json.Unmarshal(data, &req); err != nil {
		t.Fatal(err)
	}
	in, err := oip.Decode(req.Inputs[0])
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(diabetesDir + "/model.json")
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Predict(context.Background(), []oip.Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	g := readGolden(t, diabetesDir+"/golden.json")
	got := out[0].Data.([]float32)
	if diff := cmp.Diff([]int64{2}, out[0].Shape); diff != "" {
		t.Errorf("output shape (-want +got):\n%s", diff)
	}
	for i := range got {
		if !near(got[i], g.Predictions[i]) {
			t.Errorf("row %d: predicted %.9g, xgboost says %.9g", i, got[i], g.Predictions[i])
		}
	}
}
