package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/ebb-ml/ebb/internal/serving"
)

// runEbbStderr is runEbb that also returns what the command wrote to
// standard error.
func runEbbStderr(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// specOf reads the spec a deployment file (either form) asks for, with
// defaults, as the server stores it.
func specOf(t *testing.T, data []byte) serving.Spec {
	t.Helper()
	var doc struct {
		Spec serving.Spec `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	doc.Spec.Default()
	return doc.Spec
}

// TestCLIDeployManifest: `ebb deploy -f` takes deploy/examples as written
// (kind ModelDeployment), and their specs arrive whole.
func TestCLIDeployManifest(t *testing.T) {
	e := newFullEnv(t)
	e.mustRun(t, "", "models", "push", diabetesFile(t), "--name", "diabetes", "--alias", "champion")
	for _, tt := range []struct{ file, name string }{
		{"../../deploy/examples/modeldeployment.yaml", "diabetes"},
		{"../../deploy/examples/modeldeployment-s3.yaml", "diabetes-s3"},
	} {
		out, stderr, err := runEbbStderr(t, "", "deploy", "-f", tt.file, "--server", e.url)
		if err != nil || out != "deployment/"+tt.name+" created\n" || stderr != "" {
			t.Fatalf("deploy -f %s = %q, stderr %q, %v", tt.file, out, stderr, err)
		}
		data, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		d, err := e.st.GetDeployment(context.Background(), tt.name)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(specOf(t, data), d.Spec); diff != "" {
			t.Errorf("%s: stored spec (-file +stored):\n%s", tt.file, diff)
		}
		// Applied again: nothing changes.
		if out := e.mustRun(t, "", "deploy", "-f", tt.file); out != "deployment/"+tt.name+" configured\n" {
			t.Errorf("second deploy -f %s printed %q", tt.file, out)
		}
		if again, _ := e.st.GetDeployment(context.Background(), tt.name); again.Generation != d.Generation {
			t.Errorf("%s: the same manifest again moved the generation %d → %d", tt.file, d.Generation, again.Generation)
		}
	}
}

// TestCLIDeployMultiDocument: documents separated by --- deploy in turn,
// in either form; empty documents are skipped; metadata ebb's API does
// not keep is reported on standard error, and what kubectl get -o yaml
// adds is ignored.
func TestCLIDeployMultiDocument(t *testing.T) {
	e := newCLIEnv(t)
	isolate(t)
	in := `---
# two deployments, and an empty document
apiVersion: serving.ebb.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: iris
  namespace: ml
  labels: {team: a}
  uid: 0b5c
  resourceVersion: "42"
  creationTimestamp: "2025-01-01T00:00:00Z"
spec:
  model: iris.json
  replicas: 2
status:
  replicas: 2
---
---
name: diabetes
spec:
  model: diabetes.json
--- {"name": "wine", "spec": {"model": "wine.json"}}
...
`
	out, stderr, err := runEbbStderr(t, in, "deploy", "-f", "-", "--server", e.url)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if want := "deployment/iris created\ndeployment/diabetes created\ndeployment/wine created\n"; out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
	for _, want := range []string{"Warning: deployment/iris: metadata.labels is not kept", "Warning: deployment/iris: metadata.namespace is not kept"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
	if strings.Contains(stderr, "uid") || strings.Contains(stderr, "resourceVersion") {
		t.Errorf("stderr %q reports fields the API server sets", stderr)
	}
	iris := e.get(t, "iris")
	if n, ok := iris.Spec.Pinned(); !ok || n != 2 {
		t.Errorf("iris pinned = %d, %v; want 2", n, ok)
	}
	for name, model := range map[string]string{"diabetes": "diabetes.json", "wine": "wine.json"} {
		if got := e.get(t, name).Spec.Model; got != model {
			t.Errorf("%s model = %q, want %q", name, got, model)
		}
	}

	// One document the server refuses does not stop the others; the
	// error names it.
	in = "name: a\nspec:\n  model: a.json\n---\nname: b\nspec:\n  engine: nope\n---\nname: c\nspec:\n  model: c.json\n"
	out, err = e.run(t, in, "deploy", "-f", "-")
	if out != "deployment/a created\ndeployment/c created\n" || err == nil || !strings.Contains(err.Error(), "deployment/b: ") ||
		!strings.Contains(err.Error(), "spec.model: is required") {
		t.Errorf("deploy with a refused document = %q, %v", out, err)
	}
}

func TestCLIDeployManifestErrors(t *testing.T) {
	const head = "apiVersion: serving.ebb.dev/v1alpha1\nkind: ModelDeployment\n"
	tests := []struct {
		name    string
		file    string
		wantErr []string
	}{
		{name: "other kind", file: "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n",
			wantErr: []string{"kind Service (v1) is not a deployment ebb deploys", "kind ModelDeployment (apiVersion serving.ebb.dev/v1alpha1)", "kubectl"}},
		{name: "other version", file: "apiVersion: serving.ebb.dev/v1\nkind: ModelDeployment\nmetadata:\n  name: x\n",
			wantErr: []string{"apiVersion serving.ebb.dev/v1 is not one ebb serves: write apiVersion: serving.ebb.dev/v1alpha1"}},
		{name: "no kind", file: "apiVersion: serving.ebb.dev/v1alpha1\nmetadata:\n  name: x\n", wantErr: []string{"kind is required: add \"kind: ModelDeployment\""}},
		{name: "no apiVersion", file: "kind: ModelDeployment\nmetadata:\n  name: x\n", wantErr: []string{"apiVersion is required"}},
		{name: "no metadata", file: head + "spec:\n  model: m.json\n", wantErr: []string{"metadata must be a mapping with the deployment's name"}},
		{name: "no name", file: head + "metadata:\n  labels: {a: b}\nspec:\n  model: m.json\n", wantErr: []string{"metadata.name is required"}},
		{name: "name not a string", file: head + "metadata:\n  name: [a]\n", wantErr: []string{`metadata.name must be a string such as "diabetes", got ["a"]`}},
		{name: "every problem", file: head + "name: x\nsepc: {}\nmetadata:\n  name: x\n  nmae: y\n  generateName: x-\n",
			wantErr: []string{"name: a manifest's name is metadata.name", "sepc: unknown field", "metadata.nmae: unknown field", "metadata.generateName: ebb does not make up names"}},
		{name: "unknown spec field", file: head + "metadata:\n  name: x\nspec:\n  model: m.json\n  scaling:\n    minReplica: 1\n",
			wantErr: []string{"spec.scaling.minReplica: unknown field"}},
		{name: "numbered documents", file: "name: ok\nspec:\n  model: m.json\n---\n" + head + "metadata: {}\n---\nname: [unclosed\n",
			wantErr: []string{"document 2: metadata.name is required", "document 3: not valid YAML or JSON"}},
		{name: "only comments", file: "# nothing here\n---\n", wantErr: []string{"holds no deployment"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCLIEnv(t)
			_, err := e.run(t, "", "deploy", "-f", writeFile(t, "d.yaml", tt.file))
			if err == nil {
				t.Fatal("deploy succeeded, want an error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			// A file with a local problem deploys nothing, not even its
			// good documents.
			if ds, _ := e.st.ListDeployments(context.Background()); len(ds) != 0 {
				t.Errorf("failed deploy stored %v", ds)
			}
		})
	}
}

func TestSplitYAML(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"a: 1\n", []string{"a: 1\n"}},
		{"a: 1\n---\nb: 2\n", []string{"a: 1\n", "b: 2\n"}},
		{"---\na: 1\n", []string{"", "a: 1\n"}},
		{"a: 1\r\n---\r\nb: 2", []string{"a: 1\r\n", "b: 2"}},
		{"a: 1\n--- {b: 2}\n", []string{"a: 1\n", "{b: 2}\n"}},
		{"a: 1\n...\n", []string{"a: 1\n", ""}},
		// Not markers: indented, or more than three dashes.
		{"a: |\n  ---\n  x\n", []string{"a: |\n  ---\n  x\n"}},
		{"a: ----\n", []string{"a: ----\n"}},
	} {
		var got []string
		for _, d := range splitYAML([]byte(tt.in)) {
			got = append(got, string(d))
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("splitYAML(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// deployCommand finds `ebb deploy -f FILE` in documentation, and
// poolCommand `ebb pools apply -f FILE` (a pool its deployments need).
var (
	deployCommand = regexp.MustCompile("ebb deploy -f ([\\w./-]+\\.(?:ya?ml|json))")
	poolCommand   = regexp.MustCompile("ebb pools apply -f ([\\w./-]+\\.(?:ya?ml|json))")
)

// TestDocumentedDeploysRunAsWritten runs every `ebb deploy -f FILE` that
// the repository's Markdown shows (README.md, deploy/README.md, the
// examples' READMEs, ...) from the repository's root, as a reader would,
// and checks the deployment got the file's spec.
func TestDocumentedDeploysRunAsWritten(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string][]string{} // file → where it is shown
	pools := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".md") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, m := range deployCommand.FindAllStringSubmatch(string(b), -1) {
			found[m[1]] = append(found[m[1]], rel)
		}
		for _, m := range poolCommand.FindAllStringSubmatch(string(b), -1) {
			pools[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"examples/diabetes/deployment.yaml", "deploy/examples/modeldeployment.yaml"} {
		if _, ok := found[want]; !ok {
			t.Errorf("no Markdown shows `ebb deploy -f %s`; found %v", want, found)
		}
	}
	t.Logf("documented deploys: %v", found)
	e := newFullEnv(t)
	e.mustRun(t, "", "models", "push", diabetesFile(t), "--name", "diabetes", "--alias", "champion")
	t.Chdir(root)
	for file := range pools {
		if _, err := e.run(t, "", "pools", "apply", "-f", file); err != nil {
			t.Errorf("`ebb pools apply -f %s`: %v", file, err)
		}
	}
	for file, where := range found {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("%v show `ebb deploy -f %s`: %v", where, file, err)
			continue
		}
		docs, err := deploymentDocs(data)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if _, err := e.run(t, "", "deploy", "-f", file); err != nil {
			t.Errorf("`ebb deploy -f %s` (shown in %v): %v", file, where, err)
			continue
		}
		d, err := e.st.GetDeployment(context.Background(), docs[0].name)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(specOf(t, data), d.Spec); diff != "" {
			t.Errorf("%s: stored spec (-file +stored):\n%s", file, diff)
		}
	}
}
