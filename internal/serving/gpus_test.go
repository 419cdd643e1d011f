package serving

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

func TestSpecGPUs(t *testing.T) {
	q := resource.MustParse
	tests := []struct {
		name string
		res  ResourceRequirements
		want int64
	}{
		{"none", ResourceRequirements{}, 0},
		{"cpu only", ResourceRequirements{Limits: ResourceList{ResourceCPU: q("4")}}, 0},
		{"limit", ResourceRequirements{Limits: ResourceList{ResourceGPU: q("2")}}, 2},
		{"request only", ResourceRequirements{Requests: ResourceList{ResourceGPU: q("1")}}, 1},
		{"limit over request", ResourceRequirements{Limits: ResourceList{ResourceGPU: q("2")}, Requests: ResourceList{ResourceGPU: q("2")}}, 2},
		{"mig slices", ResourceRequirements{Limits: ResourceList{"nvidia.com/mig-1g.10gb": q("3")}}, 3},
		{"gpu and mig", ResourceRequirements{Limits: ResourceList{ResourceGPU: q("1")}, Requests: ResourceList{"nvidia.com/mig-3g.40gb": q("1")}}, 2},
		{"other vendor", ResourceRequirements{Limits: ResourceList{"amd.com/gpu": q("1")}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Spec{Template: Template{Resources: tt.res}}
			if got := s.GPUs(); got != tt.want {
				t.Errorf("GPUs() = %d, want %d", got, tt.want)
			}
		})
	}
}
