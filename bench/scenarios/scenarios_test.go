package scenarios

import (
	"testing"

	"github.com/ebb-ml/ebb/bench/harness"
)

func TestServerCPUCount(t *testing.T) {
	tests := []struct {
		cpus    string
		threads int
		want    int
	}{
		{cpus: "1", want: 1},
		{cpus: "1-3", want: 3},
		{cpus: "1,3-4", want: 3},
		{cpus: "", threads: 2, want: 2},
		{cpus: "x", want: 1},
		{cpus: "4-2", want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.cpus, func(t *testing.T) {
			env := &harness.Env{ServerCPUs: tt.cpus, LoadThreads: tt.threads}
			if got := serverCPUCount(env); got != tt.want {
				t.Errorf("serverCPUCount(%q) = %d, want %d", tt.cpus, got, tt.want)
			}
		})
	}
}

func TestSameOutputs(t *testing.T) {
	tests := []struct {
		name string
		a, b []float64
		want bool
	}{
		{"equal", []float64{154.3458, 178.22224}, []float64{154.3458, 178.22224}, true},
		{"float32 rounding", []float64{154.3458}, []float64{154.34579467773438}, true},
		{"different", []float64{154.3458}, []float64{155}, false},
		{"lengths", []float64{1, 2}, []float64{1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameOutputs(tt.a, tt.b); got != tt.want {
				t.Errorf("sameOutputs(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestOutputsOf(t *testing.T) {
	got, err := outputsOf([]byte(`{"model_name":"d","outputs":[{"name":"predict","datatype":"FP32","shape":[2],"data":[1.5,2]}]}`))
	if err != nil || len(got) != 2 || got[0] != 1.5 || got[1] != 2 {
		t.Errorf("outputsOf = %v, %v; want [1.5 2]", got, err)
	}
	for _, bad := range []string{`{"outputs":[]}`, `not json`} {
		if _, err := outputsOf([]byte(bad)); err == nil {
			t.Errorf("outputsOf(%q) succeeded", bad)
		}
	}
}
