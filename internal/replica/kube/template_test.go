package kube_test

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"

	"github.com/ebb-ml/ebb/internal/replica/kube"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// equalQuantities compares quantities by value: a JSON round trip keeps
// the value, not the cached string form.
var equalQuantities = cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })

// TestTemplateConversion fills every field of each side, core/v1's
// included, converts to the other and back, and wants what it started
// with, and the same JSON from both sides. A field that Kubernetes adds to
// Toleration, Affinity or ResourceRequirements, or that serving.Template
// gains, fails it until serving's types (podtypes.go) or PodTemplate carry
// it too.
func TestTemplateConversion(t *testing.T) {
	t.Run("serving to core and back", func(t *testing.T) {
		var in serving.Template
		fill(t, &in)
		core := kube.CoreTemplate(&in)
		if diff := cmp.Diff(in, kube.FromCore(&core), equalQuantities); diff != "" {
			t.Errorf("FromCore(CoreTemplate(t)) != t (-want +got):\n%s", diff)
		}
		sameJSON(t, in, core)
	})
	t.Run("core to serving and back", func(t *testing.T) {
		var in kube.PodTemplate
		fill(t, &in)
		ours := kube.FromCore(&in)
		if diff := cmp.Diff(in, kube.CoreTemplate(&ours), equalQuantities); diff != "" {
			t.Errorf("CoreTemplate(FromCore(p)) != p: serving's pod types drop what core/v1 has (-want +got):\n%s", diff)
		}
		sameJSON(t, in, ours)
	})
}

// TestTemplateConversionValues converts a template with known values and
// checks them on the core/v1 side, and that nothing is shared.
func TestTemplateConversionValues(t *testing.T) {
	in := serving.Template{
		ImagePullPolicy: serving.PullIfNotPresent,
		Resources: serving.ResourceRequirements{
			Limits: serving.ResourceList{"nvidia.com/gpu": resource.MustParse("1"), serving.ResourceMemory: resource.MustParse("2Gi")},
		},
		Tolerations: []serving.Toleration{{Key: "nvidia.com/gpu", Operator: serving.TolerationOpExists, Effect: serving.TaintEffectNoSchedule}},
		Affinity: &serving.Affinity{
			NodeAffinity: &serving.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &serving.NodeSelector{NodeSelectorTerms: []serving.NodeSelectorTerm{{
					MatchExpressions: []serving.NodeSelectorRequirement{{Key: "zone", Operator: serving.NodeSelectorOpIn, Values: []string{"a", "b"}}},
				}}},
			},
			PodAntiAffinity: &serving.PodAntiAffinity{
				PreferredDuringSchedulingIgnoredDuringExecution: []serving.WeightedPodAffinityTerm{{
					Weight: 50,
					PodAffinityTerm: serving.PodAffinityTerm{
						LabelSelector: &serving.LabelSelector{MatchLabels: map[string]string{"app": "m"}},
						TopologyKey:   "kubernetes.io/hostname",
					},
				}},
			},
		},
	}
	want := kube.PodTemplate{
		ImagePullPolicy: corev1.PullIfNotPresent,
		Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("2Gi")},
		},
		Tolerations: []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
		Affinity: &corev1.Affinity{
			NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a", "b"}}},
				}}},
			},
			PodAntiAffinity: &corev1.PodAntiAffinity{
				PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
					Weight: 50,
					PodAffinityTerm: corev1.PodAffinityTerm{
						LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "m"}},
						TopologyKey:   "kubernetes.io/hostname",
					},
				}},
			},
		},
	}
	got := kube.CoreTemplate(&in)
	if diff := cmp.Diff(want, got, equalQuantities); diff != "" {
		t.Fatalf("CoreTemplate (-want +got):\n%s", diff)
	}
	got.Tolerations[0].Key = "changed"
	got.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.LabelSelector.MatchLabels["app"] = "changed"
	if in.Tolerations[0].Key != "nvidia.com/gpu" || in.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.LabelSelector.MatchLabels["app"] != "m" {
		t.Errorf("CoreTemplate shares memory with its input: %+v", in)
	}
}

// sameJSON fails unless a and b encode to the same JSON.
func sameJSON(t *testing.T, a, b any) {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(ja) != string(jb) {
		t.Errorf("%T and %T encode differently:\n%s\n%s", a, b, ja, jb)
	}
}

// fill sets every field reachable from ptr, recursively, to a value that
// is not zero: pointers allocated, two elements in each slice and map,
// strings and numbers distinct.
func fill(t *testing.T, ptr any) {
	t.Helper()
	n := 0
	quantity := reflect.TypeFor[resource.Quantity]()
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		n++
		if v.Type() == quantity {
			v.Set(reflect.ValueOf(resource.MustParse(strconv.Itoa(n) + "Mi")))
			return
		}
		switch v.Kind() {
		case reflect.Pointer:
			v.Set(reflect.New(v.Type().Elem()))
			walk(v.Elem())
		case reflect.Struct:
			for i := range v.NumField() {
				if !v.Type().Field(i).IsExported() {
					t.Fatalf("fill: %s has unexported field %s", v.Type(), v.Type().Field(i).Name)
				}
				walk(v.Field(i))
			}
		case reflect.Slice:
			s := reflect.MakeSlice(v.Type(), 2, 2)
			for i := range 2 {
				walk(s.Index(i))
			}
			v.Set(s)
		case reflect.Map:
			m := reflect.MakeMap(v.Type())
			for range 2 {
				k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
				walk(k)
				walk(e)
				m.SetMapIndex(k, e)
			}
			v.Set(m)
		case reflect.String:
			v.SetString("s" + strconv.Itoa(n))
		case reflect.Int, reflect.Int32, reflect.Int64:
			v.SetInt(int64(n))
		case reflect.Bool:
			v.SetBool(true)
		default:
			t.Fatalf("fill: no value for %s (kind %s): teach fill", v.Type(), v.Kind())
		}
	}
	walk(reflect.ValueOf(ptr).Elem())
}
