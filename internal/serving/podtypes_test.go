package serving

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestTemplateJSON decodes templates written as for a Kubernetes pod,
// encodes them, and wants the given JSON, which must read back to itself:
// a spec reads back as it was written. (internal/replica/kube checks that
// every field has the JSON of its core/v1 counterpart.)
func TestTemplateJSON(t *testing.T) {
	for _, tt := range []struct {
		name, in, want string
	}{
		{name: "empty", in: `{}`, want: `{}`},
		{name: "empty maps and lists are unset", in: `{"labels":{},"tolerations":[],"resources":{"limits":{},"requests":{},"claims":[]}}`, want: `{}`},
		{name: "empty limits in a template that sets something", in: `{"image":"x","resources":{"limits":{}}}`, want: `{"image":"x"}`},
		{name: "resources", in: `{"resources":{"limits":{"cpu":"1500m","nvidia.com/gpu":"1"},"requests":{"memory":"1Gi"},"claims":[{"name":"gpu","request":"r"}]}}`,
			want: `{"resources":{"limits":{"cpu":"1500m","nvidia.com/gpu":"1"},"requests":{"memory":"1Gi"},"claims":[{"name":"gpu","request":"r"}]}}`},
		{name: "quantities in canonical form", in: `{"resources":{"limits":{"memory":"1024Mi","cpu":2}}}`, want: `{"resources":{"limits":{"cpu":"2","memory":"1Gi"}}}`},
		{name: "tolerations", in: `{"imagePullPolicy":"IfNotPresent","tolerations":[{"key":"k","operator":"Equal","value":"v","effect":"NoExecute","tolerationSeconds":30},{}]}`,
			want: `{"imagePullPolicy":"IfNotPresent","tolerations":[{"key":"k","operator":"Equal","value":"v","effect":"NoExecute","tolerationSeconds":30},{}]}`},
		{name: "empty affinity is set", in: `{"affinity":{}}`, want: `{"affinity":{}}`},
		{name: "node affinity",
			in: `{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"zone","operator":"In","values":["a"]}],"matchFields":[{"key":"metadata.name","operator":"NotIn","values":["n"]}]}]},` +
				`"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":10,"preference":{"matchExpressions":[{"key":"gpu","operator":"Exists"}]}}]}}}`,
			want: `{"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"zone","operator":"In","values":["a"]}],"matchFields":[{"key":"metadata.name","operator":"NotIn","values":["n"]}]}]},` +
				`"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":10,"preference":{"matchExpressions":[{"key":"gpu","operator":"Exists"}]}}]}}}`},
		{name: "pod affinity and anti-affinity",
			in: `{"affinity":{"podAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"labelSelector":{"matchLabels":{"app":"db"},"matchExpressions":[{"key":"tier","operator":"NotIn","values":["x"]}]},"namespaces":["a"],"topologyKey":"topology.kubernetes.io/zone","namespaceSelector":{},"matchLabelKeys":["rev"],"mismatchLabelKeys":["team"]}]},` +
				`"podAntiAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":100,"podAffinityTerm":{"topologyKey":"kubernetes.io/hostname"}}]}}}`,
			want: `{"affinity":{"podAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"labelSelector":{"matchLabels":{"app":"db"},"matchExpressions":[{"key":"tier","operator":"NotIn","values":["x"]}]},"namespaces":["a"],"topologyKey":"topology.kubernetes.io/zone","namespaceSelector":{},"matchLabelKeys":["rev"],"mismatchLabelKeys":["team"]}]},` +
				`"podAntiAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":100,"podAffinityTerm":{"topologyKey":"kubernetes.io/hostname"}}]}}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var spec Spec
			if err := json.Unmarshal([]byte(`{"model":"m","template":`+tt.in+`}`), &spec); err != nil {
				t.Fatal(err)
			}
			want := `{"model":"m","scaling":{"minReplicas":0,"maxReplicas":0,"targetConcurrency":0,"scaleToZeroAfter":"0s","stableWindow":"0s","panicWindowPercent":0,"panicThresholdPercent":0}`
			if tt.want != "{}" {
				want += `,"template":` + tt.want
			}
			want += "}"
			got := templateJSON(t, spec)
			if got != want {
				t.Fatalf("encoded\n got %s\nwant %s", got, want)
			}
			var back Spec
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Fatal(err)
			}
			if again := templateJSON(t, back); again != got {
				t.Errorf("changed on a round trip:\n first %s\nsecond %s", got, again)
			}
			if spec.Template.IsZero() != (tt.want == "{}") {
				t.Errorf("IsZero = %v for %s", spec.Template.IsZero(), tt.in)
			}
		})
	}
}

// TestTemplateDeepCopy checks that a copy shares nothing with the
// original, down to affinity's label selectors.
func TestTemplateDeepCopy(t *testing.T) {
	sec := int64(30)
	orig := Template{
		Resources:   ResourceRequirements{Limits: ResourceList{ResourceCPU: resource.MustParse("1")}, Claims: []ResourceClaim{{Name: "c"}}},
		Tolerations: []Toleration{{Key: "k", TolerationSeconds: &sec}},
		Affinity: &Affinity{PodAffinity: &PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []PodAffinityTerm{{
			LabelSelector: &LabelSelector{MatchLabels: map[string]string{"app": "a"}, MatchExpressions: []LabelSelectorRequirement{{Key: "k", Operator: LabelSelectorOpIn, Values: []string{"v"}}}},
			TopologyKey:   "zone",
		}}}},
	}
	want := templateJSON(t, orig)
	c := orig.DeepCopy()
	c.Resources.Limits[ResourceCPU] = resource.MustParse("2")
	c.Resources.Claims[0].Name = "d"
	*c.Tolerations[0].TolerationSeconds = 1
	term := &c.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
	term.LabelSelector.MatchLabels["app"] = "b"
	term.LabelSelector.MatchExpressions[0].Values[0] = "w"
	if diff := cmp.Diff(want, templateJSON(t, orig)); diff != "" {
		t.Errorf("changing a DeepCopy changed the original (-before +after):\n%s", diff)
	}
}

func templateJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
