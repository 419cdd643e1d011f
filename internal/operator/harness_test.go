package operator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/control"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(logr.Discard())
	kubetest.Main(m)
}

// env is one test's cluster, namespace and clients.
type env struct {
	c      *kubetest.Cluster
	ns     string
	scheme *runtime.Scheme
	cl     client.Client
	log    *slog.Logger
}

var crdOnce sync.Once

// newEnv gets the shared cluster (skipping without it), installs the CRDs
// once, and creates a namespace.
func newEnv(t *testing.T) *env {
	t.Helper()
	c := kubetest.Get(t)
	scheme, err := operator.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := c.NewClient(scheme)
	if err != nil {
		t.Fatal(err)
	}
	var crdErr error
	crdOnce.Do(func() { crdErr = installCRDs(cl) })
	if crdErr != nil {
		t.Fatalf("install CRDs: %v", crdErr)
	}
	e := &env{c: c, ns: c.Namespace(t), scheme: scheme, cl: cl, log: testLogger(t)}
	t.Cleanup(func() {
		if t.Failed() {
			e.dump(t)
		}
	})
	return e
}

// installCRDs creates every CRD in deploy/crds and waits until each is
// established.
func installCRDs(cl client.Client) error {
	files, err := filepath.Glob("../../deploy/crds/*.yaml")
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRDs in deploy/crds: %v", err)
	}
	ctx := context.Background()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{}
		if err := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096).Decode(&u.Object); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if err := cl.Create(ctx, u); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s: %w", f, err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(u.GroupVersionKind())
			if err := cl.Get(ctx, client.ObjectKey{Name: u.GetName()}, got); err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			established := false
			for _, c := range conds {
				m, _ := c.(map[string]any)
				established = established || (m["type"] == "Established" && m["status"] == "True")
			}
			if established {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s not established", u.GetName())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// runningOperator is an operator started by startOperator.
type runningOperator struct {
	op     *operator.Operator
	cancel context.CancelFunc
	done   chan struct{} // closed when the manager returned, err set
	err    error
}

// stop stops the operator (its pods keep running) and waits for it.
func (r *runningOperator) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("operator stopped with: %v", r.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("operator did not stop within 60s")
	}
}

// startOperator runs an operator for the env's namespace in this process,
// with leader election and fast timings; it is stopped when the test ends.
func (e *env) startOperator(t *testing.T) *runningOperator {
	t.Helper()
	return e.startOperatorCold(t, operator.ColdStartOptions{})
}

// startOperatorCold is startOperator with cold-start options; their Image
// defaults to the pod backend's, "ebb:test".
func (e *env) startOperatorCold(t *testing.T, cold operator.ColdStartOptions) *runningOperator {
	t.Helper()
	if cold.Image == "" {
		cold.Image = "ebb:test"
	}
	lease, renew, retry := 4*time.Second, 3*time.Second, 200*time.Millisecond
	mgr, err := ctrl.NewManager(e.c.RESTConfig(), manager.Options{
		Scheme:                        e.scheme,
		Cache:                         operator.CacheOptions(e.ns),
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                true,
		LeaderElectionID:              "ebb-operator",
		LeaderElectionNamespace:       e.ns,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &lease,
		RenewDeadline:                 &renew,
		RetryPeriod:                   &retry,
	})
	if err != nil {
		t.Fatal(err)
	}
	pods := operator.NewPodCustomizer(mgr.GetCache(), mgr.GetScheme(), e.ns)
	backend, err := kube.New(kube.Options{
		Client:    e.c.Clientset(),
		Namespace: e.ns,
		Image:     "ebb:test",
		Template: func(_ replica.Spec, pod *corev1.Pod) {
			if err := pods.Customize(context.Background(), pod); err != nil {
				e.log.Warn("customize pod", "err", err)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	op, err := operator.New(mgr, backend, operator.KubeHandle, operator.Options{
		Namespace: e.ns,
		Logger:    e.log,
		ColdStart: cold,
		Control: control.Options{
			DrainTimeout: 5 * time.Second,
			MinBackoff:   100 * time.Millisecond,
			MaxBackoff:   2 * time.Second,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningOperator{op: op, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = mgr.Start(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(60 * time.Second):
		}
	})
	return r
}

// scaling is a valid scaling policy; tests change fields.
func scaling() serving.Scaling {
	return serving.Scaling{
		MinReplicas:        0,
		MaxReplicas:        3,
		TargetConcurrency:  1,
		ScaleToZeroAfter:   serving.D(3 * time.Second),
		StableWindow:       serving.D(6 * time.Second),
		PanicWindowPercent: 10,
		PanicThreshold:     200,
	}
}

// echoMD is a ModelDeployment of the echo engine.
func (e *env) echoMD(name string) *v1alpha1.ModelDeployment {
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns}}
	md.Spec.Engine = "echo"
	md.Spec.Scaling = scaling()
	return md
}

func (e *env) create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := e.cl.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

func (e *env) getMD(t *testing.T, name string) *v1alpha1.ModelDeployment {
	t.Helper()
	md := &v1alpha1.ModelDeployment{}
	if err := e.cl.Get(context.Background(), client.ObjectKey{Namespace: e.ns, Name: name}, md); err != nil {
		t.Fatalf("get ModelDeployment %s: %v", name, err)
	}
	return md
}

// pods lists the replica pods of a deployment from the API server.
func (e *env) pods(t *testing.T, deployment string) []corev1.Pod {
	t.Helper()
	var list corev1.PodList
	if err := e.cl.List(context.Background(), &list, client.InNamespace(e.ns), client.MatchingLabels{operator.LabelDeployment: deployment}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// livePods are the pods that are not terminating.
func livePods(pods []corev1.Pod) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// kubectl runs kubectl against the cluster in the env's namespace.
func (e *env) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	// hack/build-kube.sh builds kubectl at the control plane's version.
	path := e.c.Bin("kubectl")
	if _, err := os.Stat(path); err != nil {
		if path, err = exec.LookPath("kubectl"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("kubectl not found: run hack/build-kube.sh")
			}
			t.Skip("kubectl not found: run hack/build-kube.sh")
		}
	}
	cmd := exec.Command(path, append([]string{"--kubeconfig", e.c.Kubeconfig, "-n", e.ns}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitFor polls cond every 100ms until it holds, failing after timeout with
// the last description cond gave.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, desc := cond()
		if ok {
			return
		}
		last = desc
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStatus waits until the ModelDeployment's status satisfies cond.
func (e *env) waitStatus(t *testing.T, name string, timeout time.Duration, what string, cond func(st v1alpha1.ModelDeploymentStatus) bool) *v1alpha1.ModelDeployment {
	t.Helper()
	var md *v1alpha1.ModelDeployment
	waitFor(t, timeout, name+": "+what, func() (bool, string) {
		md = e.getMD(t, name)
		s := md.Status
		return cond(s), fmt.Sprintf("replicas=%d ready=%d desired=%d reason=%q conditions=%v", s.Replicas, s.ReadyReplicas, s.DesiredReplicas, s.Reason, s.Conditions)
	})
	return md
}

// events returns "Reason: message" of the events on a ModelDeployment.
func (e *env) events(t *testing.T, name string) []string {
	t.Helper()
	var list corev1.EventList
	if err := e.cl.List(context.Background(), &list, client.InNamespace(e.ns)); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		if ev.InvolvedObject.Kind == "ModelDeployment" && ev.InvolvedObject.Name == name {
			out = append(out, ev.Reason+": "+ev.Message)
		}
	}
	return out
}

// dump logs the namespace's pods, ModelDeployments and events after a
// failure.
func (e *env) dump(t *testing.T) {
	ctx := context.Background()
	var pods corev1.PodList
	_ = e.cl.List(ctx, &pods, client.InNamespace(e.ns))
	for _, p := range pods.Items {
		t.Logf("pod %s node=%s ip=%s phase=%s deleting=%v", p.Name, p.Spec.NodeName, p.Status.PodIP, p.Status.Phase, p.DeletionTimestamp != nil)
		if log := e.c.PodLog(e.ns, p.Name); log != "" {
			t.Logf("log of %s:\n%s", p.Name, tail(log, 2000))
		}
	}
	var slices discoveryv1.EndpointSliceList
	_ = e.cl.List(ctx, &slices, client.InNamespace(e.ns))
	for _, s := range slices.Items {
		b, _ := json.Marshal(s)
		t.Logf("EndpointSlice %s", b)
	}
	var svcs corev1.ServiceList
	_ = e.cl.List(ctx, &svcs, client.InNamespace(e.ns))
	for _, s := range svcs.Items {
		b, _ := json.Marshal(s)
		t.Logf("Service %s", b)
	}
	if b, err := os.ReadFile(filepath.Join(e.c.Dir, "logs", "kube-controller-manager.log")); err == nil && os.Getenv("EBB_TEST_LOG") != "" {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, e.ns) {
				t.Logf("kcm: %s", l)
			}
		}
	}
	var mds v1alpha1.ModelDeploymentList
	_ = e.cl.List(ctx, &mds, client.InNamespace(e.ns))
	for _, md := range mds.Items {
		t.Logf("ModelDeployment %s status %+v", md.Name, md.Status)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// testLogger logs to the test when -v and EBB_TEST_LOG are set, else
// nowhere.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("EBB_TEST_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
