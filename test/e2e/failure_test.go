package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/serving"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// manifestFile writes a ModelDeployment manifest for `ebb deploy -f`.
func manifestFile(t *testing.T, name, model string, minReplicas int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".yaml")
	doc := "apiVersion: serving.ebb.dev/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: " + name +
		"\nspec:\n  model: " + model + "\n  scaling:\n    minReplicas: " + strconv.Itoa(minReplicas) + "\n    maxReplicas: 1\n"
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUnresolvableRefUp: in ebb up, a deployment whose model ref stops
// resolving at run time fails with a clear status.failure. The registry
// lets an alias be deleted while a deployment follows it (it refuses to
// delete a version in use, not an alias), so that is the realistic way:
// deploy diabetes@champion (a ModelDeployment manifest, through `ebb
// deploy -f`), delete the alias. The running replica keeps serving and the
// failure says so; after a restart nothing ever resolved, so requests fail
// fast with the same words; setting the alias again heals it. A ref that
// does not exist at create time is refused then, with a 4xx.
func TestUnresolvableRefUp(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	p := startEbb(t, addr, dir)
	h := &home{t: t, name: "ebb up", base: p.base, token: p.token}
	g := loadGolden(t)
	model, _ := filepath.Abs("../../examples/diabetes/model.json")
	h.cli("models", "push", model, "--name", "diabetes", "--alias", "champion")

	// Known at create: refused, nothing stored.
	if out, err := h.try("deploy", "-f", manifestFile(t, "nope", "nope@champion", 0)); err == nil || !strings.Contains(out, "nope@champion is not in the registry") {
		t.Errorf("deploy of nope@champion = %v:\n%s\nwant it refused at create", err, out)
	}
	if code, _ := h.do(http.MethodGet, "/v1/deployments/nope", nil, nil); code != http.StatusNotFound {
		t.Errorf("GET the refused deployment: %d, want 404", code)
	}

	if out := h.cli("deploy", "-f", manifestFile(t, "diabetes", "diabetes@champion", 1)); !strings.Contains(out, "deployment/diabetes created") {
		t.Fatalf("deploy printed %q", out)
	}
	h.waitStatus("diabetes", 30*time.Second, "ready on diabetes:1", func(st serving.Status) bool {
		return st.ReadyReplicas == 1 && st.ModelVersion == "diabetes:1"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The alias goes while the deployment serves.
	h.cli("models", "alias", "diabetes", "champion", "--delete")
	st := h.waitStatus("diabetes", 30*time.Second, "status.failure", func(st serving.Status) bool { return st.Failure != "" })
	t.Logf("status.failure after the alias was deleted: %s", st.Failure)
	for _, w := range []string{"model diabetes@champion does not resolve", `has no alias "champion"`,
		"ebb models alias diabetes champion VERSION", "those running keep serving diabetes:1"} {
		if !strings.Contains(st.Failure, w) {
			t.Errorf("status.failure %q lacks %q", st.Failure, w)
		}
	}
	if got, code, body := h.inferRow(ctx, "/v2/models/diabetes/infer", g.Rows[0]); code != http.StatusOK || !near(got, g.Predictions[0]) {
		t.Errorf("request while the running replica still serves: %d %s", code, body)
	}
	desc := h.cli("describe", "deployment", "diabetes")
	for _, w := range []string{"Failure:", "does not resolve", "ResolveFailed"} {
		if !strings.Contains(desc, w) {
			t.Errorf("describe lacks %q:\n%s", w, desc)
		}
	}

	// Restarted, nothing has resolved: the deployment is failed, nothing
	// starts, and requests fail fast with the reason.
	p.stop()
	p = startEbb(t, addr, dir)
	h.token = p.token
	st = h.waitStatus("diabetes", 30*time.Second, "status.failure after a restart", func(st serving.Status) bool { return st.Failure != "" })
	if !strings.Contains(st.Failure, `has no alias "champion"`) || strings.Contains(st.Failure, "keep serving") || st.Replicas != 0 {
		t.Errorf("after a restart: failure %q with %d replicas; want the alias named, nothing serving or started", st.Failure, st.Replicas)
	}
	start := time.Now()
	if _, code, body := h.inferRow(ctx, "/v2/models/diabetes/infer", g.Rows[0]); code != http.StatusServiceUnavailable || !strings.Contains(body, "does not resolve") {
		t.Errorf("request to the failed deployment: %d %s; want 503 saying the model does not resolve", code, body)
	} else if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the failed request took %s; want it to fail fast", took)
	}

	// The alias is set again: the deployment heals.
	h.cli("models", "alias", "diabetes", "champion", "1")
	h.waitStatus("diabetes", 30*time.Second, "ready, no failure", func(st serving.Status) bool { return st.ReadyReplicas == 1 && st.Failure == "" })
	if got, code, body := h.inferRow(ctx, "/v2/models/diabetes/infer", g.Rows[0]); code != http.StatusOK || !near(got, g.Predictions[0]) {
		t.Errorf("request after the alias came back: %d %s", code, body)
	}
}

// TestUnresolvableRefCluster: in a cluster, kubectl writes ModelDeployments
// straight to the API server, past the admin API's create-time check. One
// naming nope@champion fails with a clear status.failure on the object,
// shown by the CLI, and requests through the chart's gateway fail fast
// with it; no replica pod is created.
func TestUnresolvableRefCluster(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	chart := installVolumeChart(t, c, ns)
	h := &home{t: t, name: "cluster", base: "http://" + c.ServiceAddr(ns, chart.Gateway, 8080), token: clusterAdminToken(t, chart),
		replicas: func(deployment string) int {
			pods, err := c.Clientset().CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "serving.ebb.dev/deployment=" + deployment})
			if err != nil {
				t.Fatal(err)
			}
			return len(pods.Items)
		}}
	scheme, err := operator.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := c.NewClient(scheme)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "nope", Namespace: ns}}
	md.Spec.Model = "nope@champion"
	if err := cl.Create(ctx, md); err != nil {
		t.Fatalf("kubectl-style create: %v", err)
	}
	st := h.waitStatus("nope", 60*time.Second, "status.failure", func(st serving.Status) bool { return st.Failure != "" })
	t.Logf("status.failure of a kubectl-applied nope@champion: %s", st.Failure)
	for _, w := range []string{"model nope@champion does not resolve", `model nope has no alias "champion"`, "ebb models alias nope champion VERSION"} {
		if !strings.Contains(st.Failure, w) {
			t.Errorf("status.failure %q lacks %q", st.Failure, w)
		}
	}
	// The object itself carries it, for kubectl get -o yaml.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got v1alpha1.ModelDeployment
		if err := cl.Get(ctx, client.ObjectKeyFromObject(md), &got); err != nil {
			t.Fatal(err)
		}
		if got.Status.Failure == st.Failure {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ModelDeployment .status.failure = %q; want %q", got.Status.Failure, st.Failure)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if desc := h.cli("describe", "deployment", "nope"); !strings.Contains(desc, "does not resolve") {
		t.Errorf("describe lacks the failure:\n%s", desc)
	}
	h.waitKnown("nope")
	g := loadGolden(t)
	_, code, body := h.inferRow(ctx, "/v2/models/nope/infer", g.Rows[0])
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(body, "does not resolve") && time.Now().Before(deadline); {
		// A gateway learns the failure from its watch, a moment later.
		time.Sleep(200 * time.Millisecond)
		_, code, body = h.inferRow(ctx, "/v2/models/nope/infer", g.Rows[0])
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "does not resolve") {
		t.Errorf("request to nope: %d %s; want 503 saying the model does not resolve", code, body)
	}
	h.staysAtZero("nope", 2*time.Second, "a failed deployment")
}
