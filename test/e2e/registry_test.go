package e2e

import (
	"context"
	"math"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// ebbCLI runs the ebb CLI against p and returns its combined output.
func (p *ebbProc) cli(args ...string) string {
	p.t.Helper()
	cmd := exec.Command(ebbBin, append(args, "--server", p.base, "--token", p.token)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		p.t.Fatalf("ebb %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestAliasMoveRollsDeployment serves diabetes@champion under steady load,
// pushes version 2, moves the alias, and checks that every request
// succeeds and the answers switch to version 2's predictions.
func TestAliasMoveRollsDeployment(t *testing.T) {
	v1 := loadGoldenFile(t, "golden.json")
	v2 := loadGoldenFile(t, "golden-v2.json")
	// Rows whose predictions tell the versions apart.
	var rows []int
	for i := range v1.Rows {
		if math.Abs(v1.Predictions[i]-v2.Predictions[i]) > 0.01 {
			rows = append(rows, i)
		}
	}
	if len(rows) < 10 {
		t.Fatalf("only %d golden rows tell v1 from v2", len(rows))
	}

	p := startEbb(t, freeAddr(t), t.TempDir())
	model1, _ := filepath.Abs("../../examples/diabetes/model.json")
	model2, _ := filepath.Abs("../../examples/diabetes/model-v2.json")
	p.cli("models", "push", model1, "--name", "diabetes", "--alias", "champion")
	d := serving.Deployment{Name: "diabetes", Spec: serving.Spec{Model: "diabetes@champion",
		Scaling: serving.Scaling{MinReplicas: 1, MaxReplicas: 2}}}
	if code := p.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("create deployment: %d", code)
	}
	p.waitStatus("diabetes", 30*time.Second, "ready on version 1", func(st serving.Status) bool {
		return st.ReadyReplicas == 1 && st.ModelVersion == "diabetes:1"
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var failed, sawV1, sawV2, v1AfterSwitch atomic.Int32
	var switched atomic.Bool
	stop := load(4, func(i int) {
		k := rows[i%len(rows)]
		got, code, body, err := infer(ctx, p.base, v1.Rows[k])
		switch {
		case err != nil || code != http.StatusOK:
			failed.Add(1)
			t.Errorf("request failed during the rollout: %d %v %s", code, err, body)
		case near(got, v1.Predictions[k]):
			sawV1.Add(1)
			if switched.Load() {
				v1AfterSwitch.Add(1)
			}
		case near(got, v2.Predictions[k]):
			sawV2.Add(1)
		default:
			failed.Add(1)
			t.Errorf("row %d: prediction %v is neither v1's %v nor v2's %v", k, got, v1.Predictions[k], v2.Predictions[k])
		}
	})
	time.Sleep(300 * time.Millisecond)
	p.cli("models", "push", model2, "--name", "diabetes")
	p.cli("models", "alias", "diabetes", "champion", "2")
	p.waitStatus("diabetes", 30*time.Second, "every replica on version 2", func(st serving.Status) bool {
		if st.ModelVersion != "diabetes:2" || st.ReadyReplicas < 1 {
			return false
		}
		for _, r := range st.ReplicaStatuses {
			if r.ModelVersion != "diabetes:2" {
				return false
			}
		}
		return true
	})
	switched.Store(true)
	time.Sleep(500 * time.Millisecond)
	sent := stop()

	t.Logf("%d requests: %d answered by v1, %d by v2, %d failed", sent, sawV1.Load(), sawV2.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed during the alias move", failed.Load())
	}
	if sawV1.Load() == 0 || sawV2.Load() == 0 {
		t.Errorf("answers did not switch from v1 to v2 (v1 %d, v2 %d)", sawV1.Load(), sawV2.Load())
	}
	if n := v1AfterSwitch.Load(); n > 0 {
		t.Errorf("%d answers came from v1 after every replica served v2", n)
	}

	var hist struct {
		Items []struct {
			Model   string `json:"model"`
			Version int    `json:"version"`
		} `json:"items"`
	}
	if code := p.do(http.MethodGet, "/v1/deployments/diabetes/history", nil, &hist); code != http.StatusOK {
		t.Fatalf("history: %d", code)
	}
	var versions []int
	for _, h := range hist.Items {
		versions = append(versions, h.Version)
	}
	if len(versions) < 2 || versions[0] != 1 || versions[len(versions)-1] != 2 {
		t.Errorf("serving history versions %v; want 1 then 2", versions)
	}
}
