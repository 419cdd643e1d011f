package serving

import (
	"os/exec"
	"strings"
	"testing"
)

// Every process that decodes a deployment spec imports this package, `ebb
// up` included, whose idle memory budget cannot pay for the package init of
// Kubernetes' API types (k8s.io/api/..., several MiB for core/v1 alone):
// Template's pod settings are ebb's own types (podtypes.go), and
// internal/replica/kube converts them where pods are built.
func TestNoKubernetesAPITypes(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list -deps: %v\n%s", err, msg)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %q", deps)
	}
	for _, p := range deps {
		if strings.HasPrefix(p, "k8s.io/api/") {
			t.Errorf("internal/serving depends on %s: keep Kubernetes' API types out of it (use or extend podtypes.go, convert in internal/replica/kube)", p)
		}
	}
}
