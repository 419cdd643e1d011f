package operator

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestReplicaTLSApply(t *testing.T) {
	tlsFlags := []string{
		"--tls-cert=/etc/ebb/replica-tls/tls.crt",
		"--tls-key=/etc/ebb/replica-tls/tls.key",
		"--tls-client-ca=/etc/ebb/replica-tls/ca.crt",
	}
	mount := corev1.VolumeMount{Name: "replica-tls", MountPath: ReplicaTLSPath, ReadOnly: true}
	vol := corev1.Volume{Name: "replica-tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "replica-certs"}}}
	cache := corev1.Volume{Name: "artifact-cache"}
	pod := func(ctrs ...corev1.Container) *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{Containers: ctrs, Volumes: []corev1.Volume{cache}}}
	}
	replica := func(args ...string) corev1.Container {
		return corev1.Container{Name: ReplicaContainer, Args: args}
	}
	withTLS := func(c corev1.Container, args ...string) corev1.Container {
		c.Args = args
		c.VolumeMounts = []corev1.VolumeMount{mount}
		return c
	}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	base := []string{"replica", "--deployment", "d", "--addr", "0.0.0.0:8080"}
	tests := []struct {
		name   string
		secret string
		in     *corev1.Pod
		want   *corev1.Pod
	}{
		{
			name: "off", secret: "",
			in:   pod(replica(base...)),
			want: pod(replica(base...)),
		},
		{
			name: "flags last", secret: "replica-certs",
			in: pod(replica(base...)),
			want: &corev1.Pod{Spec: corev1.PodSpec{
				Containers: []corev1.Container{withTLS(replica(), cat(base, tlsFlags)...)},
				Volumes:    []corev1.Volume{cache, vol},
			}},
		},
		{
			name: "before an http engine's command", secret: "replica-certs",
			in: pod(replica(cat(base, []string{"--", "python", "-m", "server", "--tls-cert=mine"})...)),
			want: &corev1.Pod{Spec: corev1.PodSpec{
				Containers: []corev1.Container{withTLS(replica(), cat(base, tlsFlags, []string{"--", "python", "-m", "server", "--tls-cert=mine"})...)},
				Volumes:    []corev1.Volume{cache, vol},
			}},
		},
		{
			name: "the replica container among others", secret: "replica-certs",
			in: pod(corev1.Container{Name: "sidecar", Args: []string{"x"}}, replica(base...)),
			want: &corev1.Pod{Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "sidecar", Args: []string{"x"}}, withTLS(replica(), cat(base, tlsFlags)...)},
				Volumes:    []corev1.Volume{cache, vol},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ReplicaTLS{SecretName: tt.secret}.Apply(tt.in)
			if diff := cmp.Diff(tt.want, tt.in); diff != "" {
				t.Errorf("pod (-want +got):\n%s", diff)
			}
		})
	}
}
