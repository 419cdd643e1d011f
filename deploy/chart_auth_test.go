package deploy

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// checkAuthWiring checks that the operator keeps the token Secrets the
// gateway reads its token from (a mounted file it rereads, so a rotated
// token needs no restart), that both have the same OIDC flags, or that
// both have auth off.
func checkAuthWiring(t *testing.T, deps map[string]*appsv1.Deployment, tc chartCase) {
	t.Helper()
	op := deps["operator"].Spec.Template.Spec.Containers[0]
	gw := deps["gateway"].Spec.Template.Spec.Containers[0]
	gwPod := deps["gateway"].Spec.Template.Spec
	for _, e := range gw.Env {
		if e.Name == "EBB_GATEWAY_TOKEN" {
			t.Errorf("gateway has EBB_GATEWAY_TOKEN (%+v): an env var cannot follow a rotated Secret; the token is a mounted file", e)
		}
	}
	for _, c := range []corev1.Container{op, gw} {
		var got []string
		for _, a := range c.Args {
			if strings.HasPrefix(a, "--oidc-") {
				got = append(got, a)
			}
		}
		if diff := cmp.Diff(tc.oidc, got); diff != "" {
			t.Errorf("%s OIDC args (-want +got):\n%s", c.Name, diff)
		}
	}
	if tc.tokenSecrets == nil {
		for _, c := range []corev1.Container{op, gw} {
			if !slices.Contains(c.Args, "--auth=off") {
				t.Errorf("%s args %q lack --auth=off", c.Name, c.Args)
			}
		}
		if slices.ContainsFunc(gw.Args, func(a string) bool { return strings.HasPrefix(a, "--token-file") }) {
			t.Errorf("gateway has a --token-file with auth off: %q", gw.Args)
		}
		return
	}
	for _, want := range []string{"--auth=on", "--admin-token-secret=" + tc.tokenSecrets[0], "--gateway-token-secret=" + tc.tokenSecrets[1]} {
		if !slices.Contains(op.Args, want) {
			t.Errorf("operator args %q lack %q", op.Args, want)
		}
	}
	if !slices.Contains(gw.Args, "--auth=on") {
		t.Errorf("gateway args %q lack --auth=on", gw.Args)
	}
	file := flagValue(gw.Args, "--token-file")
	vol, key := mountedFile(gwPod, gw, file)
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName != tc.tokenSecrets[1] || key != "token" {
		t.Errorf("gateway --token-file=%s is not the key token of Secret %s mounted (it is %q of %s)", file, tc.tokenSecrets[1], key, describeVolume(vol))
	}
}

// checkTLSWiring checks the tls.* values: each listener's flags name the
// files of its own Secret; the gateways get the operator's ca.crt alone,
// never its key; replicas get their Secret through the operator; or none
// of it without TLS.
func checkTLSWiring(t *testing.T, deps map[string]*appsv1.Deployment, tc chartCase) {
	t.Helper()
	opPod, gwPod := deps["operator"].Spec.Template.Spec, deps["gateway"].Spec.Template.Spec
	op, gw := opPod.Containers[0], gwPod.Containers[0]
	if tc.tls == nil {
		for _, c := range []corev1.Container{op, gw} {
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--tls-") || strings.HasPrefix(a, "--replica-tls") || strings.HasPrefix(a, "--operator-ca") {
					t.Errorf("%s: %s without tls.* values", c.Name, a)
				}
			}
		}
		return
	}
	for _, f := range []struct {
		pod         corev1.PodSpec
		ctr         corev1.Container
		flag        string
		secret, key string
		onlyThisKey bool
	}{
		{gwPod, gw, "--tls-cert", tc.tls.gateway, "tls.crt", false},
		{gwPod, gw, "--tls-key", tc.tls.gateway, "tls.key", false},
		{gwPod, gw, "--operator-ca", tc.tls.operator, "ca.crt", true},
		{gwPod, gw, "--replica-tls-cert", tc.tls.replicaClient, "tls.crt", false},
		{gwPod, gw, "--replica-tls-key", tc.tls.replicaClient, "tls.key", false},
		{gwPod, gw, "--replica-tls-ca", tc.tls.replicaClient, "ca.crt", false},
		{opPod, op, "--tls-cert", tc.tls.operator, "tls.crt", false},
		{opPod, op, "--tls-key", tc.tls.operator, "tls.key", false},
	} {
		path := flagValue(f.ctr.Args, f.flag)
		vol, key := mountedFile(f.pod, f.ctr, path)
		if vol == nil || vol.Secret == nil || vol.Secret.SecretName != f.secret || key != f.key {
			t.Errorf("%s %s=%q is not the key %s of Secret %s mounted (it is %q of %s)", f.ctr.Name, f.flag, path, f.key, f.secret, key, describeVolume(vol))
			continue
		}
		if f.onlyThisKey && (len(vol.Secret.Items) != 1 || vol.Secret.Items[0].Key != f.key) {
			t.Errorf("%s mounts Secret %s with items %+v: want only %s (the key stays with its owner)", f.ctr.Name, f.secret, vol.Secret.Items, f.key)
		}
	}
	if got := flagValue(gw.Args, "--replica-tls-server-name"); got != tc.tls.replicaServerName {
		t.Errorf("gateway --replica-tls-server-name=%q, want %q", got, tc.tls.replicaServerName)
	}
	if got := flagValue(op.Args, "--replica-tls-secret"); got != tc.tls.replicas {
		t.Errorf("operator --replica-tls-secret=%q, want %q", got, tc.tls.replicas)
	}
	// The operator mounts no Secret of the gateways (it hands the
	// replicas theirs by name).
	for _, v := range opPod.Volumes {
		if v.Secret != nil && v.Secret.SecretName != tc.tls.operator &&
			(v.Secret.SecretName == tc.tls.gateway || v.Secret.SecretName == tc.tls.replicaClient || v.Secret.SecretName == tc.tls.replicas) {
			t.Errorf("operator mounts Secret %s, which is not its own", v.Secret.SecretName)
		}
	}
}

func describeVolume(v *corev1.Volume) string {
	switch {
	case v == nil:
		return "no mounted volume"
	case v.Secret != nil:
		return "volume " + v.Name + " of Secret " + v.Secret.SecretName
	}
	return "volume " + v.Name + ", not a Secret"
}

// flagValue returns the value of --flag=VALUE in args, "" without one.
func flagValue(args []string, flag string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// mountedFile returns the volume ctr mounts path from and the key of its
// Secret the file is (by item, or the file name); nil when no mount holds
// path.
func mountedFile(pod corev1.PodSpec, ctr corev1.Container, path string) (*corev1.Volume, string) {
	if path == "" {
		return nil, ""
	}
	for _, m := range ctr.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for i, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret != nil {
				for _, it := range v.Secret.Items {
					if it.Path == rel {
						return &pod.Volumes[i], it.Key
					}
				}
				if len(v.Secret.Items) > 0 {
					return &pod.Volumes[i], ""
				}
			}
			return &pod.Volumes[i], rel
		}
	}
	return nil, ""
}
