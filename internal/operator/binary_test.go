package operator_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/examples/diabetes"
	"github.com/ebb-ml/ebb/internal/ebbtest"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/sibling"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ebbProc is a command of an ebb binary started by a test.
type ebbProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// startEbb runs bin (the harness's ebb or ebb-cluster) with args, its
// output in a file under dir; it is killed when the test ends.
func startEbb(t *testing.T, bin, dir, name string, args ...string) *ebbProc {
	t.Helper()
	log := filepath.Join(dir, name+".log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &ebbProc{cmd: cmd, done: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("%s log:\n%s", name, tail(string(b), 4000))
		}
	})
	return p
}

// signal sends sig and waits up to 60s for the process to exit.
func (p *ebbProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("%v did not exit after %v", p.cmd.Args[:2], sig)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitOK(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "GET "+url, func() (bool, string) {
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// TestBinaries runs `ebb-cluster operator` and `ebb gateway` (which execs
// ebb-cluster in its place) as processes, as their Deployments would: a
// prediction through the gateway wakes a deployment at zero; the operator
// is killed (SIGKILL) in the middle of a scale-up and a new one finishes it
// without a duplicate pod; a stopped operator (SIGTERM) leaves the replica
// pods running.
func TestBinaries(t *testing.T) {
	e := newEnv(t)
	ebb := e.c.EbbBinary()
	if ebb == "" {
		t.Skip("no ebb binary (the cluster runs without the fake kubelet)")
	}
	cluster := ebbtest.Cluster(ebb)
	if !sibling.IsExecutable(cluster) {
		t.Fatalf("no ebb-cluster beside %s: build both with make build (or ebbtest.BuildAll)", ebb)
	}
	e.c.CreateNodes(t, 2, kubetest.NodeSpec{Prefix: "b-" + e.ns})
	dir := t.TempDir()
	model := filepath.Join(dir, "diabetes.json")
	if err := os.WriteFile(model, diabetes.Model, 0o644); err != nil {
		t.Fatal(err)
	}
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "diabetes", Namespace: e.ns}}
	md.Spec.Model = model
	md.Spec.Engine = "trees"
	md.Spec.Scaling = scaling()
	md.Spec.Scaling.ScaleToZeroAfter.Duration = time.Minute
	md.Spec.Scaling.MaxReplicas = 4
	e.create(t, md)
	census := e.watchPods(t, "diabetes")

	opAddr := freeAddr(t)
	// The operators' SQLite store in the test's directory, as on a PVC,
	// not in the host's /var/lib/ebb (the default), which outlives a run.
	operatorArgs := []string{"operator", "--kubeconfig", e.c.Kubeconfig, "--namespace", e.ns, "--addr", opAddr, "--auth=off",
		"--data-dir", filepath.Join(dir, "operator-data"),
		"--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "250ms", "--drain-timeout", "5s", "--log-level", "debug"}
	op := startEbb(t, cluster, dir, "operator-1", operatorArgs...)
	waitOK(t, "http://"+opAddr+"/readyz", 60*time.Second)
	gwAddr := freeAddr(t)
	startEbb(t, ebb, dir, "gateway", "gateway", "--kubeconfig", e.c.Kubeconfig, "--namespace", e.ns,
		"--addr", gwAddr, "--grpc-addr", "", "--operator-url", "http://"+opAddr, "--endpoints-from", "pods", "--name", "gw-1", "--auth=off")
	waitOK(t, "http://"+gwAddr+"/readyz", 60*time.Second)

	out := infer(t, "http://"+gwAddr, "diabetes")
	if diff := cmp.Diff([]float32{154.34579467773438, 178.2222442626953}, out); diff != "" {
		t.Errorf("predictions (-want +got):\n%s", diff)
	}

	// Scale up, and kill the operator once the second pod exists.
	e.kubectl(t, "scale", "modeldeployment/diabetes", "--replicas=4")
	waitFor(t, 30*time.Second, "a second pod", func() (bool, string) {
		live, _, _ := census.counts()
		return live >= 2, fmt.Sprintf("%d live", live)
	})
	op.signal(t, syscall.SIGKILL)
	op = startEbb(t, cluster, dir, "operator-2", operatorArgs...)
	e.waitStatus(t, "diabetes", 90*time.Second, "4 ready after the crash", func(st v1alpha1.ModelDeploymentStatus) bool {
		return st.ReadyReplicas == 4 && st.Replicas == 4
	})
	time.Sleep(2 * time.Second)
	live, most, created := census.counts()
	t.Logf("pods: %d live, at most %d at once, %d created", live, most, created)
	if live != 4 || most > 4 {
		t.Errorf("%d live pods, at most %d at once; want 4 and never more", live, most)
	}
	// Requests spread over the replicas through the gateway.
	for range 8 {
		infer(t, "http://"+gwAddr, "diabetes")
	}

	// A clean stop leaves the replicas serving.
	op.signal(t, syscall.SIGTERM)
	if code := op.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("operator exited %d after SIGTERM", code)
	}
	time.Sleep(time.Second)
	if n := len(livePods(e.pods(t, "diabetes"))); n != 4 {
		t.Errorf("%d live pods after the operator stopped, want the 4 still running", n)
	}
	out = infer(t, "http://"+gwAddr, "diabetes")
	if len(out) != 2 {
		t.Errorf("prediction with the operator stopped: %v", out)
	}
}
