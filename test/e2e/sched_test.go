package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// TestReplicasRunSchedBatch checks that `ebb up` runs its replicas under
// SCHED_BATCH, every thread of them (--replica-sched-batch, on by default
// on Linux), and under the default policy with the flag off.
func TestReplicasRunSchedBatch(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SCHED_BATCH is Linux's")
	}
	for _, c := range []struct {
		name   string
		flags  []string
		policy string
	}{
		{"default", nil, "3"}, // SCHED_BATCH
		{"off", []string{"--replica-sched-batch=false"}, "0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, data := freeAddr(t), t.TempDir()
			p := startEbb(t, addr, data, c.flags...)
			d := serving.Deployment{Name: "echo", Spec: serving.Spec{Engine: "echo", Scaling: serving.Scaling{MinReplicas: 1, MaxReplicas: 1}}}
			if code := admin(t, p, data, http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
				t.Fatalf("create deployment: %d", code)
			}
			st := waitFor(t, p, data, "echo", 60*time.Second, "a ready replica", func(st serving.Status) bool {
				return st.ReadyReplicas == 1 && len(st.ReplicaStatuses) == 1
			})
			pid, err := replicaPID(t.Context(), st.ReplicaStatuses[0].Endpoint)
			if err != nil {
				t.Fatal(err)
			}
			tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "sched"))
			if err != nil || len(tasks) < 2 {
				t.Fatalf("threads of replica %d: %v, %v", pid, tasks, err)
			}
			for _, f := range tasks {
				if got := schedPolicy(t, f); got != c.policy {
					t.Errorf("%s: policy %s; want %s", f, got, c.policy)
				}
			}
		})
	}
}

// schedPolicy reads the policy line of a /proc/.../sched file.
func schedPolicy(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if name, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(name) == "policy" {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("%s has no policy line", path)
	return ""
}
