package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ChartRelease is the release name InstallChart installs under: its
// objects are ebb-operator, ebb-gateway, ...
const ChartRelease = "ebb"

// chartTimeout bounds how long InstallChart waits for the Deployments.
const chartTimeout = 2 * time.Minute

// Release is ebb's Helm chart installed by InstallChart.
type Release struct {
	Name, Namespace string
	// Operator and Gateway name the Deployments (and Services) of the
	// operator and the gateways.
	Operator, Gateway string
	// OperatorSelector and GatewaySelector select their pods (a label
	// selector string, for ListOptions).
	OperatorSelector, GatewaySelector string
	// Objects are the rendered objects, as applied.
	Objects []*unstructured.Unstructured

	c *Cluster
}

// InstallChart renders deploy/helm/ebb with helm template (release
// ChartRelease, the given values over the chart's defaults), applies every
// object with server-side apply (CRDs first, each waited for; a
// PersistentVolume pre-bound to each claim, since nothing provisions
// volumes here), and waits until the Deployments' pods are Ready. The fake
// kubelet runs the operator and gateway pods from the rendered args and
// env (InstallChart marks them with ContainerAnnotation through the chart's
// podAnnotations); gateways default to gateway.endpointsFrom=pods, since
// the apiserver refuses loopback pod IPs in EndpointSlices. The cluster
// needs nodes (CreateNodes). Objects are deleted when the test ends (CRDs
// stay, shared by the binary's tests). It skips the test when helm is not
// built, like Get.
func InstallChart(t testing.TB, c *Cluster, namespace string, values map[string]any) *Release {
	t.Helper()
	helm := c.Bin("helm")
	if _, err := os.Stat(helm); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kubetest: %v", missingError{helm})
		}
		t.Skipf("kubetest: %v", missingError{helm})
	}
	if c.kubelet == nil {
		t.Fatal("kubetest: InstallChart needs the fake kubelet, and Options.NoFakeKubelet is set")
	}
	ctx := context.Background()
	nodes, err := c.clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) == 0 {
		t.Fatal("kubetest: InstallChart: the cluster has no nodes for the chart's pods; call CreateNodes first")
	}
	objs, err := c.renderChart(t, helm, namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	r := &Release{Name: ChartRelease, Namespace: namespace, Objects: objs, c: c}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		sel, _, _ := unstructured.NestedStringMap(o.Object, "spec", "selector", "matchLabels")
		switch o.GetLabels()["app.kubernetes.io/component"] {
		case "operator":
			r.Operator, r.OperatorSelector = o.GetName(), labels.SelectorFromSet(sel).String()
		case "gateway":
			r.Gateway, r.GatewaySelector = o.GetName(), labels.SelectorFromSet(sel).String()
		}
	}
	if r.Operator == "" || r.Gateway == "" {
		t.Fatalf("kubetest: the rendered chart has no operator or gateway Deployment (%d objects)", len(objs))
	}
	cl, err := c.NewClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	var created []client.Object
	t.Cleanup(func() {
		ctx := context.Background()
		for _, o := range slices.Backward(created) {
			if err := cl.Delete(ctx, o, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
				t.Logf("kubetest: delete %s %s: %v", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
			}
		}
	})
	if err := applyChart(ctx, cl, objs, &created); err != nil {
		t.Fatal(err)
	}
	r.WaitReady(t)
	return r
}

// WaitReady waits until the release's Deployments have all their pods
// updated and Ready (of leader-elected operators, only the leader turns
// ready: one Ready pod is enough), failing the test (with the pods' states
// and the ends of their logs) after two minutes.
func (r *Release) WaitReady(t testing.TB) {
	t.Helper()
	deps := r.c.clientset.AppsV1().Deployments(r.Namespace)
	var last string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, chartTimeout, true, func(ctx context.Context) (bool, error) {
		for _, name := range []string{r.Operator, r.Gateway} {
			d, err := deps.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				last = err.Error()
				return false, nil
			}
			if !deploymentReady(d, name == r.Operator && leaderElected(d)) {
				last = fmt.Sprintf("deployment %s: %d/%d ready, %d updated", name, d.Status.ReadyReplicas, replicasOf(d), d.Status.UpdatedReplicas)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("kubetest: release %s/%s not ready after %v: %s\n%s", r.Namespace, r.Name, chartTimeout, last, r.describePods())
	}
}

func replicasOf(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// deploymentReady reports whether d's pods are all updated and Ready, or,
// with oneLeader, all updated and one of them Ready.
func deploymentReady(d *appsv1.Deployment, oneLeader bool) bool {
	n := replicasOf(d)
	ready := d.Status.ReadyReplicas == n
	if oneLeader {
		ready = d.Status.ReadyReplicas >= min(n, 1)
	}
	return ready && d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == n && d.Status.Replicas == n
}

// leaderElected reports whether d's pods run `ebb operator` with leader
// election (the default).
func leaderElected(d *appsv1.Deployment) bool {
	for _, c := range d.Spec.Template.Spec.Containers {
		if slices.Contains(c.Args, "--leader-elect=false") {
			return false
		}
	}
	return true
}

// Pods returns the release's pods of one component ("operator",
// "gateway"), terminating ones included.
func (r *Release) Pods(t testing.TB, component string) []corev1.Pod {
	t.Helper()
	pods, err := r.c.clientset.CoreV1().Pods(r.Namespace).List(context.Background(), metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(map[string]string{
			"app.kubernetes.io/instance": r.Name, "app.kubernetes.io/component": component,
		}).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

// GatewayURL is the base URL of the gateway Service's http port, through
// the service proxy (ServiceAddr).
func (r *Release) GatewayURL() string { return "http://" + r.serviceAddr(r.Gateway, "http") }

// OperatorURL is the base URL of the operator Service (the leader's
// demand and admin API).
func (r *Release) OperatorURL() string { return "http://" + r.serviceAddr(r.Operator, "http") }

func (r *Release) serviceAddr(name, port string) string {
	for _, o := range r.Objects {
		if o.GetKind() != "Service" || o.GetName() != name {
			continue
		}
		ports, _, _ := unstructured.NestedSlice(o.Object, "spec", "ports")
		for _, p := range ports {
			m, _ := p.(map[string]any)
			if m["name"] == port {
				n, _ := m["port"].(int64)
				if f, ok := m["port"].(float64); ok {
					n = int64(f)
				}
				return r.c.ServiceAddr(r.Namespace, name, int(n))
			}
		}
	}
	panic(fmt.Sprintf("kubetest: release %s has no Service %s with a port %q", r.Name, name, port))
}

// describePods lists the release's pods with their container states and
// the end of each one's log, for failure messages.
func (r *Release) describePods() string {
	pods, err := r.c.clientset.CoreV1().Pods(r.Namespace).List(context.Background(), metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + r.Name,
	})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s on %q: phase %s, ready %v\n", p.Name, p.Spec.NodeName, p.Status.Phase, podReady(&p))
		for _, cond := range p.Status.Conditions {
			if cond.Status != corev1.ConditionTrue && cond.Message != "" {
				fmt.Fprintf(&b, "  condition %s: %s %s\n", cond.Type, cond.Reason, cond.Message)
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			st, _ := json.Marshal(cs.State)
			fmt.Fprintf(&b, "  container %s (restarts %d): %s\n", cs.Name, cs.RestartCount, st)
		}
		if tail := logTail(r.c.PodLog(p.Namespace, p.Name), 15, 3000); tail != "" {
			fmt.Fprintf(&b, "  log:\n    %s\n", strings.ReplaceAll(tail, "\n", "\n    "))
		}
	}
	return b.String()
}

// renderChart runs helm template on the chart with values (merged over
// InstallChart's defaults) and decodes the objects.
func (c *Cluster) renderChart(t testing.TB, helm, namespace string, values map[string]any) ([]*unstructured.Unstructured, error) {
	chart, err := chartDir()
	if err != nil {
		return nil, err
	}
	merged := map[string]any{"gateway": map[string]any{"endpointsFrom": "pods"}}
	mergeValues(merged, values)
	// The fake kubelet runs the chart's containers by these annotations.
	mergeValues(merged, map[string]any{
		"operator": map[string]any{"podAnnotations": map[string]any{ContainerAnnotation: "operator"}},
		"gateway":  map[string]any{"podAnnotations": map[string]any{ContainerAnnotation: "gateway"}},
	})
	b, err := json.Marshal(merged)
	if err != nil {
		return nil, fmt.Errorf("chart values: %w", err)
	}
	tmp := t.TempDir()
	valuesFile := filepath.Join(tmp, "values.json")
	if err := os.WriteFile(valuesFile, b, 0o644); err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helm, "template", ChartRelease, chart, "--namespace", namespace, "--include-crds", "-f", valuesFile)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(inheritedEnv(),
		"HELM_CACHE_HOME="+filepath.Join(tmp, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(tmp, "helm-config"),
		"HELM_DATA_HOME="+filepath.Join(tmp, "helm-data"))
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm template %s: %v\n%s", chart, err, stderr.String())
	}
	return decodeObjects(stdout.Bytes())
}

// mergeValues merges src into dst: maps recursively, anything else
// replaced.
func mergeValues(dst, src map[string]any) {
	for k, v := range src {
		sm, ok1 := v.(map[string]any)
		dm, ok2 := dst[k].(map[string]any)
		if ok1 && ok2 {
			mergeValues(dm, sm)
			continue
		}
		dst[k] = v
	}
}

// chartDir finds deploy/helm/ebb above the working directory (tests run
// in their package's directory, inside the module).
func chartDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/ebb-ml/ebb\n")) {
			return filepath.Join(dir, "deploy", "helm", "ebb"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: no ebb module (deploy/helm/ebb) above the working directory")
		}
		dir = parent
	}
}

func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode rendered chart: %w", err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// applyOrder is the order objects are applied in, by kind (as helm
// installs them); other kinds come last.
var applyOrder = []string{
	"CustomResourceDefinition", "Namespace", "PriorityClass", "ServiceAccount", "Secret", "ConfigMap",
	"PersistentVolumeClaim", "Role", "RoleBinding", "Service", "Deployment", "PodDisruptionBudget",
}

func kindRank(kind string) int {
	if i := slices.Index(applyOrder, kind); i >= 0 {
		return i
	}
	return len(applyOrder)
}

// applyChart server-side applies objs in applyOrder, records in created
// what the test's cleanup deletes (not CRDs; cluster-scoped objects only
// when they did not exist before), and pre-binds a PersistentVolume to each
// claim.
func applyChart(ctx context.Context, cl client.Client, objs []*unstructured.Unstructured, created *[]client.Object) error {
	sorted := slices.Clone(objs)
	slices.SortStableFunc(sorted, func(a, b *unstructured.Unstructured) int { return kindRank(a.GetKind()) - kindRank(b.GetKind()) })
	for _, o := range sorted {
		if o.GetKind() == "PersistentVolumeClaim" {
			// The volume first: the binder then binds the claim as soon as
			// it appears (the other way round, only at its next resync).
			pv, err := bindVolume(ctx, cl, o)
			if err != nil {
				return err
			}
			*created = append(*created, pv)
		}
		obj := o.DeepCopy()
		existed := true
		if obj.GetNamespace() == "" {
			probe := &unstructured.Unstructured{}
			probe.SetGroupVersionKind(obj.GroupVersionKind())
			existed = cl.Get(ctx, client.ObjectKeyFromObject(obj), probe) == nil
		}
		if err := cl.Patch(ctx, obj, client.Apply, client.FieldOwner("kubetest"), client.ForceOwnership); err != nil {
			return fmt.Errorf("apply %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		switch {
		case o.GetKind() == "CustomResourceDefinition":
			if err := WaitEstablished(ctx, cl, o.GetName()); err != nil {
				return err
			}
		case obj.GetNamespace() != "" || !existed:
			*created = append(*created, obj)
		}
	}
	return nil
}

// bindVolume creates a PersistentVolume pre-bound to the claim, so that
// the scheduler places its pods (the fake kubelet maps the claim to a
// directory per namespace and claim; the volume's hostPath is never used).
func bindVolume(ctx context.Context, cl client.Client, claim *unstructured.Unstructured) (client.Object, error) {
	var pvc corev1.PersistentVolumeClaim
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(claim.Object, &pvc); err != nil {
		return nil, fmt.Errorf("claim %s: %w", claim.GetName(), err)
	}
	if pvc.Namespace == "" {
		return nil, fmt.Errorf("claim %s has no namespace", pvc.Name)
	}
	name := "kubetest-" + pvc.Namespace + "-" + pvc.Name
	if len(name) > 253 {
		name = name[:253]
	}
	class := ""
	if pvc.Spec.StorageClassName != nil {
		class = *pvc.Spec.StorageClassName
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   pvc.Spec.AccessModes,
			StorageClassName:              class,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace, Name: pvc.Name},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: "/kubetest/pv/" + pvc.Namespace + "/" + pvc.Name,
			}},
		},
	}
	if err := cl.Create(ctx, pv); err != nil {
		return nil, fmt.Errorf("create a volume for claim %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	return pv, nil
}

// WaitEstablished waits until the named CRD is established, so objects of
// its kind can be created.
func WaitEstablished(ctx context.Context, cl client.Client, name string) error {
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s not established: %w", name, err)
	}
	return nil
}

// CreateClaim creates a PersistentVolumeClaim of the given access mode with
// a volume already bound to it, as a storage class with a provisioner
// would: the fake kubelet gives every pod that mounts it the same local
// directory.
func (c *Cluster) CreateClaim(t testing.TB, namespace, name string, mode corev1.PersistentVolumeAccessMode) {
	t.Helper()
	ctx := context.Background()
	cl, err := c.NewClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	claim := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "PersistentVolumeClaim",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"spec": map[string]any{
			"accessModes": []any{string(mode)},
			"resources":   map[string]any{"requests": map[string]any{"storage": "1Gi"}},
		},
	}}
	pv, err := bindVolume(ctx, cl, claim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Delete(context.Background(), pv) })
	if err := cl.Create(ctx, claim); err != nil {
		t.Fatalf("create claim %s/%s: %v", namespace, name, err)
	}
}
