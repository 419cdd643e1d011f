package control

import (
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// TestRouteCarriesMaxConcurrency: spec.scaling.maxConcurrency reaches the
// published route, which turns it into an admission capacity per ready
// replica; changing it republishes the route without restarting replicas.
func TestRouteCarriesMaxConcurrency(t *testing.T) {
	f := newFixture(t, dep("m", serving.Scaling{MinReplicas: 2, MaxReplicas: 2, MaxConcurrency: 4}))
	f.tick()
	f.until("m", "2 ready", ready(2))
	r := f.routes.Lookup("m")
	if r == nil || r.MaxConcurrency != 4 || r.Capacity() != 8 {
		t.Fatalf("route = %+v; want maxConcurrency 4 and capacity 8 over 2 replicas", r)
	}

	f.setSpec("m", func(s *serving.Spec) { s.Scaling.MaxConcurrency = 0 })
	deadline := time.Now().Add(10 * time.Second)
	for r = f.routes.Lookup("m"); r == nil || r.MaxConcurrency != 0; r = f.routes.Lookup("m") {
		if time.Now().After(deadline) {
			t.Fatalf("route after removing the cap = %+v; want maxConcurrency 0", r)
		}
		time.Sleep(time.Millisecond)
	}
	if c := r.Capacity(); c != -1 {
		t.Errorf("Capacity without a cap = %d; want -1 (unlimited)", c)
	}
	if n := len(f.backend.started); n != 2 {
		t.Errorf("started %d replicas; want 2 (the cap does not roll replicas)", n)
	}
}
