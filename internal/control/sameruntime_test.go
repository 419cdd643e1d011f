package control

import (
	"testing"

	"github.com/ebb-ml/ebb/internal/serving"
)

// TestSameRuntime: options the gateway or the autoscaler apply (scaling,
// splits, shadows, routing) do not roll replicas; what they run does.
func TestSameRuntime(t *testing.T) {
	base := serving.Spec{Engine: "trees", Model: "/m/diabetes.json"}
	one := int32(1)
	tests := []struct {
		name string
		edit func(*serving.Spec)
		same bool
	}{
		{name: "unchanged", edit: func(*serving.Spec) {}, same: true},
		{name: "scaling", edit: func(s *serving.Spec) { s.Scaling.MaxReplicas = 7 }, same: true},
		{name: "replicas pin", edit: func(s *serving.Spec) { s.Replicas = &one }, same: true},
		{name: "routing", edit: func(s *serving.Spec) {
			s.Routing = &serving.Routing{Policy: serving.RoutingConsistentHash, Key: &serving.RoutingKey{Header: "X-Session"}}
		}, same: true},
		{name: "shadow", edit: func(s *serving.Spec) { s.Shadow = &serving.Shadow{Model: "/m/other.json"} }, same: true},
		{name: "model", edit: func(s *serving.Spec) { s.Model = "/m/other.json" }, same: false},
		{name: "env", edit: func(s *serving.Spec) { s.Env = map[string]string{"A": "1"} }, same: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := base
			tt.edit(&next)
			if got := SameRuntime(base, next); got != tt.same {
				t.Fatalf("SameRuntime = %v; want %v", got, tt.same)
			}
		})
	}
}
