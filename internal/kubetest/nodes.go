package kubetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// kwok manages the nodes with this annotation; CreateNodes sets it, and the
// NodeLabel too (handy for nodeSelectors).
const (
	NodeAnnotation      = "kwok.x-k8s.io/node"
	NodeAnnotationValue = "fake"
	NodeLabel           = "type"
	NodeLabelValue      = "kwok"
)

// GPUResource is the extended resource of NVIDIA GPUs.
const GPUResource corev1.ResourceName = "nvidia.com/gpu"

// NodeSpec describes fake nodes. Zero fields take the defaults.
type NodeSpec struct {
	// Prefix names the nodes PREFIX-N; default "kwok-node".
	Prefix string
	// CPU and Memory are the allocatable quantities; default "32", "256Gi".
	CPU, Memory string
	// Pods is the most pods a node holds; default 110.
	Pods int
	// GPUs is the node's nvidia.com/gpu count; default none.
	GPUs int
	// Extended adds other extended resources (MIG slices, ...).
	Extended map[corev1.ResourceName]string
	// Labels and Taints are added to each node.
	Labels map[string]string
	Taints []corev1.Taint
}

// CreateNodes creates n kwok nodes and waits until each is Ready; they are
// deleted when the test ends. It returns their names, unique in the cluster.
func (c *Cluster) CreateNodes(t testing.TB, n int, spec NodeSpec) []string {
	t.Helper()
	ctx := context.Background()
	names, err := c.createNodes(ctx, n, spec)
	t.Cleanup(func() {
		for _, name := range names {
			_ = c.clientset.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	})
	if err != nil {
		t.Fatalf("create nodes: %v", err)
	}
	if err := c.WaitNodesReady(ctx, names, time.Minute); err != nil {
		t.Fatal(err)
	}
	return names
}

func (c *Cluster) createNodes(ctx context.Context, n int, spec NodeSpec) ([]string, error) {
	if spec.Prefix == "" {
		spec.Prefix = "kwok-node"
	}
	alloc := corev1.ResourceList{}
	for name, q := range map[corev1.ResourceName]string{
		corev1.ResourceCPU:    or(spec.CPU, "32"),
		corev1.ResourceMemory: or(spec.Memory, "256Gi"),
		corev1.ResourcePods:   fmt.Sprint(orInt(spec.Pods, 110)),
	} {
		alloc[name] = resource.MustParse(q)
	}
	if spec.GPUs > 0 {
		alloc[GPUResource] = *resource.NewQuantity(int64(spec.GPUs), resource.DecimalSI)
	}
	for name, q := range spec.Extended {
		qq, err := resource.ParseQuantity(q)
		if err != nil {
			return nil, fmt.Errorf("node resource %s=%q: %w", name, q, err)
		}
		alloc[name] = qq
	}
	var names []string
	for range n {
		c.nodeMu.Lock()
		name := fmt.Sprintf("%s-%d", spec.Prefix, c.nodeCount)
		c.nodeCount++
		c.nodeMu.Unlock()
		labels := map[string]string{
			NodeLabel:              NodeLabelValue,
			corev1.LabelHostname:   name,
			corev1.LabelOSStable:   "linux",
			corev1.LabelArchStable: "amd64",
			"kubernetes.io/role":   "agent",
			"node.kubernetes.io/exclude-from-external-load-balancers": "true",
		}
		for k, v := range spec.Labels {
			labels[k] = v
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Labels:      labels,
				Annotations: map[string]string{NodeAnnotation: NodeAnnotationValue},
			},
			Spec: corev1.NodeSpec{Taints: spec.Taints},
			Status: corev1.NodeStatus{
				Allocatable: alloc.DeepCopy(),
				Capacity:    alloc.DeepCopy(),
			},
		}
		if _, err := c.clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return names, fmt.Errorf("create node %s: %w", name, err)
		}
		names = append(names, name)
	}
	return names, nil
}

// WaitNodesReady waits until kwok reports every named node Ready.
func (c *Cluster) WaitNodesReady(ctx context.Context, names []string, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for _, name := range names {
			n, err := c.clientset.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			ready := false
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready = true
				}
			}
			if !ready {
				return false, nil
			}
		}
		return true, nil
	})
}

// Namespace creates a namespace with a unique name and waits until its
// "default" service account exists (pods are refused before that); it is
// deleted when the test ends.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	base := strings.ToLower(t.Name())
	base = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, base)
	if len(base) > 40 {
		base = base[:40]
	}
	name := strings.Trim(base, "-") + "-" + rand.String(5)
	ctx := context.Background()
	cs := c.clientset.CoreV1()
	if _, err := cs.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = cs.Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("namespace %s: default service account: %v", name, err)
	}
	return name
}

// NewClient returns an uncached controller-runtime client (with Watch) for
// the cluster admin. scheme nil means client-go's scheme; pass one with your
// CRD types added (and clientgoscheme.AddToScheme) otherwise.
func (c *Cluster) NewClient(scheme *runtime.Scheme) (client.WithWatch, error) {
	if scheme == nil {
		scheme = clientgoscheme.Scheme
	}
	return client.NewWithWatch(c.RESTConfig(), client.Options{Scheme: scheme})
}

// Client is NewClient(nil), failing the test on error.
func (c *Cluster) Client(t testing.TB) client.WithWatch {
	t.Helper()
	cl, err := c.NewClient(nil)
	if err != nil {
		t.Fatalf("controller-runtime client: %v", err)
	}
	return cl
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orInt(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}
