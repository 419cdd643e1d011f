package kubetest_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/kubetest"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

func TestStartup(t *testing.T) {
	c := kubetest.Get(t)
	t.Logf("cluster started in %v (pod CIDR %s)", c.StartupTime, c.PodCIDR)
	if _, err := c.Clientset().Discovery().ServerVersion(); err != nil {
		t.Fatal(err)
	}
	// The controller-runtime client works too.
	var nss corev1.NamespaceList
	if err := c.Client(t).List(context.Background(), &nss); err != nil {
		t.Fatalf("controller-runtime list: %v", err)
	}
}

// waitPod waits until cond holds for the pod.
func waitPod(t *testing.T, c *kubetest.Cluster, ns, name string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := c.Clientset().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		return cond(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s: %v; last seen status: %+v", ns, name, err, pod)
	}
	return pod
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func TestKwokPodsScheduleOnGPUNodes(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	nodes := c.CreateNodes(t, 2, kubetest.NodeSpec{Prefix: "gpu", GPUs: 1})
	cs := c.Clientset().CoreV1()
	ctx := context.Background()
	gpuPod := func(name string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "gpu"}},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{kubetest.NodeLabel: kubetest.NodeLabelValue},
				Containers: []corev1.Container{{
					Name: "main", Image: "busybox",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
						kubetest.GPUResource: resource.MustParse("1"),
					}},
				}},
			},
		}
	}
	for _, name := range []string{"a", "b", "c"} {
		if _, err := cs.Pods(ns).Create(ctx, gpuPod(name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Two GPUs: two of the pods run, one per node, with loopback IPs in
	// the CIDR; the third is unschedulable.
	_, podNet, _ := net.ParseCIDR(c.PodCIDR)
	var pods *corev1.PodList
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		if pods, err = cs.Pods(ns).List(ctx, metav1.ListOptions{}); err != nil {
			return false, err
		}
		n, unschedulable := 0, 0
		for _, p := range pods.Items {
			if ready(&p) {
				n++
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodScheduled && cond.Reason == corev1.PodReasonUnschedulable {
					unschedulable++
				}
			}
		}
		return n == 2 && unschedulable == 1, nil
	})
	if err != nil {
		t.Fatalf("want 2 GPU pods ready and 1 unschedulable: %v", err)
	}
	used := map[string]bool{}
	for _, p := range pods.Items {
		if !ready(&p) {
			continue
		}
		if ip := net.ParseIP(p.Status.PodIP); !podNet.Contains(ip) || !ip.IsLoopback() {
			t.Errorf("pod %s has IP %s; want one in %s", p.Name, p.Status.PodIP, c.PodCIDR)
		}
		used[p.Spec.NodeName] = true
	}
	if want := map[string]bool{nodes[0]: true, nodes[1]: true}; !cmp.Equal(used, want) {
		t.Errorf("pods ran on %v; want one on each of %v", used, nodes)
	}

	// Garbage collection follows owner references (kube-controller-manager).
	// EndpointSlices are not checked: the apiserver refuses loopback
	// addresses in them, so Services over these pods have none.
	owner, err := cs.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	child := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "child", OwnerReferences: []metav1.OwnerReference{{
		APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
	}}}}
	if _, err := cs.ConfigMaps(ns).Create(ctx, child, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.ConfigMaps(ns).Delete(ctx, "owner", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.ConfigMaps(ns).Get(ctx, "child", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("child of a deleted owner was not garbage-collected: %v", err)
	}
}

func ebbPod(name string, args ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: kubetest.ContainerName, Image: "ebb:test",
				Command:                  []string{"ebb"},
				Args:                     args,
				Ports:                    []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/v2/health/ready", Port: intstr.FromString("http"),
				}}},
			}},
		},
	}
}

func TestFakeKubelet(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	c.CreateNodes(t, 1, kubetest.NodeSpec{})
	cs := c.Clientset().CoreV1()
	ctx := context.Background()

	t.Run("ServesOnPodIPAndStopsOnDelete", func(t *testing.T) {
		if _, err := cs.Pods(ns).Create(ctx, ebbPod("echo", "replica", "--deployment", "echo", "--id", "echo",
			"--engine", "echo", "--addr", "0.0.0.0:8080"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := waitPod(t, c, ns, "echo", ready)
		url := "http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/v2/health/ready"
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %s", url, resp.Status)
		}
		evs, err := cs.Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=echo"})
		if err != nil {
			t.Fatal(err)
		}
		var reasons []string
		for _, e := range evs.Items {
			if e.Source.Component == "kubelet" {
				reasons = append(reasons, e.Reason)
			}
		}
		if diff := cmp.Diff([]string{"Pulled", "Created", "Started"}, reasons); diff != "" {
			t.Errorf("kubelet events (-want +got):\n%s", diff)
		}
		grace := int64(10)
		if err := cs.Pods(ns).Delete(ctx, "echo", metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
			t.Fatal(err)
		}
		// Terminating until the process is gone, then deleted.
		err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := cs.Pods(ns).Get(ctx, "echo", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Fatalf("pod not deleted: %v", err)
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			t.Errorf("replica still answers after its pod was deleted")
		}
	})

	t.Run("FailedContainerReportsItsLog", func(t *testing.T) {
		if _, err := cs.Pods(ns).Create(ctx, ebbPod("bad", "replica", "--deployment", "bad", "--id", "bad",
			"--engine", "trees", "--model", "/nonexistent/model.json", "--addr", "0.0.0.0:8080"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := waitPod(t, c, ns, "bad", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
		var term *corev1.ContainerStateTerminated
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == kubetest.ContainerName {
				term = s.State.Terminated
			}
		}
		if term == nil || term.ExitCode != 1 || !strings.Contains(term.Message, "/nonexistent/model.json") {
			t.Errorf("terminated state = %+v; want exit 1 with the replica's error", term)
		}
	})
}
