package scenarios

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/kubetest"
)

func TestMain(m *testing.M) {
	// The scale test's pods run nothing: kwok alone makes them Ready.
	kubetest.MainWith(m, kubetest.Options{NoFakeKubelet: true})
}

// TestKubeScale runs the kube scenario on a kubetest control plane. It is
// off unless EBB_BENCH_KUBE=1 (it takes minutes);
// EBB_BENCH_KUBE_N=100 runs it with 100 nodes and deployments, and
// EBB_BENCH_KUBE_OUT=file.json writes the result.
//
//	EBB_BENCH_KUBE=1 go test ./bench/scenarios -run TestKubeScale -timeout 20m -v
func TestKubeScale(t *testing.T) {
	if os.Getenv("EBB_BENCH_KUBE") == "" {
		t.Skip("set EBB_BENCH_KUBE=1 to run the Kubernetes scale test (minutes)")
	}
	c := kubetest.Get(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	ebb := filepath.Join(work, "ebb")
	build := exec.Command("go", "build", "-o", ebb, "./cmd/ebb")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ebb: %v\n%s", err, out)
	}
	env := &harness.Env{Root: root, Work: work, Ebb: ebb, Out: os.Stderr}
	defer env.StopAll()
	s := KubeScale{Cluster: c}
	if n, err := strconv.Atoi(os.Getenv("EBB_BENCH_KUBE_N")); err == nil {
		s.Nodes, s.Deployments = n, n
	}
	res, err := s.Run(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("%s", b)
	if out := os.Getenv("EBB_BENCH_KUBE_OUT"); out != "" {
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range res.Goals {
		if !g.Met {
			t.Logf("goal NOT MET: %s: %s (%.1f %s) %s", g.Name, g.Target, g.Ebb, g.Unit, g.Detail)
		}
	}
}
