package deploy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// checkTracingWiring checks the tracing values: the operator and the
// gateways get the same --otlp-* and --trace-sample-ratio args (the
// operator passes them on to replica pods), and a CA file is the ca.crt
// of tracing.caSecret, alone, mounted in each pod; or none of it without
// an endpoint.
func checkTracingWiring(t *testing.T, deps map[string]*appsv1.Deployment, tc chartCase) {
	t.Helper()
	for _, component := range []string{"operator", "gateway"} {
		pod := deps[component].Spec.Template.Spec
		c := pod.Containers[0]
		var got []string
		for _, a := range c.Args {
			if strings.HasPrefix(a, "--otlp-") || strings.HasPrefix(a, "--trace-") {
				got = append(got, a)
			}
		}
		if diff := cmp.Diff(tc.tracing, got); diff != "" {
			t.Errorf("%s tracing args (-want +got):\n%s", component, diff)
		}
		file := flagValue(c.Args, "--otlp-ca-file")
		if file == "" {
			for _, v := range pod.Volumes {
				if v.Name == "otlp-ca" {
					t.Errorf("%s mounts volume otlp-ca without --otlp-ca-file", component)
				}
			}
			continue
		}
		vol, key := mountedFile(pod, c, file)
		if vol == nil || vol.Secret == nil || vol.Secret.SecretName != tc.tracingCA || key != "ca.crt" || !onlyKey(vol, "ca.crt") {
			t.Errorf("%s --otlp-ca-file=%s is not the key ca.crt, alone, of Secret %s mounted (it is %q of %s)", component, file, tc.tracingCA, key, describeVolume(vol))
		}
	}
}

// onlyKey reports whether vol mounts key of its Secret and nothing else.
func onlyKey(vol *corev1.Volume, key string) bool {
	items := vol.Secret.Items
	return len(items) == 1 && items[0].Key == key
}
