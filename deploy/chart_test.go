package deploy

import (
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestHelmLint(t *testing.T) {
	helm := tool(t, "helm")
	for _, args := range [][]string{nil, {"-f", allOnValues}} {
		t.Run(strings.Join(append([]string{"lint"}, args...), " "), func(t *testing.T) {
			out := run(t, helm, append([]string{"lint", "--strict", chartDir}, args...)...)
			if !strings.Contains(string(out), "0 chart(s) failed") {
				t.Errorf("helm lint:\n%s", out)
			}
		})
	}
}

// chartCase is one set of values the chart is rendered with.
type chartCase struct {
	name, release, namespace string
	args                     []string
	// what the values imply
	image                 string
	operatorSA, gatewaySA string
	watchNamespace        string
	kinds                 map[string]int
	rbac, grpc            bool
	priorityClass         string
	// tokenSecrets are the admin and gateway token Secrets; nil: auth off.
	tokenSecrets []string
	// tls: the gateway, operator and replica TLS Secrets (tls.*), and the
	// gateways' replica client Secret; nil: all plain HTTP.
	tls *tlsSecrets
	// oidc are the --oidc-* args the operator and gateways get; nil: none.
	oidc []string
	// tracing are the --otlp-* and --trace-sample-ratio args the operator
	// and gateways get, nil: none; tracingCA the Secret of their CA file.
	tracing   []string
	tracingCA string
}

// tlsSecrets are the Secrets of the tls.* values.
type tlsSecrets struct {
	gateway, operator, replicas, replicaClient string
	replicaServerName                          string
}

var chartCases = []chartCase{
	{
		name: "defaults", release: defaultRelease, namespace: defaultNamespace,
		image:      "ghcr.io/ebb-ml/ebb:0.1.0",
		operatorSA: "ebb-operator", gatewaySA: "ebb-gateway", watchNamespace: defaultNamespace,
		kinds: map[string]int{
			"CustomResourceDefinition": 4, "Deployment": 2, "PodDisruptionBudget": 1, "PriorityClass": 1,
			"Role": 3, "RoleBinding": 3, "Service": 2, "ServiceAccount": 2, "PersistentVolumeClaim": 1,
			"NetworkPolicy": 1,
		},
		rbac: true, grpc: true, priorityClass: "ebb-warm-pool",
		tokenSecrets: []string{"ebb-admin-token", "ebb-gateway-token"},
	},
	{
		name: "all-on", release: "ml", namespace: "ml-serving", args: []string{"-f", allOnValues},
		image:      "registry.example.com/ml/ebb:test",
		operatorSA: "ebb-all-operator-sa", gatewaySA: "ebb-all-gateway", watchNamespace: "ml-models",
		kinds: map[string]int{
			"CustomResourceDefinition": 4, "Deployment": 2, "PodDisruptionBudget": 1, "PriorityClass": 1,
			"Role": 3, "RoleBinding": 3, "Service": 2, "ServiceAccount": 2, "PersistentVolumeClaim": 1, "ServiceMonitor": 1,
			"NetworkPolicy": 1, "PrometheusRule": 1, "ConfigMap": 1,
		},
		rbac: true, grpc: true, priorityClass: "ebb-all-balloons",
		tokenSecrets: []string{"ebb-all-admin", "ebb-all-gateways"},
		tls: &tlsSecrets{gateway: "ebb-all-gateway-tls", operator: "ebb-all-operator-tls",
			replicas: "ebb-all-replica-tls", replicaClient: "ebb-all-replica-client-tls", replicaServerName: "replicas.ml-models"},
		oidc: []string{
			"--oidc-issuer=https://keycloak.example/realms/ml", "--oidc-audience=ebb", "--oidc-scopes-claim=realm_access.roles",
			"--oidc-scope-map=ml-admins=admin", "--oidc-scope-map=ml-deployers=deploy+models:write", "--oidc-scope-map=team-fraud=predict:fraud-*",
		},
		tracing: []string{
			"--otlp-endpoint=https://otel-collector.observability:4317", "--otlp-protocol=grpc", "--trace-sample-ratio=0.1",
			"--otlp-ca-file=/etc/ebb/otlp-ca/ca.crt",
		},
		tracingCA: "ebb-all-otlp-ca",
	},
	{
		name: "tls, one Secret for the replicas", release: defaultRelease, namespace: defaultNamespace,
		args: []string{
			"--set", "tls.gateway.secretName=gw-tls", "--set", "tls.operator.secretName=op-tls",
			"--set", "tls.replicas.secretName=replica-tls",
			"--set", "tracing.endpoint=http://127.0.0.1:4318", "--set", "tracing.protocol=http",
		},
		image:      "ghcr.io/ebb-ml/ebb:0.1.0",
		operatorSA: "ebb-operator", gatewaySA: "ebb-gateway", watchNamespace: defaultNamespace,
		kinds: map[string]int{
			"CustomResourceDefinition": 4, "Deployment": 2, "PodDisruptionBudget": 1, "PriorityClass": 1,
			"Role": 3, "RoleBinding": 3, "Service": 2, "ServiceAccount": 2, "PersistentVolumeClaim": 1,
			"NetworkPolicy": 1,
		},
		rbac: true, grpc: true, priorityClass: "ebb-warm-pool",
		tokenSecrets: []string{"ebb-admin-token", "ebb-gateway-token"},
		tls:          &tlsSecrets{gateway: "gw-tls", operator: "op-tls", replicas: "replica-tls", replicaClient: "replica-tls", replicaServerName: "ebb-replica"},
		tracing:      []string{"--otlp-endpoint=http://127.0.0.1:4318", "--otlp-protocol=http", "--trace-sample-ratio=1"},
	},
	{
		name: "all-off", release: "bare", namespace: "bare", args: []string{
			"--set", "rbac.create=false", "--set", "warmPool.priorityClass.create=false",
			"--set", "gateway.podDisruptionBudget.enabled=false", "--set", "gateway.grpcPort=0",
			"--set", "operator.serviceAccount.create=false", "--set", "gateway.serviceAccount.create=false",
			"--set", "operator.leaderElection.enabled=false",
			"--set", "registry.sqlite.persistence.enabled=false",
			"--set", "auth.enabled=false", "--set", "replicas.networkPolicy.enabled=false",
		},
		image:      "ghcr.io/ebb-ml/ebb:0.1.0",
		operatorSA: "default", gatewaySA: "default", watchNamespace: "bare",
		kinds: map[string]int{"CustomResourceDefinition": 4, "Deployment": 2, "Service": 2},
	},
}

// Least privilege, written out: every right each service account gets, as
// "group/resource" → verbs. A change to the chart's RBAC must change this.
var (
	operatorGrants = map[string][]string{
		"serving.ebb.dev/modeldeployments":            {"create", "delete", "get", "list", "patch", "update", "watch"},
		"serving.ebb.dev/modeldeployments/status":     {"get", "patch", "update"},
		"serving.ebb.dev/modeldeployments/scale":      {"get", "patch", "update"},
		"serving.ebb.dev/modeldeployments/finalizers": {"update"},
		"serving.ebb.dev/modelroutes":                 {"create", "delete", "get", "list", "patch", "update", "watch"},
		"serving.ebb.dev/modeljobs":                   {"create", "delete", "get", "list", "patch", "update", "watch"},
		"serving.ebb.dev/modeljobs/status":            {"get", "patch", "update"},
		"serving.ebb.dev/modelpools":                  {"create", "delete", "get", "list", "patch", "update", "watch"},
		"serving.ebb.dev/modelpools/status":           {"get", "patch", "update"},
		"serving.ebb.dev/modelpools/finalizers":       {"update"},
		"core/pods":                                   {"create", "delete", "get", "list", "patch", "watch"},
		"core/pods/log":                               {"get"},
		"core/services":                               {"create", "delete", "get", "list", "patch", "update", "watch"},
		"core/events":                                 {"create", "get", "list", "patch", "watch"},
		"events.k8s.io/events":                        {"create", "get", "list", "patch", "watch"},
		"discovery.k8s.io/endpointslices":             {"get", "list", "watch"},
		"apps/daemonsets":                             {"create", "delete", "get", "list", "patch", "update", "watch"},
		"coordination.k8s.io/leases":                  {"create", "get", "list", "patch", "update", "watch"},
	}
	// With auth on, in the release namespace: the two token Secrets by
	// name, and create, which RBAC cannot restrict by name.
	operatorSecretGrants = func(admin, gateway string) map[string][]string {
		return map[string][]string{
			"core/secrets": {"create"},
			"core/secrets[" + admin + "," + gateway + "]": {"get", "update"},
		}
	}
	gatewayGrants = map[string][]string{
		"serving.ebb.dev/modeldeployments": {"get", "list", "watch"},
		"serving.ebb.dev/modelroutes":      {"get", "list", "watch"},
		"discovery.k8s.io/endpointslices":  {"get", "list", "watch"},
	}
)

func TestChart(t *testing.T) {
	for _, tc := range chartCases {
		t.Run(tc.name, func(t *testing.T) {
			objs := decodeAll(t, helmTemplate(t, tc.release, tc.namespace, tc.args...))
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetKind()]++
			}
			if diff := cmp.Diff(tc.kinds, kinds); diff != "" {
				t.Errorf("kinds rendered (-want +got):\n%s", diff)
			}
			checkNamespaces(t, objs, tc)
			deps := checkDeployments(t, objs, tc)
			checkServices(t, objs, deps)
			checkWiring(t, objs, deps, tc)
			if tc.rbac {
				checkRBAC(t, objs, tc)
			}
		})
	}
}

var clusterKinds = []string{"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "Namespace"}

// checkNamespaces checks that RBAC and the replicas' NetworkPolicy land in
// the served namespace, the rest in the release namespace, cluster-scoped
// kinds nowhere.
func checkNamespaces(t *testing.T, objs []*unstructured.Unstructured, tc chartCase) {
	t.Helper()
	for _, o := range objs {
		want := tc.namespace
		switch k := o.GetKind(); {
		case slices.Contains(clusterKinds, k):
			want = ""
		case (k == "Role" || k == "RoleBinding") && strings.HasSuffix(o.GetName(), "-token-secrets"):
			want = tc.namespace // beside the gateway pods that read them
		case k == "Role" || k == "RoleBinding" || k == "NetworkPolicy":
			want = tc.watchNamespace // where the replica pods run
		}
		if got := o.GetNamespace(); got != want {
			t.Errorf("%s %s: namespace %q, want %q", o.GetKind(), o.GetName(), got, want)
		}
	}
}

// checkDeployments checks the promises every pod of the chart keeps and
// returns the Deployments by component ("operator", "gateway").
func checkDeployments(t *testing.T, objs []*unstructured.Unstructured, tc chartCase) map[string]*appsv1.Deployment {
	t.Helper()
	deps := map[string]*appsv1.Deployment{}
	for _, u := range byKind(objs, "Deployment") {
		d := typed[*appsv1.Deployment](t, u)
		component := d.Spec.Template.Labels["app.kubernetes.io/component"]
		deps[component] = d
		pod := d.Spec.Template.Spec
		if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", d.Name)
		}
		wantSA := map[string]string{"operator": tc.operatorSA, "gateway": tc.gatewaySA}[component]
		if pod.ServiceAccountName != wantSA {
			t.Errorf("%s: serviceAccountName %q, want %q", d.Name, pod.ServiceAccountName, wantSA)
		}
		for _, c := range pod.Containers {
			where := d.Name + "/" + c.Name
			if c.Image != tc.image {
				t.Errorf("%s: image %q, want %q", where, c.Image, tc.image)
			}
			if len(c.Args) == 0 || c.Args[0] != component {
				t.Errorf("%s: args %q do not start with the subcommand %q", where, c.Args, component)
			}
			sc := c.SecurityContext
			switch {
			case sc == nil:
				t.Errorf("%s: no securityContext", where)
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Errorf("%s: root file system is writable", where)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("%s: privilege escalation allowed", where)
			case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
				t.Errorf("%s: capabilities %+v, want drop ALL and add none", where, sc.Capabilities)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				t.Errorf("%s: resources.requests %v lack cpu or memory", where, c.Resources.Requests)
			}
			wantScheme := corev1.URISchemeHTTP
			if tc.tls != nil {
				wantScheme = corev1.URISchemeHTTPS
			}
			for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.StrVal != "http" || !hasPort(c, "http") {
					t.Errorf("%s: %s probe %+v is not an HTTP probe on the http port", where, name, p)
				} else if got := p.HTTPGet.Scheme; got != wantScheme && (got != "" || wantScheme != corev1.URISchemeHTTP) {
					t.Errorf("%s: %s probe scheme %s, want %s", where, name, got, wantScheme)
				}
			}
		}
	}
	if deps["operator"] == nil || deps["gateway"] == nil {
		t.Fatalf("want an operator and a gateway Deployment, got %v", deps)
	}
	if g := deps["gateway"].Spec.Template.Spec.Containers[0]; hasPort(g, "grpc") != tc.grpc {
		t.Errorf("gateway grpc port present: %v, want %v", hasPort(g, "grpc"), tc.grpc)
	}
	for path, want := range map[string]string{"livenessProbe": "/v2/health/live", "readinessProbe": "/v2/health/ready"} {
		c := deps["gateway"].Spec.Template.Spec.Containers[0]
		p := map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe}[path]
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want {
			t.Errorf("gateway %s: %+v, want path %s", path, p, want)
		}
	}
	return deps
}

func hasPort(c corev1.Container, name string) bool {
	return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == name })
}

// checkServices checks that every Service selects one Deployment's pods and
// targets ports its container has.
func checkServices(t *testing.T, objs []*unstructured.Unstructured, deps map[string]*appsv1.Deployment) {
	t.Helper()
	for _, u := range byKind(objs, "Service") {
		svc := typed[*corev1.Service](t, u)
		var dep *appsv1.Deployment
		for _, d := range deps {
			if selects(svc.Spec.Selector, d.Spec.Template.Labels) {
				if dep != nil {
					t.Errorf("service %s selects the pods of %s and %s", svc.Name, dep.Name, d.Name)
				}
				dep = d
			}
		}
		if dep == nil {
			t.Errorf("service %s selects no Deployment's pods", svc.Name)
			continue
		}
		for _, p := range svc.Spec.Ports {
			if !hasPort(dep.Spec.Template.Spec.Containers[0], p.TargetPort.StrVal) {
				t.Errorf("service %s port %s targets %q, which %s's container does not have", svc.Name, p.Name, p.TargetPort.String(), dep.Name)
			}
		}
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkWiring checks what ties the pieces together: the gateway's operator
// URL, the warm-pool PriorityClass the operator is told about, the
// ServiceMonitor's ports.
func checkWiring(t *testing.T, objs []*unstructured.Unstructured, deps map[string]*appsv1.Deployment, tc chartCase) {
	t.Helper()
	services := map[string]*corev1.Service{}
	for _, u := range byKind(objs, "Service") {
		svc := typed[*corev1.Service](t, u)
		services[svc.Name] = svc
	}
	opSvc := deps["operator"].Name // the operator's Service shares its Deployment's name
	if s := services[opSvc]; s == nil || len(s.Spec.Ports) == 0 {
		t.Fatalf("no Service %s for the operator", opSvc)
	}
	opPort := services[opSvc].Spec.Ports[0]
	if opPort.Name != "http" || opPort.TargetPort.StrVal != "http" {
		t.Errorf("operator Service's first port %+v is not its http port", opPort)
	}
	opArgs := deps["operator"].Spec.Template.Spec.Containers[0].Args
	gwArgs := deps["gateway"].Spec.Template.Spec.Containers[0].Args
	opScheme := "http"
	if tc.tls != nil {
		opScheme = "https"
	}
	for _, want := range []string{
		fmt.Sprintf("--operator-url=%s://%s.%s.svc:%d", opScheme, opSvc, tc.namespace, opPort.Port),
		"--namespace=" + tc.watchNamespace,
	} {
		if !slices.Contains(gwArgs, want) {
			t.Errorf("gateway args %q lack %q", gwArgs, want)
		}
	}
	for _, want := range []string{
		"--namespace=" + tc.watchNamespace,
		"--leader-election-id=" + opSvc, // unique per release
		"--replica-image=" + tc.image,
		fmt.Sprintf("--addr=:%d", deps["operator"].Spec.Template.Spec.Containers[0].Ports[0].ContainerPort),
	} {
		if !slices.Contains(opArgs, want) {
			t.Errorf("operator args %q lack %q", opArgs, want)
		}
	}

	checkAuthWiring(t, deps, tc)
	checkTLSWiring(t, deps, tc)
	checkTracingWiring(t, deps, tc) // chart_tracing_test.go

	pcs := byKind(objs, "PriorityClass")
	if len(pcs) != 0 && tc.priorityClass == "" || len(pcs) == 0 && tc.priorityClass != "" {
		t.Errorf("%d PriorityClasses, want %q", len(pcs), tc.priorityClass)
	}
	for _, u := range pcs {
		pc := typed[*schedulingv1.PriorityClass](t, u)
		if pc.Name != tc.priorityClass || pc.Value >= 0 || pc.GlobalDefault ||
			pc.PreemptionPolicy == nil || *pc.PreemptionPolicy != corev1.PreemptNever {
			t.Errorf("PriorityClass %s value %d globalDefault %v preemption %v: want %s, negative, not default, never preempting",
				pc.Name, pc.Value, pc.GlobalDefault, pc.PreemptionPolicy, tc.priorityClass)
		}
	}

	for _, sm := range byKind(objs, "ServiceMonitor") {
		eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		for _, ep := range eps {
			port, _ := ep.(map[string]any)["port"].(string)
			found := false
			for _, s := range services {
				found = found || slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == port })
			}
			if !found {
				t.Errorf("ServiceMonitor endpoint port %q is on no Service", port)
			}
		}
	}
}

// checkRBAC compares each service account's rights with the written-out
// least-privilege sets. Every grant is namespaced: the kinds check already
// refuses ClusterRoles.
func checkRBAC(t *testing.T, objs []*unstructured.Unstructured, tc chartCase) {
	t.Helper()
	rules := map[string][]rbacv1.PolicyRule{} // Role name → rules
	for _, u := range byKind(objs, "Role") {
		rules[u.GetName()] = typed[*rbacv1.Role](t, u).Rules
	}
	grants := map[string]map[string][]string{} // SA → resource → verbs
	for _, u := range byKind(objs, "RoleBinding") {
		b := typed[*rbacv1.RoleBinding](t, u)
		r, ok := rules[b.RoleRef.Name]
		if b.RoleRef.Kind != "Role" || !ok {
			t.Errorf("RoleBinding %s refers to %s %s, which is not rendered", b.Name, b.RoleRef.Kind, b.RoleRef.Name)
		}
		for _, s := range b.Subjects {
			if s.Kind != "ServiceAccount" || s.Namespace != tc.namespace {
				t.Errorf("RoleBinding %s: subject %+v is not a service account of %s", b.Name, s, tc.namespace)
			}
			if grants[s.Name] == nil {
				grants[s.Name] = map[string][]string{}
			}
			addGrants(t, grants[s.Name], r)
		}
	}
	op := maps.Clone(operatorGrants)
	if len(tc.tokenSecrets) == 2 {
		maps.Copy(op, operatorSecretGrants(tc.tokenSecrets[0], tc.tokenSecrets[1]))
	}
	want := map[string]map[string][]string{tc.operatorSA: op, tc.gatewaySA: gatewayGrants}
	if diff := cmp.Diff(want, grants); diff != "" {
		t.Errorf("RBAC grants (-want +got):\n%s", diff)
	}
}

func addGrants(t *testing.T, into map[string][]string, rules []rbacv1.PolicyRule) {
	t.Helper()
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("unexpected rule %+v", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				if g == "*" || res == "*" || slices.Contains(r.Verbs, "*") {
					t.Errorf("wildcard rule %+v", r)
				}
				if g == "" {
					g = "core"
				}
				key := g + "/" + res
				if len(r.ResourceNames) > 0 {
					key += "[" + strings.Join(r.ResourceNames, ",") + "]"
				}
				verbs := append(into[key], r.Verbs...)
				slices.Sort(verbs)
				into[key] = slices.Compact(verbs)
			}
		}
	}
}

// TestChartArgsAcceptedByEbbCluster runs the binary each rendered container
// runs, ebb-cluster built from this tree, with the container's arguments
// plus --help: the command parses every flag (an unknown one fails) and
// exits without starting.
func TestChartArgsAcceptedByEbbCluster(t *testing.T) {
	tool(t, "helm")
	bin := t.TempDir()
	run(t, "go", "build", "-o", bin+"/", "../cmd/ebb-cluster")
	for _, tc := range chartCases {
		t.Run(tc.name, func(t *testing.T) {
			objs := decodeAll(t, helmTemplate(t, tc.release, tc.namespace, tc.args...))
			for _, u := range byKind(objs, "Deployment") {
				d := typed[*appsv1.Deployment](t, u)
				for _, c := range d.Spec.Template.Spec.Containers {
					if !slices.Equal(c.Command, []string{"ebb-cluster"}) {
						t.Errorf("%s/%s runs %q: want the command ebb-cluster, the cluster home's binary on the image's PATH", d.Name, c.Name, c.Command)
						continue
					}
					out, err := exec.Command(filepath.Join(bin, "ebb-cluster"), append(c.Args, "--help")...).CombinedOutput()
					if err != nil {
						t.Errorf("%s/%s: ebb-cluster %s: %v\n%s", d.Name, c.Name, strings.Join(c.Args, " "), err, out)
					}
				}
			}
		})
	}
}
