package deploy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestGeneratedUpToDate runs hack/gen.sh into a temp dir and compares what
// it writes with the committed files: deepcopy functions, CRDs (twice: deploy/
// and the chart) and the plain manifests.
func TestGeneratedUpToDate(t *testing.T) {
	tool(t, "controller-gen")
	tool(t, "helm")
	out := t.TempDir()
	run(t, "../hack/gen.sh", out)

	for _, dir := range []string{"api/v1alpha1", "deploy/crds", "deploy/helm/ebb/crds", "deploy/manifests"} {
		t.Run(dir, func(t *testing.T) {
			want := readGenerated(t, filepath.Join(out, dir), dir == "api/v1alpha1")
			got := readGenerated(t, filepath.Join("..", dir), dir == "api/v1alpha1")
			if len(want) == 0 {
				t.Fatalf("hack/gen.sh wrote nothing under %s", dir)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s is stale: run hack/gen.sh and commit the result (-generated +committed):\n%s", dir, diff)
			}
		})
	}
}

// readGenerated returns the generated files of dir by name: every file, or
// with onlyZZ only the zz_generated ones (the rest of api/ is hand-written).
func readGenerated(t *testing.T, dir string, onlyZZ bool) map[string]string {
	t.Helper()
	pattern := "*"
	if onlyZZ {
		pattern = "zz_generated.*"
	}
	paths, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = string(data)
	}
	return files
}
