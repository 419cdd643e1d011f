package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/artifact/artifacttest"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
	"github.com/minio/minio-go/v7"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// clusterHome installs the Helm chart into the test cluster, as a platform
// team would: two operators (leader election) with the registry in
// PostgreSQL and artifacts in S3, and two gateways; the operator and
// gateway run as pods on the fake kubelet with the args and env the
// rendered chart gives them. Replica pods share one node, so they share its
// artifact cache (hostPath).
func clusterHome(t *testing.T) (*home, *clusterRelease) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	c.CreateNodes(t, 1, kubetest.NodeSpec{})
	s3 := artifacttest.StartS3Server(t)
	dsn := pgtest.Start(t)
	cs := c.Clientset()
	ctx := context.Background()
	for name, data := range map[string]map[string]string{
		"ebb-registry": {"dsn": dsn},
		"ebb-s3":       {"AWS_ACCESS_KEY_ID": s3.AccessKey, "AWS_SECRET_ACCESS_KEY": s3.SecretKey},
	} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	chart := kubetest.InstallChart(t, c, ns, map[string]any{
		"operator": map[string]any{"replicas": 2, "extraArgs": []string{"--lease-duration=4s", "--renew-deadline=3s", "--retry-period=500ms"}},
		"gateway": map[string]any{"replicas": 2, "endpointsFrom": "pods",
			"predictionLog": map[string]any{"partAge": "1s"}, // uploaded to S3 a second after (predlog_test.go)
			"async":         map[string]any{"store": dsn}},   // the registry's database (async_home_test.go)
		"registry": map[string]any{"type": "postgres", "postgres": map[string]any{"existingSecret": "ebb-registry"}},
		"artifacts": map[string]any{
			"location": fmt.Sprintf("s3://%s/models", s3.Bucket),
			"s3":       map[string]any{"endpoint": s3.Endpoint, "existingSecret": "ebb-s3"},
		},
		"replicas": map[string]any{"artifactCache": map[string]any{"type": "hostPath"}},
	})
	h := &home{
		t:        t,
		name:     "cluster",
		base:     "http://" + c.ServiceAddr(ns, chart.Gateway, 8080),
		grpcAddr: c.ServiceAddr(ns, chart.Gateway, 8081),
		token:    clusterAdminToken(t, chart),
		replicas: func(deployment string) int {
			pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "serving.ebb.dev/deployment=" + deployment})
			if err != nil {
				t.Fatal(err)
			}
			return len(pods.Items)
		},
		predictions: predictionObjects(s3, "predictions/"),
	}
	return h, &clusterRelease{Release: chart, S3: s3}
}

// clusterAdminToken reads the admin token the operator keeps in the Secret
// its --admin-token-secret names, as a user does with kubectl get secret.
func clusterAdminToken(t *testing.T, rel *kubetest.Release) string {
	t.Helper()
	return clusterTokenSecret(t, rel, "--admin-token-secret=")
}

// clusterTokenSecret reads the token of the Secret that the operator flag
// flag ("--admin-token-secret=", "--gateway-token-secret=") names.
func clusterTokenSecret(t *testing.T, rel *kubetest.Release, flag string) string {
	t.Helper()
	var name string
	for _, o := range rel.Objects {
		if o.GetKind() != "Deployment" || o.GetName() != rel.Operator {
			continue
		}
		ctrs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range ctrs {
			args, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
			for _, a := range args {
				if v, ok := strings.CutPrefix(a, flag); ok {
					name = v
				}
			}
		}
	}
	if name == "" {
		t.Fatalf("the operator has no %s: is auth off in the chart?", flag)
	}
	cs := kubetest.Get(t).Clientset()
	deadline := time.Now().Add(60 * time.Second)
	for {
		sec, err := cs.CoreV1().Secrets(rel.Namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && len(sec.Data["token"]) > 0 {
			return strings.TrimSpace(string(sec.Data["token"]))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no token in Secret %s/%s: %v", rel.Namespace, name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// clusterRelease is the chart installed for a test, with its S3 server.
type clusterRelease struct {
	*kubetest.Release
	S3 *artifacttest.S3Server
}

// TestHomeCluster runs the scenario against the chart in a cluster, then
// applies deploy/examples as written and serves them.
func TestHomeCluster(t *testing.T) {
	h, rel := clusterHome(t)
	runHome(t, h)

	// The s3:// example reads s3://models/diabetes/model.json.
	model, err := os.ReadFile("../../examples/diabetes/model.json")
	if err != nil {
		t.Fatal(err)
	}
	mc, err := rel.S3.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := mc.MakeBucket(ctx, "models", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mc.PutObject(ctx, "models", "diabetes/model.json", bytes.NewReader(model), int64(len(model)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	scheme, err := operator.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kubetest.Get(t).NewClient(scheme)
	if err != nil {
		t.Fatal(err)
	}
	g1, g2 := loadGoldenFile(t, "golden.json"), loadGoldenFile(t, "golden-v2.json")
	for _, ex := range []struct {
		file, name string
		want       golden // the registry example follows champion, now version 2
	}{
		{"modeldeployment.yaml", "diabetes", g2},
		{"modeldeployment-s3.yaml", "diabetes-s3", g1},
	} {
		b, err := os.ReadFile(filepath.Join("../../deploy/examples", ex.file))
		if err != nil {
			t.Fatal(err)
		}
		var md v1alpha1.ModelDeployment
		if err := yaml.UnmarshalStrict(b, &md); err != nil {
			t.Fatalf("%s: %v", ex.file, err)
		}
		md.Namespace = rel.Namespace
		if err := cl.Create(ctx, &md); err != nil {
			t.Fatalf("apply %s: %v", ex.file, err)
		}
		// The gateways learn of a new ModelDeployment from their watch,
		// a moment after the apply (as kubectl users `kubectl wait`).
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		got, code, body := h.inferRow(rctx, "/v2/models/"+ex.name+"/infer", ex.want.Rows[0])
		for i := 0; code == http.StatusNotFound && i < 50; i++ {
			time.Sleep(100 * time.Millisecond)
			got, code, body = h.inferRow(rctx, "/v2/models/"+ex.name+"/infer", ex.want.Rows[0])
		}
		cancel()
		if code != http.StatusOK || !near(got, ex.want.Predictions[0]) {
			t.Errorf("%s as written: %d %s (prediction %v, want %v)", ex.file, code, body, got, ex.want.Predictions[0])
		}
	}
}

// TestLeaderKilledUnderLoad kills the leading operator (SIGKILL: a forced
// pod deletion) while a warm deployment serves steady load through the
// chart's gateways: no request fails, the standby takes over within the
// lease time, and no replica pod is duplicated.
func TestLeaderKilledUnderLoad(t *testing.T) {
	h, rel := clusterHome(t)
	c := kubetest.Get(t)
	cs := c.Clientset()
	ns := rel.Namespace
	g := loadGolden(t)
	d := serving.Deployment{Name: "warm", Spec: serving.Spec{Model: "diabetes@champion",
		Scaling: serving.Scaling{MinReplicas: 2, MaxReplicas: 2}}}
	model, _ := filepath.Abs("../../examples/diabetes/model.json")
	h.cli("models", "push", model, "--name", "diabetes", "--alias", "champion")
	if code, body := h.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("create deployment: %d %s", code, body)
	}
	h.waitStatus("warm", 60*time.Second, "two ready replicas", func(st serving.Status) bool { return st.ReadyReplicas == 2 })

	leader := readyPod(t, cs, ns, rel.OperatorSelector)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var failed atomic.Int32
	stop := load(4, func(i int) {
		k := i % len(g.Rows)
		got, code, body := h.inferRow(ctx, "/v2/models/warm/infer", g.Rows[k])
		if code != http.StatusOK || !near(got, g.Predictions[k]) {
			failed.Add(1)
			t.Errorf("request failed while the leader died: %d %s", code, body)
		}
	})
	time.Sleep(2 * time.Second)
	killed := time.Now()
	if err := cs.CoreV1().Pods(ns).Delete(ctx, leader, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	var next string
	for next == "" || next == leader {
		if time.Since(killed) > 60*time.Second {
			t.Fatalf("no new leader within 60s of killing %s", leader)
		}
		time.Sleep(100 * time.Millisecond)
		next, _ = tryReadyPod(cs, ns, rel.OperatorSelector)
		if n := h.replicas("warm"); n > 2 {
			t.Errorf("%d replica pods %s after killing the leader, want 2 (no duplicates)", n, time.Since(killed).Round(time.Millisecond))
		}
	}
	takeover := time.Since(killed)
	// The standby acquires the lease once it expires (4s after the last
	// renewal), at its next retry (0.5s), and is Ready at its next
	// readiness probe: allow that, with slack for a loaded CI machine.
	if limit := 15 * time.Second; takeover > limit {
		t.Errorf("the standby took over %s after the leader died; want within the lease time (4s) plus retry and probe, under %s", takeover.Round(time.Millisecond), limit)
	}
	// The new leader answers the admin API, and the deployment is still
	// served by the same two pods.
	h.waitStatus("warm", 30*time.Second, "two ready replicas under the new leader", func(st serving.Status) bool { return st.ReadyReplicas == 2 })
	time.Sleep(2 * time.Second)
	sent := stop()
	if n := h.replicas("warm"); n != 2 {
		t.Errorf("%d replica pods after the takeover, want 2 (no duplicates)", n)
	}
	t.Logf("leader %s killed under load: standby %s leads after %s (lease 4s); %d requests, %d failed",
		leader, next, takeover.Round(time.Millisecond), sent, failed.Load())
	figure(t, "takeover", takeover.Seconds(), "s")
	figure(t, "requests", float64(sent), "requests")
	figure(t, "failed", float64(failed.Load()), "requests")
}

// readyPod returns the one Ready, non-terminating pod matching selector.
func readyPod(t *testing.T, cs kubernetes.Interface, ns, selector string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		name, err := tryReadyPod(cs, ns, selector)
		if err == nil && name != "" {
			return name
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready pod for %s: %v", selector, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tryReadyPod(cs kubernetes.Interface, ns, selector string) (string, error) {
	pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return p.Name, nil
			}
		}
	}
	return "", nil
}

// TestClusterVolumeArtifacts runs the registry on SQLite (the chart's
// default, on a claim) with artifacts on a shared volume instead of S3:
// the operator writes pushed models to the claim, and replica pods mount
// it read-only and fetch through their node's cache.
func TestClusterVolumeArtifacts(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	chart := installVolumeChart(t, c, ns)
	h := &home{t: t, name: "cluster, volume", base: "http://" + c.ServiceAddr(ns, chart.Gateway, 8080), token: clusterAdminToken(t, chart)}
	model, _ := filepath.Abs("../../examples/diabetes/model.json")
	h.cli("models", "push", model, "--name", "diabetes", "--alias", "champion")
	d := serving.Deployment{Name: "diabetes", Spec: serving.Spec{Model: "diabetes@champion",
		Scaling: serving.Scaling{MinReplicas: 0, MaxReplicas: 1}}}
	if code, body := h.do(http.MethodPost, "/v1/deployments", d, nil); code != http.StatusCreated {
		t.Fatalf("create deployment: %d %s", code, body)
	}
	h.waitKnown("diabetes")
	g := loadGolden(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if got, code, body := h.inferRow(ctx, "/v2/models/diabetes/infer", g.Rows[0]); code != http.StatusOK || !near(got, g.Predictions[0]) {
		t.Fatalf("infer: %d %s (got %v want %v)", code, body, got, g.Predictions[0])
	}
	st := h.waitStatus("diabetes", 30*time.Second, "a ready replica", func(st serving.Status) bool { return st.ReadyReplicas == 1 })
	if p := artifactPhase(st); p == nil || p.Bytes == 0 {
		t.Errorf("no artifact_fetched phase: %s", phasesOf(st))
	}
	t.Logf("volume artifacts: %s", phasesOf(st))
}

// installVolumeChart installs the chart with its defaults but for artifacts
// on a shared volume (a ReadWriteMany claim "models") instead of S3, and
// gateways that find replicas from pods, on one node.
func installVolumeChart(t *testing.T, c *kubetest.Cluster, ns string) *kubetest.Release {
	t.Helper()
	c.CreateNodes(t, 1, kubetest.NodeSpec{})
	c.CreateClaim(t, ns, "models", corev1.ReadWriteMany)
	return kubetest.InstallChart(t, c, ns, map[string]any{
		"gateway": map[string]any{"endpointsFrom": "pods"},
		"artifacts": map[string]any{
			"location": "file:///var/lib/ebb/artifacts",
			"volume":   map[string]any{"claimName": "models"},
		},
	})
}
