package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
)

// TestCostTableGPUs: the GPU columns appear only when some deployment used
// GPUs.
func TestCostTableGPUs(t *testing.T) {
	since := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	now := since.Add(time.Hour)
	cpu := serving.Cost{Deployment: "cpu", ReplicaSeconds: 100, PeakReplicas: 1, AlwaysOnSeconds: 3600, Reduction: 100.0 / 3600}
	gpu := serving.Cost{Deployment: "gpu", ReplicaSeconds: 200, PeakReplicas: 2, AlwaysOnSeconds: 7200, Reduction: 200.0 / 7200,
		GPUSeconds: 800, PeakGPUs: 8, AlwaysOnGPUSeconds: 28800}
	tests := []struct {
		name      string
		items     []serving.Cost
		want, not []string
	}{
		{"no GPUs", []serving.Cost{cpu}, []string{"REPLICA-SECONDS", "REDUCTION"}, []string{"GPU-SECONDS", "GPU-ALWAYS-ON"}},
		{"GPUs", []serving.Cost{cpu, gpu}, []string{"GPU-SECONDS", "GPU-ALWAYS-ON", "800", "28800"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := writeCostTable(&b, api.SumCosts(tt.items, since, now), true); err != nil {
				t.Fatal(err)
			}
			got := b.String()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("table =\n%s\nwant %q in it", got, w)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(got, w) {
					t.Errorf("table =\n%s\nwant no %q", got, w)
				}
			}
		})
	}
}
