package deploy

import (
	"fmt"
	"testing"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/kube"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// nsNameLabel is the label the apiserver puts on every namespace, its name.
const nsNameLabel = "kubernetes.io/metadata.name"

// TestChartReplicaNetworkPolicy renders the chart and checks the
// NetworkPolicy in front of the replica pods against the pods the operator
// really creates (built by internal/replica/kube and internal/operator): it
// selects replica pods, never balloons or pre-pull pods, in the namespace
// they run in, and lets in on the replica port only the release's gateway
// and operator pods (in the release namespace) and replicas.networkPolicy.
// extraFrom.
func TestChartReplicaNetworkPolicy(t *testing.T) {
	prometheus := networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{nsNameLabel: "monitoring"}},
		PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "prometheus"}},
	}
	for _, tc := range []struct {
		name, release, namespace string
		args                     []string
		watchNamespace           string
		want                     bool
		extra                    []networkingv1.NetworkPolicyPeer
	}{
		{name: "defaults", release: defaultRelease, namespace: defaultNamespace, watchNamespace: defaultNamespace, want: true},
		{
			name: "all-on: another namespace, extraFrom", release: "ml", namespace: "ml-serving",
			args: []string{"-f", allOnValues}, watchNamespace: "ml-models", want: true,
			extra: []networkingv1.NetworkPolicyPeer{prometheus},
		},
		{
			name: "watchNamespace is the release's", release: "ml", namespace: "ml",
			args: []string{"--set", "watchNamespace=ml"}, watchNamespace: "ml", want: true,
		},
		{
			name: "disabled", release: defaultRelease, namespace: defaultNamespace,
			args: []string{"--set", "replicas.networkPolicy.enabled=false"}, watchNamespace: defaultNamespace,
		},
		{
			name: "all-on, disabled", release: "ml", namespace: "ml-serving",
			args:           []string{"-f", allOnValues, "--set", "replicas.networkPolicy.enabled=false"},
			watchNamespace: "ml-models",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := decodeAll(t, helmTemplate(t, tc.release, tc.namespace, tc.args...))
			nps := byKind(objs, "NetworkPolicy")
			if !tc.want {
				if len(nps) != 0 {
					t.Fatalf("%d NetworkPolicies rendered with replicas.networkPolicy.enabled=false", len(nps))
				}
				return
			}
			if len(nps) != 1 {
				t.Fatalf("%d NetworkPolicies rendered, want 1", len(nps))
			}
			np := typed[*networkingv1.NetworkPolicy](t, nps[0])
			if np.Namespace != tc.watchNamespace {
				t.Errorf("NetworkPolicy %s in namespace %q, want %q (where the operator creates replica pods)", np.Name, np.Namespace, tc.watchNamespace)
			}
			if diff := cmp.Diff([]networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, np.Spec.PolicyTypes); diff != "" {
				t.Errorf("policyTypes (-want +got):\n%s", diff)
			}
			pods := operatorPods(t, tc.watchNamespace)
			deps := map[string]*appsv1.Deployment{}
			for _, u := range byKind(objs, "Deployment") {
				d := typed[*appsv1.Deployment](t, u)
				deps[d.Spec.Template.Labels["app.kubernetes.io/component"]] = d
			}
			if deps["gateway"] == nil || deps["operator"] == nil {
				t.Fatalf("want an operator and a gateway Deployment, got %v", deps)
			}
			pods["gateway pod"] = deps["gateway"].Spec.Template.Labels
			pods["operator pod"] = deps["operator"].Spec.Template.Labels
			sel := labelSelector(t, &np.Spec.PodSelector)
			for what, want := range map[string]bool{"replica pod": true, "balloon pod": false, "pre-pull pod": false, "gateway pod": false, "operator pod": false} {
				if got := sel.Matches(labels.Set(pods[what])); got != want {
					t.Errorf("podSelector %s selects a %s (labels %v): %v, want %v", sel, what, pods[what], got, want)
				}
			}

			if len(np.Spec.Ingress) != 1 {
				t.Fatalf("%d ingress rules, want 1", len(np.Spec.Ingress))
			}
			rule := np.Spec.Ingress[0]
			replicaPort := replicaContainerPort(t, tc.watchNamespace)
			if len(rule.Ports) != 1 || rule.Ports[0].Port == nil || rule.Ports[0].Port.IntValue() != int(replicaPort.ContainerPort) ||
				rule.Ports[0].Protocol == nil || *rule.Ports[0].Protocol != replicaPort.Protocol || rule.Ports[0].EndPort != nil {
				var got []string
				for _, p := range rule.Ports {
					port, end := "-", "-"
					if p.Port != nil {
						port = p.Port.String()
					}
					if p.EndPort != nil {
						end = fmt.Sprint(*p.EndPort)
					}
					proto := "-"
					if p.Protocol != nil {
						proto = string(*p.Protocol)
					}
					got = append(got, proto+"/"+port+" endPort "+end)
				}
				t.Errorf("ingress ports %v, want only %s/%d, the replica container's port", got, replicaPort.Protocol, replicaPort.ContainerPort)
			}
			if len(rule.From) != 2+len(tc.extra) {
				t.Fatalf("%d ingress peers, want the gateways, the operators and %d from extraFrom: %+v", len(rule.From), len(tc.extra), rule.From)
			}
			// The first two peers let in the release's gateways and
			// operators, each of them only, and only from the release
			// namespace.
			for i, component := range []string{"gateway", "operator"} {
				peer := rule.From[i]
				if peer.IPBlock != nil || peer.PodSelector == nil {
					t.Errorf("peer %d: %+v, want a podSelector for the %ss", i, peer, component)
					continue
				}
				ps := labelSelector(t, peer.PodSelector)
				for what, l := range pods {
					if got, want := ps.Matches(labels.Set(l)), what == component+" pod"; got != want {
						t.Errorf("peer %d (%ss): podSelector %s matches a %s: %v, want %v", i, component, ps, what, got, want)
					}
				}
				if tc.namespace == tc.watchNamespace {
					if peer.NamespaceSelector != nil {
						t.Errorf("peer %d (%ss): namespaceSelector %+v, want none: the release serves its own namespace", i, component, peer.NamespaceSelector)
					}
					continue
				}
				if peer.NamespaceSelector == nil {
					t.Errorf("peer %d (%ss): no namespaceSelector, so it matches pods of %s, not of the release namespace %s", i, component, tc.watchNamespace, tc.namespace)
					continue
				}
				ns := labelSelector(t, peer.NamespaceSelector)
				for name, want := range map[string]bool{tc.namespace: true, tc.watchNamespace: false, "default": false} {
					if got := ns.Matches(labels.Set{nsNameLabel: name}); got != want {
						t.Errorf("peer %d (%ss): namespaceSelector %s matches namespace %s: %v, want %v", i, component, ns, name, got, want)
					}
				}
			}
			if diff := cmp.Diff(tc.extra, rule.From[2:], cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("extraFrom peers (-want +got):\n%s", diff)
			}
		})
	}
}

// operatorPods returns the labels of the pods the operator creates in
// namespace, by kind: a replica pod (as the kube backend builds it, with the
// overrides of a ModelDeployment whose template labels try to pass for a
// replica), a warm-pool balloon pod and an image pre-pull pod.
func operatorPods(t *testing.T, namespace string) map[string]map[string]string {
	t.Helper()
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "diabetes", Namespace: namespace}}
	md.Spec.Template.Labels = map[string]string{operator.LabelDeployment: "diabetes", "team": "ml"}
	rp := replicaPod(t, namespace)
	operator.ApplyOverrides(rp, &md.Spec.Template)
	balloon := operator.BalloonPod(md, 0, operator.ColdStartOptions{WarmPoolPriorityClass: "ebb-warm-pool"})
	prePull := operator.PrePullDaemonSet(md, operator.ColdStartOptions{})
	return map[string]map[string]string{
		"replica pod":  rp.Labels,
		"balloon pod":  balloon.Labels,
		"pre-pull pod": prePull.Spec.Template.Labels,
	}
}

// replicaPod is the pod the kube backend creates for a replica of
// deployment diabetes, version 3, in namespace.
func replicaPod(t *testing.T, namespace string) *corev1.Pod {
	t.Helper()
	// Pod builds the pod without calling the apiserver: any client will do.
	b, err := kube.New(kube.Options{Client: &kubernetes.Clientset{}, Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	return b.Pod(replica.Spec{ID: "diabetes-abc12", Deployment: "diabetes", Version: "diabetes:3", Engine: "trees", Model: "/models/diabetes.json"})
}

// replicaContainerPort is the port the replica container serves on.
func replicaContainerPort(t *testing.T, namespace string) corev1.ContainerPort {
	t.Helper()
	for _, c := range replicaPod(t, namespace).Spec.Containers {
		if c.Name == kube.ContainerName && len(c.Ports) == 1 {
			return c.Ports[0]
		}
	}
	t.Fatalf("the replica pod has no container %s with one port", kube.ContainerName)
	return corev1.ContainerPort{}
}

func labelSelector(t *testing.T, s *metav1.LabelSelector) labels.Selector {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Fatalf("label selector %+v: %v", s, err)
	}
	return sel
}
