package serving

import (
	"strings"
	"testing"
)

func TestPoolValidate(t *testing.T) {
	tests := []struct {
		name string
		spec PoolSpec
		want []string // substrings of the error; none: valid
	}{
		{"trees", PoolSpec{Engine: "trees", MemoryBudget: "512MiB"}, nil},
		{"onnx in decimal units", PoolSpec{Engine: "onnx", MemoryBudget: "2GB", MinReplicas: 1, MaxReplicas: 3, ShardSize: 3}, nil},
		{"no engine or budget", PoolSpec{}, []string{"spec.engine: is required", "spec.memoryBudget: is required"}},
		{"python", PoolSpec{Engine: "python", MemoryBudget: "1Gi"}, nil},
		{"http", PoolSpec{Engine: "http", MemoryBudget: "1Gi"}, []string{`"http" cannot run a pool`}},
		{"bad budget", PoolSpec{Engine: "trees", MemoryBudget: "lots"}, []string{`spec.memoryBudget: size "lots"`}},
		{"tiny budget", PoolSpec{Engine: "trees", MemoryBudget: "4KiB"}, []string{"less than 1 MiB"}},
		{"bounds", PoolSpec{Engine: "trees", MemoryBudget: "1Gi", MinReplicas: 5, MaxReplicas: 2, ShardSize: -1},
			[]string{"minReplicas (5) must not exceed maxReplicas (2)", "spec.shardSize"}},
		{"targets", PoolSpec{Engine: "trees", MemoryBudget: "1Gi", Targets: PoolTargets{Concurrency: -1, ModelRate: -2}},
			[]string{"spec.targets.concurrency", "spec.targets.modelRate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Pool{Name: "customers", Spec: tt.spec}
			p.Spec.Default()
			err := p.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestPoolDefaultsAndDeploymentSpec(t *testing.T) {
	s := PoolSpec{Engine: "trees", MemoryBudget: "64MiB", MinReplicas: 1}
	s.Default()
	if s.ShardSize != DefaultShardSize || s.MaxReplicas != DefaultMaxReplicas || s.Targets.Concurrency != DefaultTargetConcurrency {
		t.Errorf("defaults: %+v", s)
	}
	if got := s.BudgetBytes(); got != 64<<20 {
		t.Errorf("BudgetBytes = %d", got)
	}
	d := s.DeploymentSpec()
	if d.Engine != "trees" || d.Model != "" || d.Scaling.MinReplicas != 1 || d.Scaling.MaxReplicas != DefaultMaxReplicas {
		t.Errorf("DeploymentSpec = %+v", d)
	}
	if p := s.Policy(); p.Replicas != DefaultShardSize || p.TargetInFlight != s.Targets.ModelInFlight {
		t.Errorf("Policy = %+v", p)
	}
	if name, ok := PoolOfKey(PoolKey("tiny")); !ok || name != "tiny" {
		t.Errorf("PoolOfKey(PoolKey) = %q, %v", name, ok)
	}
	if _, ok := PoolOfKey("tiny"); ok {
		t.Error("a deployment's name is not a pool key")
	}
}

func TestValidatePooledDeployment(t *testing.T) {
	one := int32(1)
	tests := []struct {
		name string
		spec Spec
		want []string
	}{
		{"trees", Spec{Model: "m.json", Engine: "trees"}, nil},
		{"registry version", Spec{Model: "churn@prod"}, nil},
		{"python", Spec{Model: "m.pkl", Engine: "python", Python: &Python{Class: "m.py:M"}}, nil},
		{"python workers", Spec{Model: "m.pkl", Engine: "python", Python: &Python{Class: "m.py:M", Workers: 4}}, []string{"spec.python.workers"}},
		{"http", Spec{Model: "m", Engine: "http", URL: "http://127.0.0.1:9000"}, []string{`"http" cannot be hosted in a pool`}},
		{"pinned", Spec{Model: "m.json", Engine: "trees", Replicas: &one}, []string{"spec.replicas"}},
		{"min replicas", Spec{Model: "m.json", Engine: "trees", Scaling: Scaling{MinReplicas: 1}}, []string{"spec.scaling"}},
		{"split", Spec{Model: "m.json", Engine: "trees", Traffic: []TrafficTarget{{Model: "m.json", Weight: 100}}}, []string{"traffic splits"}},
		{"batching", Spec{Model: "m.json", Engine: "trees", Batching: &Batching{MaxBatchSize: 8}}, []string{"batching and env are the pool's"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Deployment{Name: "m", Spec: tt.spec}
			d.Spec.Pool = &PoolRef{Name: "customers"}
			d.Spec.Default()
			err := d.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	d := Deployment{Name: "m", Spec: Spec{Model: "m.json", Pool: &PoolRef{Name: "Not A Name"}}}
	d.Spec.Default()
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "spec.pool.name") {
		t.Errorf("bad pool name: %v", err)
	}
}
