package kubetest_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/certs/certstest"
	"github.com/ebb-ml/ebb/internal/kubetest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFakeKubeletUpdatesSecretVolumes runs a replica that serves TLS from
// a mounted kubernetes.io/tls Secret, probed over HTTPS (the certificate
// is not verified, as a kubelet does not), then renews the Secret: the
// mounted files change while the process runs, and it serves the new
// certificate without a restart.
func TestFakeKubeletUpdatesSecretVolumes(t *testing.T) {
	c := kubetest.Get(t)
	ns := c.Namespace(t)
	nodes := c.CreateNodes(t, 1, kubetest.NodeSpec{Prefix: "vol"})
	cs := c.Clientset().CoreV1()
	ctx := context.Background()
	ca := certstest.NewCA(t, "ca")
	put := func(p certstest.Pair) {
		t.Helper()
		data := map[string][]byte{corev1.TLSCertKey: p.CertPEM, corev1.TLSPrivateKeyKey: p.KeyPEM}
		s, err := cs.Secrets(ns).Get(ctx, "tls", metav1.GetOptions{})
		if err != nil {
			s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tls"}, Type: corev1.SecretTypeTLS, Data: data}
			_, err = cs.Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
		} else {
			s.Data = data
			_, err = cs.Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	first := ca.Server(t, "first", "replica")
	put(first)

	pod := ebbPod("tls", "replica", "--deployment", "tls", "--id", "tls", "--engine", "echo", "--addr", "0.0.0.0:8080",
		"--tls-cert=/etc/tls/tls.crt", "--tls-key=/etc/tls/tls.key")
	pod.Spec.NodeName = nodes[0]
	ctr := &pod.Spec.Containers[0]
	ctr.ReadinessProbe.HTTPGet.Scheme = corev1.URISchemeHTTPS
	ctr.VolumeMounts = []corev1.VolumeMount{{Name: "tls", MountPath: "/etc/tls", ReadOnly: true}}
	pod.Spec.Volumes = []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tls"}}}}
	if _, err := cs.Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, c, ns, "tls", func(p *corev1.Pod) bool {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
	proc, ok := c.PodProcess(ns, "tls")
	if !ok {
		t.Fatal("the fake kubelet ran nothing for the pod")
	}
	addr := net.JoinHostPort(p.Status.PodIP, "8080")
	served := func() string {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "replica"})
		if err != nil {
			return err.Error()
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "first" {
		t.Fatalf("the replica serves %q, want the certificate first", got)
	}

	second := ca.Server(t, "second", "replica")
	put(second)
	file := filepath.Join(proc.Dir, "volumes", "tls", corev1.TLSCertKey)
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		got := served()
		if string(b) == string(second.CertPEM) && got == "second" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20s after the Secret changed: mounted file is the new certificate: %v; the replica serves %q", string(b) == string(second.CertPEM), got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if now, _ := c.PodProcess(ns, "tls"); now.PID != proc.PID {
		t.Errorf("the process was restarted (pid %d, was %d)", now.PID, proc.PID)
	}
}
