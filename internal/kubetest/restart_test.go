package kubetest_test

import (
	"context"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/kubetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// TestRestartAPIServer kills the apiserver, keeps it down for 2 s and
// starts it again: what was stored before is still there (etcd kept its
// data), an informer started before the restart sees an object created
// after it (its watch came back), and the scheduler and kwok run a pod
// created after it.
func TestRestartAPIServer(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	c.CreateNodes(t, 1, kubetest.NodeSpec{Prefix: "restart"})
	cs := c.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cm := func(name string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": name}}
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm("before"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	seen := make(chan string, 16)
	if _, err := f.Core().V1().ConfigMaps().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			// Only the test's own (the namespace also gets kube-root-ca.crt).
			if name := obj.(*corev1.ConfigMap).Name; name == "before" || name == "after" {
				seen <- name
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	stopInformers := make(chan struct{})
	f.Start(stopInformers)
	defer func() {
		close(stopInformers)
		f.Shutdown()
	}()
	f.WaitForCacheSync(ctx.Done())
	if got := <-seen; got != "before" {
		t.Fatalf("informer saw %q first, want before", got)
	}

	const down = 2 * time.Second
	r, err := c.RestartAPIServer(ctx, kubetest.RestartOptions{DownFor: down, Kill: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.NewPID == r.OldPID || r.Started.Sub(r.Stopped) < down || r.Ready.Before(r.Started) {
		t.Fatalf("restart = %+v, want a new process started %s after the old one stopped", r, down)
	}
	t.Logf("apiserver pid %d killed, pid %d ready %s later", r.OldPID, r.NewPID, r.Ready.Sub(r.Stopped).Round(time.Millisecond))

	if got, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "before", metav1.GetOptions{}); err != nil || got.Data["k"] != "before" {
		t.Fatalf("ConfigMap stored before the restart: %v, %v", got, err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm("after"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-seen:
		if got != "after" {
			t.Errorf("informer saw %q, want after", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the informer started before the restart did not see a ConfigMap created after it within 30s")
	}

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "after-restart"},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{kubetest.NodeLabel: kubetest.NodeLabelValue},
			Containers:   []corev1.Container{{Name: "main", Image: "busybox"}},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	waitPod(t, c, ns, pod.Name, ready)
	t.Logf("a pod created after the restart was ready in %s", time.Since(began).Round(time.Millisecond))
}
