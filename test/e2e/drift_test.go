package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// driftColumns are the diabetes model's inputs, in its tensor's order.
var driftColumns = []string{"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}

// driftRows draws n rows of the diabetes inputs, each normal(0, 0.05) as
// the scaled training data roughly is, with column shifted moved by
// shift.
func driftRows(rng *rand.Rand, n, shifted int, shift float64) [][]float64 {
	rows := make([][]float64, n)
	for i := range rows {
		rows[i] = make([]float64, len(driftColumns))
		for j := range rows[i] {
			rows[i][j] = 0.05 * rng.NormFloat64()
		}
		rows[i][shifted] += shift
	}
	return rows
}

// runDrift is drift monitoring through the whole home: a version pushed
// with a reference profile of (synthetic) training data, a deployment
// that logs its predictions, traffic whose bmi moved by three standard
// deviations, and `ebb drift` names bmi, and no other input, as drifted.
// In a cluster the gateways count and the operator merges.
func runDrift(t *testing.T, h *home) {
	const name = "drifty"
	model, _ := filepath.Abs("../../examples/diabetes/model.json")
	rng := rand.New(rand.NewPCG(17, 1))
	var sample strings.Builder
	sample.WriteString(strings.Join(driftColumns, ",") + "\n")
	for _, r := range driftRows(rng, 3000, 0, 0) {
		for j, v := range r {
			if j > 0 {
				sample.WriteByte(',')
			}
			fmt.Fprintf(&sample, "%.5f", v)
		}
		sample.WriteByte('\n')
	}
	csv := filepath.Join(t.TempDir(), "train-sample.csv")
	if err := os.WriteFile(csv, []byte(sample.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := h.cli("models", "push", model, "--name", name, "--profile-data", csv); !strings.Contains(out, "reference profile from") {
		t.Fatalf("[%s] push with --profile-data shows no profile:\n%s", h.name, out)
	}
	if out := h.cli("models", "profile", name+":1"); !strings.Contains(out, "reference profile of 3000 rows") || !strings.Contains(out, "bmi") {
		t.Errorf("[%s] ebb models profile %s:1:\n%s", h.name, name, out)
	}
	d := serving.Deployment{Name: name, Spec: serving.Spec{Model: name + ":1",
		Scaling:       serving.Scaling{MinReplicas: 0, MaxReplicas: 1, ScaleToZeroAfter: serving.D(30 * time.Second)},
		PredictionLog: &serving.PredictionLog{Sample: 1}}}
	if code, body := h.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("[%s] create deployment %s: %d %s", h.name, name, code, body)
	}
	defer h.cli("delete", "deployment", name)
	h.waitKnown(name)

	// Batches of 50 rows, bmi (column 2) three standard deviations up,
	// until the monitor counted enough: it starts watching the deployment
	// a moment after its first logged prediction (in a cluster, after the
	// gateways polled the operator and shipped their windows). A
	// thousand rows keep the noise of the unshifted features' scores far
	// under the warn thresholds.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const bmi = 2
	var rep api.DriftReport
	deadline := time.Now().Add(2 * time.Minute)
	sent := 0
	for {
		for range 4 {
			driftBatch(ctx, t, h, name, fmt.Sprintf("drift-%d", sent), driftRows(rng, 50, bmi, 0.15))
			sent++
		}
		raw := h.cli("drift", name, "-o", "json")
		if err := json.Unmarshal([]byte(raw), &rep); err != nil {
			t.Fatalf("[%s] ebb drift %s -o json: %v\n%s", h.name, name, err, raw)
		}
		if len(rep.Versions) == 1 && rep.Versions[0].Rows >= 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("[%s] ebb drift %s counted under 1000 rows 2 minutes after %d requests of 50 rows:\n%s", h.name, name, sent, raw)
		}
		time.Sleep(500 * time.Millisecond)
	}
	v := rep.Versions[0]
	if v.Version != name+":1" || v.ProfileRows != 3000 {
		t.Errorf("[%s] drift of %s: version %s against a profile of %d rows; want %s:1 and 3000", h.name, name, v.Version, v.ProfileRows, name)
	}
	for _, f := range v.Features {
		want := monitor.StatusOK
		if f.Feature == "bmi" {
			want = monitor.StatusDrift
		}
		if f.Status != want {
			t.Errorf("[%s] drift of %s, feature %s: %s (PSI %.3f, KS %.3f over %d values); want %s", h.name, name, f.Feature, f.Status, f.PSI, f.KS, f.Count, want)
		}
	}
	table := h.cli("drift", name)
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) == 8 && (f[1] == "bmi" || f[1] == "age") {
			want := map[string]string{"bmi": "drift", "age": "ok"}[f[1]]
			if f[7] != want {
				t.Errorf("[%s] ebb drift %s: %s is %s; want %s\n%s", h.name, name, f[1], f[7], want, table)
			}
		}
	}
	t.Logf("[%s] drift of %s after %d requests: %d rows, bmi flagged\n%s", h.name, name, sent, v.Rows, table)
	runLabels(t, h, name)
}

// runLabels joins labels that arrived later with name's logged
// predictions (`ebb monitor labels`): ten rows of the first batch, whose
// ids are the request's id and the row's index, and one id no prediction
// has; the quality is scored for the version that answered.
func runLabels(t *testing.T, h *home, name string) {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("request_id,label\n")
	for i := range 10 {
		fmt.Fprintf(&csv, "drift-0:%d,150\n", i)
	}
	csv.WriteString("no-such-request:0,150\n")
	file := filepath.Join(t.TempDir(), "labels.csv")
	if err := os.WriteFile(file, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	raw := h.cli("monitor", "labels", name, "--file", file, "--task", "regression", "-o", "json")
	var q monitor.QualityReport
	if err := json.Unmarshal([]byte(raw), &q); err != nil {
		t.Fatalf("[%s] ebb monitor labels %s -o json: %v\n%s", h.name, name, err, raw)
	}
	if q.Labels != 11 || q.Unmatched != 1 || len(q.Versions) != 1 || q.Versions[0].Version != "1" ||
		q.Versions[0].Matched != 10 || q.Versions[0].MAE == nil {
		t.Errorf("[%s] ebb monitor labels %s: %s; want 11 labels, 1 unmatched, 10 matched on version 1 with an MAE", h.name, name, raw)
	}
}

// driftBatch sends one request of rows to deployment name.
func driftBatch(ctx context.Context, t *testing.T, h *home, name, id string, rows [][]float64) {
	t.Helper()
	var flat []float64
	for _, r := range rows {
		flat = append(flat, r...)
	}
	data, _ := json.Marshal(flat)
	body, _ := json.Marshal(oip.InferRequest{Inputs: []oip.RequestInput{{Name: "input", Shape: []int64{int64(len(rows)), int64(len(driftColumns))}, Datatype: oip.FP64, Data: data}}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+"/v2/models/"+name+"/infer", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", id)
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("[%s] request %s to %s: %v", h.name, id, name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		t.Fatalf("[%s] request %s to %s: %d %s", h.name, id, name, resp.StatusCode, b.String())
	}
}
