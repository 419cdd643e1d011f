package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestUpLimitsReachReplicas: ebb up gives its replicas its limits, so
// --max-request-elements set on ebb up is what a replica enforces. The
// diabetes model takes 10 features a row: with a limit of 15 one row is
// served and two rows are refused with 413 by the replica, through the
// gateway.
func TestUpLimitsReachReplicas(t *testing.T) {
	addr, dataDir := freeAddr(t), t.TempDir()
	p := startEbb(t, addr, dataDir, "--grpc-addr", "", "--max-request-elements", "15", "--write-timeout", "3m")
	d := diabetesSpec(t, serving.Scaling{MinReplicas: 0, MaxReplicas: 1, ScaleToZeroAfter: serving.D(time.Minute)})
	if code := p.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	g := loadGolden(t)
	if got, code, body, err := infer(t.Context(), p.base, g.Rows[0]); err != nil || code != http.StatusOK || !near(got, g.Predictions[0]) {
		t.Fatalf("one row (10 elements): %v %d %s", err, code, body)
	}

	rows := append(append([]float64{}, g.Rows[0]...), g.Rows[1]...)
	req := oip.InferRequest{Inputs: []oip.RequestInput{{Name: "input", Shape: []int64{2, int64(len(g.Rows[0]))}, Datatype: oip.FP64}}}
	req.Inputs[0].Data, _ = json.Marshal(rows)
	body, _ := json.Marshal(req)
	resp, err := http.Post(p.base+"/v2/models/diabetes/infer", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "limit of 15") {
		t.Fatalf("two rows (20 elements) with --max-request-elements 15: %d %s; want 413 naming the limit", resp.StatusCode, b)
	}
}
