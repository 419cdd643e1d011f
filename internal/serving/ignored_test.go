package serving

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestIgnored(t *testing.T) {
	limits := func(l ResourceList) Template {
		return Template{Resources: ResourceRequirements{Limits: l}}
	}
	tests := []struct {
		name string
		spec Spec
		want []string
	}{
		{name: "plain spec", spec: Spec{Engine: "trees"}},
		{name: "a pin is honoured", spec: Spec{Engine: "trees", Replicas: new(int32)}},
		{name: "cpu and memory limits of a Go engine are honoured", spec: Spec{Engine: "onnx", Template: limits(ResourceList{
			ResourceCPU: resource.MustParse("2"), ResourceMemory: resource.MustParse("1Gi"),
		})}},
		{name: "cpu limit of engine python", spec: Spec{Engine: "python", Template: limits(ResourceList{ResourceCPU: resource.MustParse("2")})},
			want: []string{"template.resources.limits.cpu: engine python runs the model in a process of its own, which ebb up does not limit"}},
		{name: "devices", spec: Spec{Engine: "onnx", Template: limits(ResourceList{"nvidia.com/gpu": resource.MustParse("1"), "nvidia.com/mig-1g.10gb": resource.MustParse("1")})},
			want: []string{
				"template.resources.limits.nvidia.com/gpu: ebb up does not allocate devices or extended resources: replicas see the whole machine",
				"template.resources.limits.nvidia.com/mig-1g.10gb: ebb up does not allocate devices or extended resources: replicas see the whole machine",
			}},
		{name: "every pod field", spec: Spec{Engine: "trees",
			Template: Template{
				Image: "img", ImagePullPolicy: PullAlways,
				Resources:         ResourceRequirements{Requests: ResourceList{ResourceCPU: resource.MustParse("1")}, Claims: []ResourceClaim{{Name: "gpu"}}},
				NodeSelector:      map[string]string{"a": "b"},
				Tolerations:       []Toleration{{Key: "k"}},
				Affinity:          &Affinity{},
				PriorityClassName: "high", ServiceAccountName: "sa",
				Labels: map[string]string{"team": "ml"}, Annotations: map[string]string{"a": "b"},
			},
			ColdStart: ColdStart{WarmPool: 2, PrePull: true},
		}, want: []string{
			"template.image: replicas are processes of this ebb binary, not containers",
			"template.imagePullPolicy: no images to pull on one machine",
			"template.resources.requests: no scheduler reserves resources on one machine",
			"template.resources.claims: no resource claims on one machine",
			"template.nodeSelector: no nodes to select on one machine",
			"template.tolerations: no node taints to tolerate on one machine",
			"template.affinity: no nodes to place replicas on one machine",
			"template.priorityClassName: no preemption between replicas on one machine",
			"template.serviceAccountName: replicas run as the user of ebb up",
			"template.labels: replicas are processes, which carry no labels",
			"template.annotations: replicas are processes, which carry no annotations",
			"coldStart.warmPool: no nodes to keep warm on one machine",
			"coldStart.prePull: no images to pull on one machine",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Ignored(&tt.spec)); diff != "" {
				t.Errorf("Ignored (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProcessEnv(t *testing.T) {
	with := func(engine string, env map[string]string, l ResourceList) *Spec {
		return &Spec{Engine: engine, Env: env, Template: Template{Resources: ResourceRequirements{Limits: l}}}
	}
	tests := []struct {
		name string
		spec *Spec
		want map[string]string
	}{
		{name: "no limits", spec: with("trees", nil, nil)},
		{name: "fractional cpu rounds up", spec: with("onnx", nil, ResourceList{ResourceCPU: resource.MustParse("1500m")}), want: map[string]string{"GOMAXPROCS": "2"}},
		{name: "tiny cpu is one thread", spec: with("onnx", nil, ResourceList{ResourceCPU: resource.MustParse("100m")}), want: map[string]string{"GOMAXPROCS": "1"}},
		{name: "memory in bytes", spec: with("trees", nil, ResourceList{ResourceMemory: resource.MustParse("512Mi")}), want: map[string]string{"GOMEMLIMIT": "536870912"}},
		{name: "both", spec: with("echo", nil, ResourceList{ResourceCPU: resource.MustParse("4"), ResourceMemory: resource.MustParse("2G")}),
			want: map[string]string{"GOMAXPROCS": "4", "GOMEMLIMIT": "2000000000"}},
		{name: "the spec's own env wins", spec: with("onnx", map[string]string{"GOMAXPROCS": "8"}, ResourceList{ResourceCPU: resource.MustParse("2"), ResourceMemory: resource.MustParse("1Gi")}),
			want: map[string]string{"GOMEMLIMIT": "1073741824"}},
		{name: "not for python", spec: with("python", nil, ResourceList{ResourceCPU: resource.MustParse("2")})},
		{name: "devices set nothing", spec: with("onnx", nil, ResourceList{"nvidia.com/gpu": resource.MustParse("1")})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ProcessEnv(tt.spec)); diff != "" {
				t.Errorf("ProcessEnv (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOneSpecJSON checks that a spec written before replicas, template and
// coldStart moved into it encodes exactly as before, and that the
// cluster's fields decode from the JSON a ModelDeployment carries.
func TestOneSpecJSON(t *testing.T) {
	old := `{"model":"m.json","engine":"trees","scaling":{"minReplicas":0,"maxReplicas":4,"targetConcurrency":8,"scaleToZeroAfter":"1m0s","stableWindow":"1m0s","panicWindowPercent":10,"panicThresholdPercent":200}}`
	var s Spec
	if err := json.Unmarshal([]byte(old), &s); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(s)
	if string(b) != old {
		t.Errorf("round trip of an old spec:\n got %s\nwant %s", b, old)
	}
	full := `{"model":"m.json","engine":"onnx","scaling":{"minReplicas":0,"maxReplicas":4,"targetConcurrency":8,"scaleToZeroAfter":"1m0s","stableWindow":"1m0s","panicWindowPercent":10,"panicThresholdPercent":200},` +
		`"replicas":0,"template":{"image":"img","resources":{"limits":{"cpu":"2","nvidia.com/gpu":"1"}},"nodeSelector":{"gpu":"a100"},"tolerations":[{"key":"gpu","operator":"Exists"}]},"coldStart":{"warmPool":1,"prePull":true}}`
	s = Spec{}
	if err := json.Unmarshal([]byte(full), &s); err != nil {
		t.Fatal(err)
	}
	if n, ok := s.Pinned(); !ok || n != 0 || !s.ScaledToZero() {
		t.Errorf("replicas 0: Pinned = %d, %v; ScaledToZero = %v", n, ok, s.ScaledToZero())
	}
	if q := s.Template.Resources.Limits["nvidia.com/gpu"]; q.Value() != 1 || s.ColdStart.WarmPool != 1 || s.Template.NodeSelector["gpu"] != "a100" {
		t.Errorf("cluster fields did not decode: %+v", s)
	}
	b, _ = json.Marshal(s)
	if string(b) != full {
		t.Errorf("round trip of a full spec:\n got %s\nwant %s", b, full)
	}
	c := s.DeepCopy()
	c.Template.NodeSelector["gpu"] = "h100"
	*c.Replicas = 5
	if s.Template.NodeSelector["gpu"] != "a100" || *s.Replicas != 0 {
		t.Error("DeepCopy shares the template or the pin with the original")
	}
}

func TestValidatePinAndColdStart(t *testing.T) {
	d := valid()
	d.Spec.Replicas = new(int32)
	*d.Spec.Replicas = -1
	d.Spec.ColdStart.WarmPool = -2
	err := d.Validate()
	for _, want := range []string{"spec.replicas: must be 0 or more, got -1: remove it to autoscale", "spec.coldStart.warmPool: must be 0 or more"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v; want it to contain %q", err, want)
		}
	}
	d = valid()
	d.Spec.Replicas = new(int32)
	*d.Spec.Replicas = 10 // above maxReplicas: a pin overrides the range
	if err := d.Validate(); err != nil {
		t.Errorf("Validate of a pin above maxReplicas = %v; want nil", err)
	}
}

func TestOIPVersion(t *testing.T) {
	for in, want := range map[string]string{"diabetes:3": "3", "diabetes@champion": "", "": "", "/models/m.json": "", "d:12": "12"} {
		if got := OIPVersion(in); got != want {
			t.Errorf("OIPVersion(%q) = %q; want %q", in, got, want)
		}
	}
}
