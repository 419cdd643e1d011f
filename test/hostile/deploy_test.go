package hostile

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Helpers for the tests of tenants and async inference: deployments of
// the echo engine, made slow on purpose, and the replicas they run.

// echoModel writes into dir an echo signature that burns workMs of CPU
// per prediction, and returns its path.
func echoModel(t *testing.T, dir string, workMs int) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("echo-%dms.json", workMs))
	sig := fmt.Sprintf(`{"inputs":[{"name":"input","datatype":"FP32","shape":[-1,-1]}],"workMs":%d}`, workMs)
	mustWrite(t, path, []byte(sig))
	return path
}

// echoSpec is a deployment of the echo model at path (none: no work),
// with one replica kept running, capped at maxConcurrency requests in
// flight (0: no cap).
func echoSpec(path string, maxConcurrency int32) serving.Spec {
	return serving.Spec{Engine: "echo", Model: path, Scaling: serving.Scaling{
		MinReplicas: 1, MaxReplicas: 1, MaxConcurrency: maxConcurrency, ScaleToZeroAfter: serving.D(10 * time.Minute)}}
}

// deploy creates deployment name with spec and waits until a replica is
// ready; its PID is noted for killLeftovers.
func (u *up) deploy(t *testing.T, name string, spec serving.Spec) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"name": name, "spec": spec})
	if err != nil {
		t.Fatal(err)
	}
	if code, out := u.do(t, req{path: "/v1/deployments", token: u.admin, body: string(body)}); code != http.StatusCreated {
		t.Fatalf("create deployment %s: %d %s", name, code, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, out := u.do(t, req{path: "/v1/deployments/" + name, token: u.admin})
		var d serving.Deployment
		if code == http.StatusOK && json.Unmarshal([]byte(out), &d) == nil && d.Status.ReadyReplicas >= 1 {
			for _, r := range d.Status.ReplicaStatuses {
				if r.State == serving.ReplicaReady && r.Endpoint != "" {
					u.noteReplica(t, r.Endpoint)
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment %s not ready within 60s: %d %s", name, code, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// replicaProc is a replica process: its PID and its start time, which
// tells it from a later process that reused the PID.
type replicaProc struct {
	pid   int
	start string
}

// noteReplica asks the replica at endpoint for its PID, for killLeftovers.
func (u *up) noteReplica(t *testing.T, endpoint string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hr, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/ebb/v1/replica", nil)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Logf("replica %s: no PID (%v): it is not watched for leftovers", endpoint, err)
		return
	}
	defer resp.Body.Close()
	var info struct {
		PID int `json:"pid"`
	}
	if json.NewDecoder(resp.Body).Decode(&info) != nil || info.PID <= 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.replicas = append(u.replicas, replicaProc{pid: info.PID, start: procStart(info.PID)})
}

// killLeftovers kills, by PID, the replicas noted that still run a few
// seconds after ebb up exited: ebb up stops its replicas when it stops,
// but one SIGKILLed and not started again leaves them behind.
func (u *up) killLeftovers(t *testing.T) {
	u.mu.Lock()
	reps := u.replicas
	u.mu.Unlock()
	for _, r := range reps {
		for i := 0; procStart(r.pid) == r.start && r.start != ""; i++ {
			if i == 30 {
				t.Logf("replica PID %d outlived ebb up: killing it", r.pid)
				_ = syscall.Kill(r.pid, syscall.SIGKILL)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// procStart returns the start time in /proc/PID/stat, "" when the process
// is gone (or there is no /proc).
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The fields after the command, which is in parentheses and may hold
	// spaces; starttime is field 22 of stat, the 20th of these.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}
