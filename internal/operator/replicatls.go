package operator

import (
	"path"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// ReplicaTLSPath is where replica pods mount the Secret of ReplicaTLS.
const ReplicaTLSPath = "/etc/ebb/replica-tls"

// replicaTLSVolume names that volume in the pod.
const replicaTLSVolume = "replica-tls"

// ReplicaTLS makes replica pods serve mutual TLS. SecretName names a
// Secret of type kubernetes.io/tls in the pods' namespace: tls.crt and
// tls.key are the replicas' certificate (one for every replica pod, valid
// for the name gateways verify it for, their --replica-tls-server-name),
// and ca.crt the CA that signs the gateways' client certificates. The
// Secret is mounted read-only at ReplicaTLSPath and `ebb replica` gets
// --tls-cert, --tls-key and --tls-client-ca on its files: it then serves
// inference only over TLS, to clients with such a certificate, and
// rereads the files when the Secret changes. Health checks and
// /ebb/v1/replica stay plain HTTP on the same port, for the kubelet's probe
// and the operator's control loop.
type ReplicaTLS struct {
	SecretName string
}

// Apply adds the Secret's volume, its mount and the TLS flags to pod's
// replica container (the one named ReplicaContainer, else the first); the
// flags go before a "--" that ends ebb's own (an http engine's command
// follows it). Without a SecretName it does nothing.
func (t ReplicaTLS) Apply(pod *corev1.Pod) {
	if t.SecretName == "" || len(pod.Spec.Containers) == 0 {
		return
	}
	c := &pod.Spec.Containers[0]
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == ReplicaContainer {
			c = &pod.Spec.Containers[i]
		}
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
		Name:         replicaTLSVolume,
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: t.SecretName}},
	})
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: replicaTLSVolume, MountPath: ReplicaTLSPath, ReadOnly: true})
	flags := []string{
		"--tls-cert=" + path.Join(ReplicaTLSPath, corev1.TLSCertKey),
		"--tls-key=" + path.Join(ReplicaTLSPath, corev1.TLSPrivateKeyKey),
		"--tls-client-ca=" + path.Join(ReplicaTLSPath, corev1.ServiceAccountRootCAKey),
	}
	at := slices.Index(c.Args, "--")
	if at < 0 {
		at = len(c.Args)
	}
	c.Args = slices.Insert(slices.Clip(c.Args), at, flags...)
}
