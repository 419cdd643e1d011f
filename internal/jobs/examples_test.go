package jobs

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// inProcess is a Predictor that runs a model in this process, as a
// replica would behind the gateway.
type inProcess struct{ m *trees.Model }

func (p inProcess) Infer(ctx context.Context, deployment string, msg Message) (Message, error) {
	req, inputs, err := replicaRequest(msg)
	if err != nil {
		return Message{}, err
	}
	outs, err := p.m.Predict(ctx, inputs)
	if err != nil {
		return Message{}, err
	}
	return replicaResponse(&req, deployment, outs, false)
}

func readJobYAML(t *testing.T, path string) serving.Job {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var j serving.Job
	if err := yaml.UnmarshalStrict(data, &j); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	j.Spec.Default()
	if err := j.Validate(time.Now()); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return j
}

func TestExampleJobsValid(t *testing.T) {
	for _, f := range []string{"diabetes-job.yaml", "diabetes-weekend.yaml"} {
		readJobYAML(t, filepath.Join("..", "..", "examples", "jobs", f))
	}
}

// TestRunDiabetes runs the example job, its 50 patients repeated to 20000
// rows, through the trees engine in process, and checks every output row
// against the same model's prediction for that row alone, and the first
// 50 against XGBoost's own (golden.json).
func TestRunDiabetes(t *testing.T) {
	const repeat = 400
	m, err := trees.Load(filepath.Join("..", "..", "examples", "diabetes", "model.json"))
	if err != nil {
		t.Fatal(err)
	}
	example := filepath.Join("..", "..", "examples", "jobs")
	src, err := os.ReadFile(filepath.Join(example, "diabetes.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(src)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "patients.csv")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	w.Write(recs[0])
	var rows [][]float32
	for k := range repeat {
		for _, r := range recs[1:] {
			row := make([]float32, 10)
			for i := range row {
				v, _ := strconv.ParseFloat(r[i+1], 64)
				row[i] = float32(v)
			}
			rows = append(rows, row)
			w.Write(append([]string{fmt.Sprintf("%s-%d", r[0], k)}, r[1:]...))
		}
	}
	w.Flush()
	f.Close()

	j := readJobYAML(t, filepath.Join(example, "diabetes-job.yaml"))
	out := filepath.Join(dir, "scores.csv")
	j.Spec.Input.URI, j.Spec.Output.URI, j.Spec.ChunkRows = in, out, 1000
	j.Spec.Deadline = time.Now().Add(time.Hour)
	got := runJob(t, openStore(t, dir), j, inProcess{m}, &fakeScaler{}, fastOptions())
	if got.Status.Phase != serving.JobSucceeded {
		t.Fatalf("status = %s (%s)", got.Status.Phase, got.Status.Message)
	}
	outRecs := readCSV(t, out)
	if len(outRecs) != len(rows)+1 || outRecs[0][0] != "patient" || outRecs[0][1] != "predict" {
		t.Fatalf("output has %d lines, header %q; want %d and patient,predict", len(outRecs), outRecs[0], len(rows)+1)
	}
	var golden struct {
		Predictions []float32 `json:"predictions"`
	}
	data, _ := os.ReadFile(filepath.Join("..", "..", "examples", "diabetes", "golden.json"))
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, row := range rows {
		p, err := m.Predict(ctx, []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, 10}, Data: row}})
		if err != nil {
			t.Fatal(err)
		}
		want := p[0].Data.([]float32)[0]
		v, err := strconv.ParseFloat(outRecs[i+1][1], 32)
		if err != nil || float32(v) != want {
			t.Fatalf("row %d: the job wrote %q; the model alone predicts %v", i, outRecs[i+1][1], want)
		}
		if i < len(golden.Predictions) {
			if d := float32(v) - golden.Predictions[i]; d > 1e-3 || d < -1e-3 {
				t.Errorf("row %d: %v; XGBoost predicted %v", i, v, golden.Predictions[i])
			}
		}
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
