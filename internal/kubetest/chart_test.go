package kubetest_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/ebbtest"
	"github.com/ebb-ml/ebb/internal/kubetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestInstallChart installs the Helm chart as it ships (SQLite registry on
// a persistent volume) and checks that its operator and two gateways run
// from the rendered args and env, that the gateway Service answers, that
// the admin API goes through it to the operator, and that the Service
// follows the operator to its replacement pod.
func TestInstallChart(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	c.CreateNodes(t, 2, kubetest.NodeSpec{Prefix: "chart"})
	began := time.Now()
	rel := kubetest.InstallChart(t, c, ns, map[string]any{
		"registry": map[string]any{"type": "sqlite", "sqlite": map[string]any{"persistence": map[string]any{"enabled": true}}},
	})
	t.Logf("chart installed and ready in %v", time.Since(began).Round(time.Millisecond))
	dumpOnFailure(t, c, ns)
	token := adminToken(t, c, ns)

	ops, gws := running(rel.Pods(t, "operator")), running(rel.Pods(t, "gateway"))
	if len(ops) != 1 || len(gws) != 2 {
		t.Fatalf("%d operator and %d gateway pods ready; want 1 and 2", len(ops), len(gws))
	}
	operatorAddr := strings.TrimPrefix(rel.OperatorURL(), "http://")

	t.Run("OperatorRunsTheChartsArgs", func(t *testing.T) {
		op := ops[0]
		p := chartProcess(t, c, op)
		dataDir := filepath.Join(c.Dir, "volumes", "pvc", ns, rel.Operator+"-data")
		wantArgs(t, p, "operator", "--addr="+op.Status.PodIP+":8090", "--namespace="+ns,
			"--leader-elect=true", "--leader-election-id="+rel.Operator, "--data-dir="+dataDir)
		wantEnv(t, p, "POD_NAME="+op.Name, "POD_NAMESPACE="+ns)
		if entries, err := os.ReadDir(dataDir); err != nil || len(entries) == 0 {
			t.Errorf("the operator wrote nothing in its claim's directory %s (%v)", dataDir, err)
		}
		kubeconfig := envValue(p, "KUBECONFIG")
		if b, err := os.ReadFile(kubeconfig); err != nil || !strings.Contains(string(b), "token: ") {
			t.Errorf("KUBECONFIG %s holds no service-account token (%v)", kubeconfig, err)
		}
	})
	t.Run("GatewaysRunTheChartsArgs", func(t *testing.T) {
		for _, gw := range gws {
			p := chartProcess(t, c, gw)
			wantArgs(t, p, "gateway", "--addr="+gw.Status.PodIP+":8080", "--grpc-addr="+gw.Status.PodIP+":8081",
				"--operator-url=http://"+operatorAddr, "--namespace="+ns, "--endpoints-from=pods")
			wantEnv(t, p, "POD_NAME="+gw.Name, "POD_NAMESPACE="+ns)
			// The token Secret is mounted: --token-file names its file.
			var file string
			for _, a := range p.Argv {
				if v, ok := strings.CutPrefix(a, "--token-file="); ok {
					file = v
				}
			}
			if b, err := os.ReadFile(file); err != nil || !strings.HasPrefix(string(b), "ebb_") {
				t.Errorf("the gateway's --token-file=%q does not hold the token of its Secret: %q, %v", file, b, err)
			}
		}
	})

	gateway := rel.GatewayURL()
	if code, body := do(t, token, http.MethodGet, gateway+"/v2/health/ready", ""); code != http.StatusOK {
		t.Fatalf("GET %s/v2/health/ready = %d %s", gateway, code, body)
	}
	if code, body := do(t, token, http.MethodPost, gateway+"/v1/deployments", deploymentJSON("first")); code != http.StatusCreated {
		t.Fatalf("POST /v1/deployments through the gateway Service = %d %s", code, body)
	}
	wantModelDeployment(t, c, ns, "first")

	// Delete the operator pod: its Deployment's replacement takes the
	// lease, turns ready, and the same Service address reaches it.
	cs := c.Clientset().CoreV1().Pods(ns)
	if err := cs.Delete(context.Background(), ops[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var next corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, p := range running(rel.Pods(t, "operator")) {
			if p.UID != ops[0].UID {
				next = p
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no new operator pod ready after deleting %s: %v", ops[0].Name, err)
	}
	t.Logf("operator pod %s replaced by %s, ready after %v", ops[0].Name, next.Name, time.Since(killed).Round(time.Millisecond))
	if got := strings.TrimPrefix(rel.OperatorURL(), "http://"); got != operatorAddr {
		t.Errorf("the operator Service moved from %s to %s", operatorAddr, got)
	}
	// A connection the gateway kept to the old operator may fail once;
	// clients retry the gateway's 503.
	var code int
	var body string
	err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		code, body = do(t, token, http.MethodGet, gateway+"/v1/deployments/first", "")
		return code == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("GET /v1/deployments/first through the gateway after the operator moved = %d %s", code, body)
	}
	if code, body := do(t, token, http.MethodPost, gateway+"/v1/deployments", deploymentJSON("second")); code != http.StatusCreated {
		t.Fatalf("POST /v1/deployments after the operator moved = %d %s", code, body)
	}
	wantModelDeployment(t, c, ns, "second")
	p := chartProcess(t, c, next)
	wantArgs(t, p, "--addr="+next.Status.PodIP+":8090")
}

// TestInstallChartStandbyTakesOver runs two operators (leader election,
// short leases): only the leader is Ready, so the operator Service reaches
// it; killed at once (SIGKILL, as a node failure would), the standby takes
// the lease, turns Ready, and the Service follows it.
func TestInstallChartStandbyTakesOver(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	c.CreateNodes(t, 1, kubetest.NodeSpec{Prefix: "standby"})
	rel := kubetest.InstallChart(t, c, ns, map[string]any{
		"operator": map[string]any{"replicas": 2, "extraArgs": []string{"--lease-duration=3s", "--renew-deadline=2s", "--retry-period=250ms"}},
		"gateway":  map[string]any{"replicas": 1},
		"registry": map[string]any{"sqlite": map[string]any{"persistence": map[string]any{"enabled": false}}},
		// Two operators on SQLite in emptyDirs share no store, so no
		// tokens either (several operators need PostgreSQL for that):
		// this test is about the lease and the Service, not auth.
		"auth": map[string]any{"enabled": false},
	})
	dumpOnFailure(t, c, ns)
	token := "" // auth off
	all := rel.Pods(t, "operator")
	leaders := running(all)
	if len(all) != 2 || len(leaders) != 1 {
		t.Fatalf("%d operator pods, %d of them ready; want 2, one ready (the leader)", len(all), len(leaders))
	}
	gateway := rel.GatewayURL()
	if code, body := do(t, token, http.MethodPost, gateway+"/v1/deployments", deploymentJSON("before")); code != http.StatusCreated {
		t.Fatalf("POST /v1/deployments through the gateway = %d %s", code, body)
	}
	zero := int64(0)
	if err := c.Clientset().CoreV1().Pods(ns).Delete(context.Background(), leaders[0].Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var code int
	var body string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		code, body = do(t, token, http.MethodPost, gateway+"/v1/deployments", deploymentJSON("after"))
		return code == http.StatusCreated, nil
	})
	if err != nil {
		t.Fatalf("POST /v1/deployments after the leader died = %d %s", code, body)
	}
	wantModelDeployment(t, c, ns, "after")
	now := running(rel.Pods(t, "operator"))
	if len(now) != 1 || now[0].UID == leaders[0].UID {
		t.Errorf("after the leader died, ready operators: %d; want one new leader", len(now))
	} else {
		t.Logf("leader %s killed; %s leads and serves /v1 through the gateway after %v",
			leaders[0].Name, now[0].Name, time.Since(killed).Round(time.Millisecond))
	}
}

func deploymentJSON(name string) string {
	return `{"name":"` + name + `","spec":{"engine":"echo","scaling":{"minReplicas":0,"maxReplicas":1}}}`
}

// running returns the Ready, non-terminating pods.
func running(pods []corev1.Pod) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil && ready(&p) {
			out = append(out, p)
		}
	}
	return out
}

func process(t *testing.T, c *kubetest.Cluster, pod corev1.Pod) kubetest.Process {
	t.Helper()
	p, ok := c.PodProcess(pod.Namespace, pod.Name)
	if !ok {
		t.Fatalf("the fake kubelet ran nothing for pod %s", pod.Name)
	}
	return p
}

// chartProcess is process for a pod of the chart's operator or gateway,
// which run ebb-cluster, built beside ebb.
func chartProcess(t *testing.T, c *kubetest.Cluster, pod corev1.Pod) kubetest.Process {
	t.Helper()
	p := process(t, c, pod)
	if want := ebbtest.Cluster(c.EbbBinary()); p.Argv[0] != want {
		t.Errorf("pod %s ran %s; want the ebb-cluster binary %s", pod.Name, p.Argv[0], want)
	}
	return p
}

func wantArgs(t *testing.T, p kubetest.Process, args ...string) {
	t.Helper()
	for _, a := range args {
		if !slices.Contains(p.Argv[1:], a) {
			t.Errorf("argv lacks %q: %q", a, p.Argv[1:])
		}
	}
}

func wantEnv(t *testing.T, p kubetest.Process, kvs ...string) {
	t.Helper()
	for _, kv := range kvs {
		name, want, _ := strings.Cut(kv, "=")
		if got := envValue(p, name); got != want {
			t.Errorf("env %s = %q; want %q", name, got, want)
		}
	}
}

// envValue is the value a process sees: the last one set.
func envValue(p kubetest.Process, name string) string {
	v := ""
	for _, kv := range p.Env {
		if n, val, _ := strings.Cut(kv, "="); n == name {
			v = val
		}
	}
	return v
}

// adminToken reads the admin token the chart's operator keeps in the
// Secret <release>-admin-token.
func adminToken(t *testing.T, c *kubetest.Cluster, ns string) string {
	t.Helper()
	name := kubetest.ChartRelease + "-admin-token"
	var tok string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		sec, err := c.Clientset().CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		tok = strings.TrimSpace(string(sec.Data["token"]))
		return tok != "", nil
	})
	if err != nil {
		t.Fatalf("no admin token in Secret %s/%s: %v", ns, name, err)
	}
	return tok
}

func do(t *testing.T, token, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func wantModelDeployment(t *testing.T, c *kubetest.Cluster, ns, name string) {
	t.Helper()
	md := &unstructured.Unstructured{}
	md.SetGroupVersionKind(schema.GroupVersionKind{Group: "serving.ebb.dev", Version: "v1alpha1", Kind: "ModelDeployment"})
	if err := c.Client(t).Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, md); err != nil {
		t.Errorf("ModelDeployment %s/%s: %v", ns, name, err)
	}
}

// dumpOnFailure logs the pods' logs of the namespace when the test fails.
func dumpOnFailure(t *testing.T, c *kubetest.Cluster, ns string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		pods, err := c.Clientset().CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return
		}
		for _, p := range pods.Items {
			b, _ := os.ReadFile(c.PodLog(ns, p.Name))
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("pod %s (%s):\n%s", p.Name, p.Status.Phase, b)
		}
	})
}
