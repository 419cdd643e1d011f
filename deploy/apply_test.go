package deploy

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/ebb-ml/ebb/internal/kubetest"
	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// serviceMonitorCRD stands in for prometheus-operator's CRDs, which the
// chart's ServiceMonitor and PrometheusRule need: only their names, any
// content accepted.
const serviceMonitorCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`

// access is one question to the apiserver's authorizer: may user do verb on
// group/resource[/subresource] in namespace?
type access struct {
	user, verb, group, resource, subresource, namespace string
	want                                                bool
}

// TestApplyToAPIServer applies the plain manifests (deploy/manifests/ebb.yaml,
// default values) and the chart with every toggle on (serving another
// namespace than its own) to a real kube-apiserver with server-side apply and strict field validation, checks
// that every object is stored, and asks the RBAC authorizer what the
// service accounts may do.
func TestApplyToAPIServer(t *testing.T) {
	c := kubetest.Get(t)
	cl := c.Client(t)
	ctx := context.Background()

	t.Run("manifests", func(t *testing.T) {
		data, err := os.ReadFile(manifestsFile)
		if err != nil {
			t.Fatal(err)
		}
		objs := decodeAll(t, data)
		applyAll(ctx, t, cl, objs)

		op, gw := "system:serviceaccount:ebb:ebb-operator", "system:serviceaccount:ebb:ebb-gateway"
		checkAccess(ctx, t, c, []access{
			{op, "create", "", "pods", "", "ebb", true},
			{op, "delete", "", "pods", "", "ebb", true},
			{op, "update", "serving.ebb.dev", "modeldeployments", "status", "ebb", true},
			{op, "update", "serving.ebb.dev", "modeldeployments", "finalizers", "ebb", true},
			{op, "patch", "serving.ebb.dev", "modeldeployments", "scale", "ebb", true},
			{op, "create", "coordination.k8s.io", "leases", "", "ebb", true},
			{op, "create", "apps", "daemonsets", "", "ebb", true},
			{op, "create", "", "events", "", "ebb", true},
			{op, "list", "discovery.k8s.io", "endpointslices", "", "ebb", true},
			{op, "create", "", "pods", "", "default", false}, // one namespace only
			{op, "get", "", "secrets", "", "ebb", false},
			{op, "list", "", "nodes", "", "", false},
			{op, "create", "serving.ebb.dev", "modeldeployments", "", "ebb", true}, // the admin API
			{op, "delete", "serving.ebb.dev", "modeldeployments", "", "ebb", true},
			{op, "get", "", "pods", "log", "ebb", true}, // ebb logs
			{op, "create", "scheduling.k8s.io", "priorityclasses", "", "", false},
			{gw, "watch", "serving.ebb.dev", "modeldeployments", "", "ebb", true},
			{gw, "list", "discovery.k8s.io", "endpointslices", "", "ebb", true},
			{gw, "update", "serving.ebb.dev", "modeldeployments", "", "ebb", false},
			{gw, "create", "", "pods", "", "ebb", false},
			{gw, "get", "", "secrets", "", "ebb", false},
			{gw, "list", "serving.ebb.dev", "modeldeployments", "", "default", false},
			{op, "create", "serving.ebb.dev", "modelroutes", "", "ebb", true}, // the admin API's /v1/routes
			{op, "delete", "serving.ebb.dev", "modelroutes", "", "ebb", true},
			{gw, "watch", "serving.ebb.dev", "modelroutes", "", "ebb", true},
			{gw, "create", "serving.ebb.dev", "modelroutes", "", "ebb", false},
			{op, "create", "serving.ebb.dev", "modelpools", "", "ebb", true}, // the admin API's /v1/pools
			{op, "update", "serving.ebb.dev", "modelpools", "status", "ebb", true},
			{gw, "list", "serving.ebb.dev", "modelpools", "", "ebb", false},
		})

		// The example applies to the CRD, and its scale subresource works as
		// `kubectl scale` uses it.
		var mds []*unstructured.Unstructured
		for _, f := range []string{"examples/modeldeployment.yaml", "examples/modeldeployment-s3.yaml"} {
			example, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			mds = append(mds, decodeAll(t, example)...)
		}
		for _, md := range mds {
			md.SetNamespace(defaultNamespace)
		}
		applyAll(ctx, t, cl, mds)
		md := mds[0]
		// kubectl scale patches the scale subresource (a GET of it fails
		// while spec.replicas is unset, as it is for an autoscaled one).
		patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":3}}`))
		if err := cl.SubResource("scale").Patch(ctx, md, patch); err != nil {
			t.Fatalf("patch scale of %s: %v", md.GetName(), err)
		}
		scale := &unstructured.Unstructured{}
		scale.SetGroupVersionKind(autoscalingv1.SchemeGroupVersion.WithKind("Scale"))
		if err := cl.SubResource("scale").Get(ctx, md, scale); err != nil {
			t.Fatalf("get scale of %s: %v", md.GetName(), err)
		}
		if r, _, _ := unstructured.NestedInt64(scale.Object, "spec", "replicas"); r != 3 {
			t.Errorf("after scaling to 3, the scale's spec.replicas = %d", r)
		}
		got := md.DeepCopy()
		if err := cl.Get(ctx, client.ObjectKeyFromObject(md), got); err != nil {
			t.Fatal(err)
		}
		if r, _, _ := unstructured.NestedInt64(got.Object, "spec", "replicas"); r != 3 {
			t.Errorf("after scaling to 3, spec.replicas = %d", r)
		}
	})

	t.Run("all-on", func(t *testing.T) {
		ns, served := c.Namespace(t), c.Namespace(t)
		applyAll(ctx, t, cl, decodeAll(t, []byte(serviceMonitorCRD)))
		objs := decodeAll(t, helmTemplate(t, "ml", ns, "-f", allOnValues, "--set", "watchNamespace="+served))
		applyAll(ctx, t, cl, objs)

		sa := func(name string) string { return "system:serviceaccount:" + ns + ":" + name }
		op, gw := sa("ebb-all-operator-sa"), sa("ebb-all-gateway")
		checkAccess(ctx, t, c, []access{
			{op, "create", "", "pods", "", served, true},
			{op, "patch", "serving.ebb.dev", "modeldeployments", "status", served, true},
			{op, "create", "coordination.k8s.io", "leases", "", served, true}, // the operator's lease lives where it serves
			{op, "create", "", "pods", "", ns, false},                         // the release namespace is not served
			{op, "create", "", "pods", "", "default", false},
			{op, "get", "", "secrets", "", served, false},
			{gw, "list", "serving.ebb.dev", "modeldeployments", "", served, true},
			{gw, "list", "serving.ebb.dev", "modeldeployments", "", ns, false},
			{gw, "create", "", "pods", "", served, false},
		})
	})
}

// applyAll server-side applies objs, CRDs and namespaces first (waiting until
// each CRD is established), then the rest in order, and checks that each one
// can be read back.
func applyAll(ctx context.Context, t *testing.T, cl client.Client, objs []*unstructured.Unstructured) {
	t.Helper()
	var first, rest []*unstructured.Unstructured
	for _, o := range objs {
		if k := o.GetKind(); k == "CustomResourceDefinition" || k == "Namespace" {
			first = append(first, o)
		} else {
			rest = append(rest, o)
		}
	}
	for _, batch := range [][]*unstructured.Unstructured{first, rest} {
		for _, o := range batch {
			obj := o.DeepCopy()
			err := cl.Patch(ctx, obj, client.Apply, client.FieldOwner("ebb-deploy-test"), client.ForceOwnership,
				client.FieldValidation(metav1.FieldValidationStrict))
			if err != nil {
				t.Errorf("apply %s: %v", describe(o), err)
				continue
			}
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(o.GroupVersionKind())
			if err := cl.Get(ctx, client.ObjectKeyFromObject(o), got); err != nil {
				t.Errorf("read back %s: %v", describe(o), err)
			}
			if o.GetKind() == "CustomResourceDefinition" {
				if err := kubetest.WaitEstablished(ctx, cl, o.GetName()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func describe(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s", o.GetKind(), ns, o.GetName())
	}
	return fmt.Sprintf("%s %s", o.GetKind(), o.GetName())
}

func checkAccess(ctx context.Context, t *testing.T, c *kubetest.Cluster, checks []access) {
	t.Helper()
	sars := c.Clientset().AuthorizationV1().SubjectAccessReviews()
	for _, a := range checks {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   a.user,
			Groups: []string{"system:serviceaccounts", "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: a.namespace, Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource,
			},
		}}
		got, err := sars.Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SubjectAccessReview %+v: %v", a, err)
		}
		if got.Status.Allowed != a.want {
			t.Errorf("%s may %s %s/%s/%s in namespace %q: %v, want %v (%s)",
				a.user, a.verb, a.group, a.resource, a.subresource, a.namespace, got.Status.Allowed, a.want, got.Status.Reason)
		}
	}
}
