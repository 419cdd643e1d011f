package operator

import (
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDesiredStatusConditions(t *testing.T) {
	type cond struct{ Status, Reason string }
	zero := int32(0)
	tests := []struct {
		name string
		pin  *int32 // spec.replicas
		obs  observation
		want map[string]cond
	}{
		{
			name: "scaled to zero",
			obs:  observation{seen: true, generation: 2},
			want: map[string]cond{
				ConditionReady:   {"True", "ScaledToZero"},
				ConditionScaling: {"False", "Steady"},
				ConditionFailed:  {"False", "NoFailure"},
			},
		},
		{
			name: "scaled to zero by its owner",
			pin:  &zero,
			obs:  observation{seen: true, generation: 2},
			want: map[string]cond{
				ConditionReady:   {"False", "ScaledToZeroByOwner"},
				ConditionScaling: {"False", "Steady"},
				ConditionFailed:  {"False", "NoFailure"},
			},
		},
		{
			name: "starting",
			obs:  observation{seen: true, control: serving.Status{Replicas: 1, DesiredReplicas: 2}},
			want: map[string]cond{
				ConditionReady:   {"False", "ReplicasStarting"},
				ConditionScaling: {"True", "ScalingUp"},
				ConditionFailed:  {"False", "NoFailure"},
			},
		},
		{
			name: "ready",
			obs:  observation{seen: true, control: serving.Status{Replicas: 2, ReadyReplicas: 2, DesiredReplicas: 2}},
			want: map[string]cond{
				ConditionReady:   {"True", "ReplicasReady"},
				ConditionScaling: {"False", "Steady"},
				ConditionFailed:  {"False", "NoFailure"},
			},
		},
		{
			name: "draining",
			obs:  observation{seen: true, control: serving.Status{Replicas: 2, ReadyReplicas: 1, DesiredReplicas: 1}},
			want: map[string]cond{
				ConditionReady:   {"True", "ReplicasReady"},
				ConditionScaling: {"True", "ScalingDown"},
				ConditionFailed:  {"False", "NoFailure"},
			},
		},
		{
			name: "failing",
			obs:  observation{seen: true, control: serving.Status{DesiredReplicas: 1, Failure: "engine trees: no such file", Reason: "replicas fail to start: engine trees: no such file"}},
			want: map[string]cond{
				ConditionReady:   {"False", "ReplicasFailing"},
				ConditionScaling: {"True", "ScalingUp"},
				ConditionFailed:  {"True", "ReplicasFailing"},
			},
		},
		{
			name: "invalid",
			obs:  observation{seen: true, invalid: "spec.model: is required"},
			want: map[string]cond{
				ConditionReady:   {"False", "InvalidSpec"},
				ConditionScaling: {"False", "Steady"},
				ConditionFailed:  {"True", "InvalidSpec"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "m", Generation: 2}}
			md.Spec.Replicas = tt.pin
			st := desiredStatus(md, tt.obs, t0)
			got := map[string]cond{}
			for _, c := range st.Conditions {
				got[c.Type] = cond{string(c.Status), c.Reason}
				if c.ObservedGeneration != st.ObservedGeneration {
					t.Errorf("condition %s observedGeneration %d, status %d", c.Type, c.ObservedGeneration, st.ObservedGeneration)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
			if st.Selector != "serving.ebb.dev/deployment=m" {
				t.Errorf("selector %q", st.Selector)
			}
			if tt.obs.invalid != "" && FailureOf(&v1alpha1.ModelDeployment{Status: st}) == "" {
				t.Errorf("FailureOf is empty for an invalid spec")
			}
		})
	}
}

func TestDesiredStatusStable(t *testing.T) {
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "m", Generation: 1}}
	obs := observation{seen: true, generation: 1, control: serving.Status{Replicas: 1, ReadyReplicas: 1, DesiredReplicas: 1}}
	md.Status = desiredStatus(md, obs, t0)
	again := desiredStatus(md, obs, t0.Add(time.Minute))
	if !sameJSON(md.Status, again) {
		t.Errorf("status changed with nothing observed changing:\n%s", cmp.Diff(md.Status, again))
	}
	obs.control.ReadyReplicas = 0
	changed := desiredStatus(md, obs, t0.Add(time.Minute))
	c := findCondition(changed.Conditions, ConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse || !c.LastTransitionTime.Time.Equal(t0.Add(time.Minute)) {
		t.Errorf("Ready after the replica went away: %+v, want False since %v", c, t0.Add(time.Minute))
	}
}

func findCondition(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

func TestApplyOverrides(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelDeployment: "m"}},
		Spec: corev1.PodSpec{
			Containers:  []corev1.Container{{Name: "sidecar", Image: "side"}, {Name: ReplicaContainer, Image: "ebb:dev"}},
			Tolerations: []corev1.Toleration{{Key: "backend"}},
		},
	}
	o := &serving.Template{
		Image:     "ebb:gpu",
		Resources: serving.ResourceRequirements{Limits: serving.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}},
		NodeSelector: map[string]string{
			"accelerator": "h100",
		},
		Tolerations: []serving.Toleration{{Key: "nvidia.com/gpu", Operator: serving.TolerationOpExists, Effect: serving.TaintEffectNoSchedule}},
		Affinity: &serving.Affinity{NodeAffinity: &serving.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []serving.PreferredSchedulingTerm{{
			Weight: 10, Preference: serving.NodeSelectorTerm{MatchExpressions: []serving.NodeSelectorRequirement{{Key: "zone", Operator: serving.NodeSelectorOpIn, Values: []string{"a"}}}},
		}}}},
		PriorityClassName: "inference",
		Labels:            map[string]string{LabelDeployment: "hijack", "team": "ml"},
	}
	ApplyOverrides(pod, o)
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{LabelDeployment: "m", "team": "ml"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{
				{Name: "sidecar", Image: "side"},
				{Name: ReplicaContainer, Image: "ebb:gpu", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}}},
			},
			NodeSelector: map[string]string{"accelerator": "h100"},
			Tolerations:  []corev1.Toleration{{Key: "backend"}, {Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
				Weight: 10, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}},
			}}}},
			PriorityClassName: "inference",
		},
	}
	if diff := cmp.Diff(want, pod, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
