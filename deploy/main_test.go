package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ebb-ml/ebb/internal/kubetest"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

// The control plane starts only when a test calls kubetest.Get. Nothing here
// needs the fake kubelet: the chart's pods are only submitted, never run.
func TestMain(m *testing.M) { kubetest.MainWith(m, kubetest.Options{NoFakeKubelet: true}) }

const (
	chartDir      = "helm/ebb"
	allOnValues   = "helm/ebb/ci/all-on-values.yaml"
	manifestsFile = "manifests/ebb.yaml"
	// The release the plain manifests are rendered for (hack/gen.sh).
	defaultRelease   = "ebb"
	defaultNamespace = "ebb"
)

// tool returns the path of a binary hack/build-kube.sh builds. When it is
// missing the test is skipped with a hint, or fails under CI=true.
func tool(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(kubetest.BinDir(), name)
	if _, err := os.Stat(path); err != nil {
		msg := path + " is missing: run hack/build-kube.sh to build it"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// run runs a command in this directory and returns its stdout; it fails the
// test with stderr when the command fails.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

// helmTemplate renders the chart for release in namespace with the given
// extra helm arguments (-f FILE, --set ...), CRDs included.
func helmTemplate(t *testing.T, release, namespace string, args ...string) []byte {
	t.Helper()
	all := append([]string{"template", release, chartDir, "--namespace", namespace, "--include-crds"}, args...)
	return run(t, tool(t, "helm"), all...)
}

// decodeAll splits a multi-document YAML stream into objects, skipping empty
// documents.
func decodeAll(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("decode rendered YAML: %v", err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// typed converts u into a client-go type (Deployment, Role, ...); it fails
// the test for kinds client-go does not know.
func typed[T runtime.Object](t *testing.T, u *unstructured.Unstructured) T {
	t.Helper()
	obj, err := scheme.Scheme.New(u.GroupVersionKind())
	if err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, obj, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	out, ok := obj.(T)
	if !ok {
		t.Fatalf("%s %s is a %T", u.GetKind(), u.GetName(), obj)
	}
	return out
}

// byKind returns the objects of one kind, in order.
func byKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}
