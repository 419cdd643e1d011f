package kubetest_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ebb-ml/ebb/internal/kubetest"
)

// TestPodLogs reads a fake-kubelet pod's output through the apiserver, as
// kubectl logs does: whole, tailed and followed.
func TestPodLogs(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	c.CreateNodes(t, 1, kubetest.NodeSpec{})
	pods := c.Clientset().CoreV1().Pods(ns)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := pods.Create(ctx, ebbPod("chatty", "replica", "--deployment", "chatty", "--id", "chatty",
		"--engine", "echo", "--addr", "0.0.0.0:8080"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, c, ns, "chatty", ready)

	raw := func() string {
		b, _ := os.ReadFile(c.PodLog(ns, "chatty"))
		return string(b)
	}
	logs := func(opts *corev1.PodLogOptions) (string, error) {
		b, err := pods.GetLogs("chatty", opts).DoRaw(ctx)
		return string(b), err
	}
	// The shipper copies output every 50ms: wait until it caught up.
	var got string
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		got, err = logs(&corev1.PodLogOptions{Container: kubetest.ContainerName})
		if err == nil && got != "" && got == raw() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods/log = %q, %v; want the process's output %q", got, err, raw())
		}
		time.Sleep(50 * time.Millisecond)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(got, "\n"), "\n")
	one := int64(1)
	if tail, err := logs(&corev1.PodLogOptions{Container: kubetest.ContainerName, TailLines: &one}); err != nil || tail != lines[len(lines)-1]+"\n" && tail != lines[len(lines)-1] {
		t.Errorf("pods/log tailLines=1 = %q, %v; want the last line %q", tail, err, lines[len(lines)-1])
	}

	// Follow: what the process writes after the stream opened arrives on
	// it; deleting the pod makes the replica log its shutdown.
	rc, err := pods.GetLogs("chatty", &corev1.PodLogOptions{Container: kubetest.ContainerName, Follow: true, TailLines: &one}).Stream(ctx)
	if err != nil {
		t.Fatalf("follow pods/log: %v", err)
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatalf("read the followed tail: %v", err)
	}
	before := len(raw())
	grace := int64(5)
	if err := pods.Delete(ctx, "chatty", metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	waitFor := time.Now().Add(20 * time.Second)
	for len(raw()) == before {
		if time.Now().After(waitFor) {
			t.Fatal("the replica wrote nothing when its pod was deleted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	line, err := br.ReadString('\n')
	if err != nil && err != io.EOF {
		t.Fatalf("read a followed line: %v", err)
	}
	if !strings.Contains(raw()[before:], strings.TrimSpace(line)) || strings.TrimSpace(line) == "" {
		t.Errorf("followed %q; want a line of what the process wrote after the follow began:\n%s", line, raw()[before:])
	}
}
