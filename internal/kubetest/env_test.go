package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// The fake kubelet runs the image's three binaries from the harness's
// build: ebb; ebb-cluster when it was built beside ebb (ebb, whose
// operator and gateway commands say it is missing, when not); and
// ebb-replica when it was built beside ebb (`ebb replica` when not).
// Anything else is refused.
func TestKubeletArgv(t *testing.T) {
	for _, built := range []bool{true, false} {
		t.Run(fmt.Sprintf("ebb-cluster and ebb-replica built %v", built), func(t *testing.T) { testKubeletArgv(t, built) })
	}
}

func testKubeletArgv(t *testing.T, built bool) {
	dir := t.TempDir()
	ebb := filepath.Join(dir, "ebb")
	replica, cluster := []string{ebb, "replica"}, []string{ebb}
	if err := os.WriteFile(ebb, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if built {
		replica, cluster = []string{filepath.Join(dir, "ebb-replica")}, []string{filepath.Join(dir, "ebb-cluster")}
		for _, p := range []string{replica[0], cluster[0]} {
			if err := os.WriteFile(p, nil, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	k := &kubelet{bin: ebb}
	vars := map[string]string{"POD_IP": "10.0.0.7"}
	for _, tt := range []struct {
		name    string
		ctr     corev1.Container
		want    []string
		wantErr bool
	}{
		{name: "entrypoint", ctr: corev1.Container{Args: []string{"gateway", "--addr", ":8080"}},
			want: []string{ebb, "gateway", "--addr", ":8080"}},
		{name: "ebb by path", ctr: corev1.Container{Command: []string{"/usr/local/bin/ebb"}, Args: []string{"operator"}},
			want: []string{ebb, "operator"}},
		{name: "cluster", ctr: corev1.Container{Command: []string{"ebb-cluster"}, Args: []string{"operator", "--addr=$(POD_IP):8090"}},
			want: append(append([]string{}, cluster...), "operator", "--addr=10.0.0.7:8090")},
		{name: "replica", ctr: corev1.Container{Command: []string{"ebb-replica"}, Args: []string{"--deployment", "d", "--addr", "$(POD_IP):8080"}},
			want: append(append([]string{}, replica...), "--deployment", "d", "--addr", "10.0.0.7:8080")},
		{name: "another binary", ctr: corev1.Container{Name: "side", Command: []string{"sh", "-c", "true"}}, wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := k.argv(&tt.ctr, vars)
			if (err != nil) != tt.wantErr {
				t.Fatalf("argv: error %v, want an error: %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("argv (-want +got):\n%s", diff)
			}
		})
	}
}
