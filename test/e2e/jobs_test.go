package e2e

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestJobsUp runs batch jobs in `ebb up`: the example job
// (examples/jobs/diabetes-job.yaml) on replicas of its own, whose output
// must equal the model's predictions row for row; then a larger one,
// during which ebb up is killed with SIGKILL and started again: the job
// resumes from its checkpoints and writes every row exactly once.
func TestJobsUp(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	p := startEbb(t, addr, dir, "--grpc-addr", "")
	model, err := trees.Load("../../examples/diabetes/model.json")
	if err != nil {
		t.Fatal(err)
	}

	j := exampleJob(t, filepath.Join(dir, "diabetes-scores.csv"))
	if code := p.do(http.MethodPost, "/v1/jobs", j, nil); code != http.StatusCreated {
		t.Fatalf("POST /v1/jobs: %d", code)
	}
	got := waitJob(p, j.Name, 60*time.Second)
	if got.Status.Phase != serving.JobSucceeded || got.Status.RowsDone != 50 {
		t.Fatalf("job %s (%s), %d rows; want Succeeded, 50", got.Status.Phase, got.Status.Message, got.Status.RowsDone)
	}
	checkJobOutput(t, model, j.Spec.Input.URI, j.Spec.Output.URI)
	if code := p.do(http.MethodGet, "/v1/deployments/job-"+j.Name, nil, nil); code != http.StatusNotFound {
		t.Errorf("the job's own deployment after the job: %d; want 404 (deleted)", code)
	}
	deadline := time.Now().Add(15 * time.Second)
	for want := fmt.Sprintf(`ebb_job_rows_total{job=%q} 50`, j.Name); ; time.Sleep(200 * time.Millisecond) {
		m := string(get(t, p.base+"/metrics"))
		if strings.Contains(m, want) && strings.Contains(m, fmt.Sprintf(`ebb_job_phase{job=%q,phase="Succeeded"} 1`, j.Name)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics has no %s and Succeeded phase in 15s", want)
		}
	}

	// 200,000 rows in chunks of 5: long enough to kill ebb up in the
	// middle (20,000 were done before the kill once the parts log made
	// chunks cheap).
	big := exampleJob(t, filepath.Join(dir, "big-scores.csv"))
	big.Name, big.Spec.ChunkRows = "big", 5
	big.Spec.Input.URI = repeatPatients(t, j.Spec.Input.URI, dir, 4000)
	if code := p.do(http.MethodPost, "/v1/jobs", big, nil); code != http.StatusCreated {
		t.Fatalf("POST /v1/jobs: %d", code)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		var cur serving.Job
		p.do(http.MethodGet, "/v1/jobs/big", nil, &cur)
		if serving.JobFinished(cur.Status.Phase) {
			t.Fatalf("the job ended (%s: %s) before ebb up could be killed in its middle", cur.Status.Phase, cur.Status.Message)
		}
		if cur.Status.ChunksDone >= 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job did not reach 100 chunks in 60s: %+v", cur.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.kill()
	if _, err := os.Stat(big.Spec.Output.URI); !os.IsNotExist(err) {
		t.Fatalf("an output exists before the job finished: %v", err)
	}
	p = startEbb(t, addr, dir, "--grpc-addr", "")
	got = waitJob(p, "big", 180*time.Second)
	if got.Status.Phase != serving.JobSucceeded || got.Status.RowsDone != 200000 {
		t.Fatalf("resumed job %s (%s), %d rows; want Succeeded, 200000", got.Status.Phase, got.Status.Message, got.Status.RowsDone)
	}
	resumed := false
	for _, e := range got.Status.Events {
		resumed = resumed || strings.HasPrefix(e.Message, "resumed:")
	}
	if !resumed {
		t.Errorf("the job's events do not say it resumed: %+v", got.Status.Events)
	}
	checkJobOutput(t, model, big.Spec.Input.URI, big.Spec.Output.URI)
	if code := p.do(http.MethodGet, "/v1/deployments/job-big", nil, nil); code != http.StatusNotFound {
		t.Errorf("the job's own deployment after the job: %d; want 404 (deleted)", code)
	}
}

// exampleJob is examples/jobs/diabetes-job.yaml with absolute paths, its
// output at out, and a deadline an hour from now.
func exampleJob(t *testing.T, out string) serving.Job {
	t.Helper()
	b, err := os.ReadFile("../../examples/jobs/diabetes-job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var j serving.Job
	if err := yaml.UnmarshalStrict(b, &j); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	j.Spec.Input.URI = filepath.Join(root, j.Spec.Input.URI)
	j.Spec.Serving.Model = filepath.Join(root, j.Spec.Serving.Model)
	j.Spec.Output.URI = out
	j.Spec.Deadline = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	return j
}

// waitJob polls a job until it ends.
func waitJob(p *ebbProc, name string, timeout time.Duration) serving.Job {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var j serving.Job
		if code := p.do(http.MethodGet, "/v1/jobs/"+name, nil, &j); code != http.StatusOK {
			p.t.Fatalf("GET /v1/jobs/%s: %d", name, code)
		}
		if serving.JobFinished(j.Status.Phase) {
			return j
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("job %s not finished in %s: %+v", name, timeout, j.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// repeatPatients writes the patients of in n times over, each copy's ids
// suffixed with its number, and returns the file's path.
func repeatPatients(t *testing.T, in, dir string, n int) string {
	t.Helper()
	recs := readCSV(t, in)
	path := filepath.Join(dir, "patients.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	_ = w.Write(recs[0])
	for k := range n {
		for _, r := range recs[1:] {
			_ = w.Write(append([]string{fmt.Sprintf("%s-%d", r[0], k)}, r[1:]...))
		}
	}
	w.Flush()
	if err := f.Close(); err != nil || w.Error() != nil {
		t.Fatal(err, w.Error())
	}
	return path
}

// checkJobOutput checks a job's CSV output: a line per input row, in
// order, with the row's id and the model's prediction for it alone.
func checkJobOutput(t *testing.T, m *trees.Model, in, out string) {
	t.Helper()
	inRecs, outRecs := readCSV(t, in), readCSV(t, out)
	if len(outRecs) != len(inRecs) || strings.Join(outRecs[0], ",") != "patient,predict" {
		t.Fatalf("%s: %d lines, header %q; want %d and patient,predict", out, len(outRecs), outRecs[0], len(inRecs))
	}
	for i, r := range inRecs[1:] {
		row := make([]float32, len(r)-1)
		for k := range row {
			v, err := strconv.ParseFloat(r[k+1], 64)
			if err != nil {
				t.Fatal(err)
			}
			row[k] = float32(v)
		}
		p, err := m.Predict(context.Background(), []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, int64(len(row))}, Data: row}})
		if err != nil {
			t.Fatal(err)
		}
		want := p[0].Data.([]float32)[0]
		got, err := strconv.ParseFloat(outRecs[i+1][1], 32)
		if outRecs[i+1][0] != r[0] || err != nil || float32(got) != want {
			t.Fatalf("%s line %d: %q; want %s,%v (the model's prediction)", out, i+1, outRecs[i+1], r[0], want)
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
