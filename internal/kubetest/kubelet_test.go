package kubetest_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/kubetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// echoPod is a pod on node running an echo replica, with the given env and
// volumes mounted at /data (hostPath /cache) and /scratch (emptyDir).
func echoPod(name, node string, env ...corev1.EnvVar) *corev1.Pod {
	p := ebbPod(name, "replica", "--deployment", name, "--id", name, "--engine", "echo", "--addr", "0.0.0.0:8080")
	p.Spec.NodeName = node
	ctr := &p.Spec.Containers[0]
	ctr.Env = env
	ctr.VolumeMounts = []corev1.VolumeMount{{Name: "cache", MountPath: "/data"}, {Name: "scratch", MountPath: "/scratch"}}
	p.Spec.Volumes = []corev1.Volume{
		{Name: "cache", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/cache"}}},
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	return p
}

func TestFakeKubeletEnvironment(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	nodes := c.CreateNodes(t, 2, kubetest.NodeSpec{Prefix: "env"})
	cs := c.Clientset().CoreV1()
	ctx := context.Background()

	t.Run("ValueFromWaitsForItsSecret", func(t *testing.T) {
		if _, err := cs.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "settings"},
			Data:       map[string]string{"LEVEL": "debug"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := echoPod("env", nodes[0],
			corev1.EnvVar{Name: "NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			corev1.EnvVar{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			corev1.EnvVar{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			corev1.EnvVar{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
			corev1.EnvVar{Name: "URL", Value: "http://$(NAME):$(PASSWORD)@x/$(CFG_LEVEL)"},
			corev1.EnvVar{Name: "DATA", Value: "/data/models"},
		)
		pod.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{Prefix: "CFG_",
			ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}
		if _, err := cs.Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := waitPod(t, c, ns, "env", func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
				p.Status.ContainerStatuses[0].State.Waiting.Reason == "CreateContainerConfigError"
		})
		if msg := p.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, `secret "creds" not found`) {
			t.Errorf("waiting message %q; want the missing secret named", msg)
		}
		if _, err := cs.Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Data: map[string][]byte{"password": []byte("s3cret")},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p = waitPod(t, c, ns, "env", ready)
		proc := process(t, c, *p)
		hostDir := filepath.Join(c.Dir, "volumes", "hostpath", nodes[0], "cache")
		wantEnv(t, proc, "NAME=env", "IP="+p.Status.PodIP, "NODE="+nodes[0], "PASSWORD=s3cret", "CFG_LEVEL=debug",
			"URL=http://env:s3cret@x/debug", "DATA="+hostDir+"/models")
		wantArgs(t, proc, p.Status.PodIP+":8080")
	})

	t.Run("HostPathIsPerNodeEmptyDirPerPod", func(t *testing.T) {
		env := []corev1.EnvVar{{Name: "CACHE", Value: "/data"}, {Name: "SCRATCH", Value: "/scratch/x"}}
		for _, p := range []*corev1.Pod{echoPod("a1", nodes[0], env...), echoPod("a2", nodes[0], env...), echoPod("b1", nodes[1], env...)} {
			if _, err := cs.Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		procs := map[string]kubetest.Process{}
		for _, name := range []string{"a1", "a2", "b1"} {
			procs[name] = process(t, c, *waitPod(t, c, ns, name, ready))
		}
		cache := func(name string) string { return envValue(procs[name], "CACHE") }
		scratch := func(name string) string { return envValue(procs[name], "SCRATCH") }
		if cache("a1") != cache("a2") || cache("a1") == cache("b1") || strings.HasPrefix(cache("a1"), "/data") {
			t.Errorf("hostPath /cache at /data: a1 %s, a2 %s (node %s), b1 %s (node %s); want one directory per node",
				cache("a1"), cache("a2"), nodes[0], cache("b1"), nodes[1])
		}
		if scratch("a1") == scratch("a2") || !strings.HasSuffix(scratch("a1"), "/x") {
			t.Errorf("emptyDir at /scratch: a1 %s, a2 %s; want one per pod", scratch("a1"), scratch("a2"))
		}

		// A hostPath named by a path the kubelet rewrote for a1 (as an
		// operator passes its rewritten flag into the pods it creates) is
		// the node directory of the path a1 saw, /scratch/x.
		c1, c2 := echoPod("c1", nodes[0], env...), echoPod("c2", nodes[0], env...)
		c1.Spec.Volumes[0].HostPath.Path = scratch("a1")
		c2.Spec.Volumes[0].HostPath.Path = "/scratch/x"
		for _, p := range []*corev1.Pod{c1, c2} {
			if _, err := cs.Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			procs[p.Name] = process(t, c, *waitPod(t, c, ns, p.Name, ready))
		}
		if want := filepath.Join(c.Dir, "volumes", "hostpath", nodes[0], "scratch", "x"); cache("c1") != want || cache("c2") != want {
			t.Errorf("hostPath %s and /scratch/x at /data: %s and %s; want both %s", scratch("a1"), cache("c1"), cache("c2"), want)
		}
	})

	t.Run("RestartPolicyAlwaysRestarts", func(t *testing.T) {
		p := ebbPod("crash", "replica", "--deployment", "crash", "--id", "crash", "--engine", "trees",
			"--model", "/nonexistent/model.json", "--addr", "0.0.0.0:8080")
		p.Spec.RestartPolicy = corev1.RestartPolicyAlways
		p.Spec.NodeName = nodes[1]
		if _, err := cs.Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		got := waitPod(t, c, ns, "crash", func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].RestartCount >= 2
		})
		st := got.Status.ContainerStatuses[0]
		if got.Status.Phase != corev1.PodRunning || st.LastTerminationState.Terminated == nil ||
			st.LastTerminationState.Terminated.ExitCode != 1 {
			t.Errorf("after %d restarts: phase %s, last state %+v; want Running, the last run terminated with exit 1",
				st.RestartCount, got.Status.Phase, st.LastTerminationState)
		}
	})
}
