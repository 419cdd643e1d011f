package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// flakyModel is a python model whose artifact says how often it fails:
// every Nth request raises (N=0: never), so a canary of it fails a known
// share of its requests.
const flakyModel = `class Model:
    def load(self, path):
        self.every = int(open(path).read().strip() or "0")
        self.n = 0

    def predict(self, inputs):
        self.n += 1
        if self.every and self.n % self.every == 0:
            raise RuntimeError("injected failure")
        return {"output": inputs["input"]}
`

// TestCanaryUp runs progressive canaries through ebb up's gateway with real
// replicas (runCanary).
func TestCanaryUp(t *testing.T) {
	needNumpy(t)
	dir := canaryModels(t)
	p := startEbb(t, freeAddr(t), dir)
	runCanary(t, &home{t: t, name: "ebb up", base: p.base, token: p.token}, dir)
}

// TestCanaryCluster runs the same canaries with ModelDeployments, through
// the chart's gateways, judged by the operator from what they report.
func TestCanaryCluster(t *testing.T) {
	needNumpy(t)
	dir := canaryModels(t)
	h, _ := clusterHome(t)
	runCanary(t, h, dir)
}

func needNumpy(t *testing.T) {
	t.Helper()
	if exec.Command("/usr/bin/python3", "-c", "import numpy").Run() != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("/usr/bin/python3 cannot import numpy: apt-get install python3-numpy")
		}
		t.Skip("/usr/bin/python3 cannot import numpy")
	}
}

// canaryModels writes the flaky model's class and three artifacts: good
// (never fails), good2 (another good version) and bad (fails 1 in 5).
func canaryModels(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"flaky.py": flakyModel, "good.txt": "0", "good2.txt": "0", "bad.txt": "5"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runCanary: a canary failing 20% of its requests is rolled back at its
// first step with the reason recorded, a good one is promoted, and without
// traffic a rollout waits at its first step.
func runCanary(t *testing.T, h *home, dir string) {
	d := serving.Deployment{Name: "flaky", Spec: serving.Spec{Model: filepath.Join(dir, "good.txt"), Engine: "python",
		Python:  &serving.Python{Class: "flaky.py:Model"},
		Scaling: serving.Scaling{MinReplicas: 1, MaxReplicas: 1}}}
	if code, body := h.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("[%s] create: %d %s", h.name, code, body)
	}
	h.waitKnown("flaky")
	var served, failed atomic.Int64
	infer := func() {
		body := `{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`
		req, _ := http.NewRequest(http.MethodPost, h.base+"/v2/models/flaky/infer", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+h.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		resp.Body.Close()
		served.Add(1)
		if resp.StatusCode >= 500 {
			failed.Add(1)
		}
	}
	infer()
	h.waitStatus("flaky", 60*time.Second, "a ready replica", func(st serving.Status) bool { return st.ReadyReplicas == 1 })
	status := func() rollout.Status {
		var st rollout.Status
		if code, body := h.do(http.MethodGet, "/v1/deployments/flaky/rollout", nil, &st); code != http.StatusOK {
			t.Fatalf("rollout status: %d %s", code, body)
		}
		return st
	}
	waitPhase := func(what string, cond func(rollout.Status) bool) rollout.Status {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			st := status()
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not reached: %+v", what, st)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// done: the rollout ended and the deployment matches (a rollout stays
	// active until its last change to the deployment is made).
	done := func(st rollout.Status) bool { return st.Phase.Final() && !st.Active }
	start := func(to string, extra ...string) {
		t.Helper()
		args := append([]string{"rollout", "start", "flaky", "--to", filepath.Join(dir, to), "--interval", "3s", "--min-requests", "20"}, extra...)
		h.cli(args...)
	}

	// A canary failing 20% is rolled back at its first step, under load.
	stop := load(4, func(int) { infer() })
	start("bad.txt", "--steps", "25,100")
	if out, err := h.try("rollout", "start", "flaky", "--to", filepath.Join(dir, "good2.txt")); err == nil || !strings.Contains(out, "already active") {
		t.Errorf("a second rollout while one is active: %v\n%s; want a refusal (409)", err, out)
	}
	st := waitPhase("rolled back", done)
	if st.Phase != traffic.RolledBack || !strings.Contains(st.Reason, "error rate") || st.Weight != 0 {
		t.Fatalf("a canary failing 20%%: %s at %d%%: %s; want RolledBack naming the error rate", st.Phase, st.Weight, st.Reason)
	}
	if len(st.History) != 1 || st.History[0].Canary.Errors == 0 {
		t.Errorf("history = %+v; want the first step's measurements with the canary's errors", st.History)
	}
	waitSpec(h, "after the rollback, the primary alone", func(sp serving.Spec) bool {
		return sp.Traffic == nil && strings.HasSuffix(sp.Model, "good.txt")
	})
	if out := h.cli("describe", "deployment", "flaky"); !strings.Contains(out, "RolloutRolledBack") {
		t.Errorf("describe shows no rollback event:\n%s", out)
	}

	// A good canary goes through its steps and becomes the primary.
	// (Latency is not what this tests: two replicas on a loaded 2-CPU
	// machine can differ by more than the default 1.5× at the tail.)
	start("good2.txt", "--steps", "50,100", "--max-p99-ratio", "10")
	st = waitPhase("promoted", done)
	if st.Phase != traffic.Succeeded {
		t.Fatalf("a good canary: %s: %s; want Succeeded", st.Phase, st.Reason)
	}
	waitSpec(h, "after the promotion, the canary alone", func(sp serving.Spec) bool {
		return sp.Traffic == nil && strings.HasSuffix(sp.Model, "good2.txt")
	})
	sent := stop()
	t.Logf("under load: %d requests, %d failed (the bad canary's share)", sent, failed.Load())

	// Without traffic a rollout waits at its first step.
	start("good.txt")
	time.Sleep(8 * time.Second)
	st = status()
	if st.Phase != traffic.Progressing || st.Weight != 5 || !strings.Contains(st.Reason, "requests") {
		t.Errorf("without traffic: %s at %d%%: %s; want Progressing at 5%%, waiting for requests", st.Phase, st.Weight, st.Reason)
	}
	out := h.cli("rollout", "status", "flaky", "-o", "json")
	var js map[string]any
	if err := json.NewDecoder(bytes.NewReader([]byte(out))).Decode(&js); err != nil || js["phase"] != "Progressing" || js["weight"] != float64(5) {
		t.Errorf("rollout status -o json = %v (%v); want phase and weight", js, err)
	}
	// Pause and resume by hand, through the CLI, in either home.
	h.cli("rollout", "pause", "flaky")
	if st := status(); st.Phase != traffic.Paused {
		t.Errorf("[%s] after pause: %s", h.name, st.Phase)
	}
	h.cli("rollout", "resume", "flaky")
	if st := status(); st.Phase != traffic.Progressing || st.Weight != 5 {
		t.Errorf("[%s] after resume: %s at %d%%; want Progressing at 5%%", h.name, st.Phase, st.Weight)
	}
	h.cli("rollout", "abort", "flaky")
	if st := status(); st.Phase != traffic.Aborted {
		t.Errorf("after abort: %s", st.Phase)
	}
}

// waitSpec waits for deployment flaky's spec to meet cond: a cluster's API
// reads ModelDeployments from a cache that follows the API server's watch,
// a moment behind the write.
func waitSpec(h *home, what string, cond func(serving.Spec) bool) {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		d := h.deployment("flaky")
		if cond(d.Spec) {
			return
		}
		if time.Now().After(deadline) {
			h.t.Errorf("[%s] %s: not reached; the deployment serves %s with traffic %+v", h.name, what, d.Spec.Model, d.Spec.Traffic)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCanaryRestartUp kills ebb up in the middle of a rollout: the new
// ebb up, on the same data dir, resumes it from the store and promotes the
// canary.
func TestCanaryRestartUp(t *testing.T) {
	needNumpy(t)
	dir := canaryModels(t)
	addr := freeAddr(t)
	p := startEbb(t, addr, dir)
	h := &home{t: t, name: "ebb up", base: p.base, token: p.token}
	d := serving.Deployment{Name: "flaky", Spec: serving.Spec{Model: filepath.Join(dir, "good.txt"), Engine: "python",
		Python:  &serving.Python{Class: "flaky.py:Model"},
		Scaling: serving.Scaling{MinReplicas: 1, MaxReplicas: 1}}}
	if code, body := h.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	h.cli("rollout", "start", "flaky", "--to", filepath.Join(dir, "good2.txt"), "--steps", "20,50,100",
		"--interval", "2s", "--min-requests", "10", "--max-p99-ratio", "10")
	p.kill()

	p = startEbb(t, addr, dir)
	h.base, h.token = p.base, p.token
	var st rollout.Status
	if code, body := h.do(http.MethodGet, "/v1/deployments/flaky/rollout", nil, &st); code != http.StatusOK || st.Phase != traffic.Progressing || st.Weight != 20 {
		t.Fatalf("after the restart: %d %s; want the rollout still at 20%%", code, body)
	}
	stop := load(4, func(int) {
		req, _ := http.NewRequest(http.MethodPost, p.base+"/v2/models/flaky/infer",
			strings.NewReader(`{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+p.token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	defer stop()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if code, body := h.do(http.MethodGet, "/v1/deployments/flaky/rollout", nil, &st); code != http.StatusOK {
			t.Fatalf("rollout status: %d %s", code, body)
		}
		if st.Phase.Final() && !st.Active {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resumed rollout did not finish: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st.Phase != traffic.Succeeded || len(st.History) != 2 {
		t.Fatalf("the resumed rollout: %s after %d steps: %s; want Succeeded after 2", st.Phase, len(st.History), st.Reason)
	}
	waitSpec(h, "after the promotion, the canary alone", func(sp serving.Spec) bool {
		return sp.Traffic == nil && strings.HasSuffix(sp.Model, "good2.txt")
	})
}
