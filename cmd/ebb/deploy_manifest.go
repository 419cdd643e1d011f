package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// The Kubernetes form of a deployment: the CRD's group, version and kind.
const (
	manifestAPIVersion = "serving.ebb.dev/v1alpha1"
	manifestKind       = "ModelDeployment"
)

// deployDoc is one deployment of a file given to `ebb deploy -f`, in the
// form the admin API takes.
type deployDoc struct {
	name string
	// body is {"name": ..., "spec": ...} (ebb's form, sent as written, so
	// the server checks every field).
	body []byte
	// notes are the fields of a manifest's metadata that ebb's API does
	// not keep, each with why; the deployment is applied with a warning.
	notes []string
}

// metadataFields sorts the fields of a manifest's metadata: "name" is the
// deployment's name; what ebb's API does not keep (an object written by
// kubectl keeps them) is applied with a note; what the API server sets
// (present in `kubectl get -o yaml`) is ignored, as ebb's own output-only
// fields are. Anything else is refused as unknown.
var (
	metadataNotKept = map[string]string{
		"namespace":       "ebb's API deploys into the namespace its operator watches (or, with ebb up, where there is none)",
		"labels":          "ebb's API keeps a deployment's name and spec only: use kubectl apply to keep labels",
		"annotations":     "ebb's API keeps a deployment's name and spec only: use kubectl apply to keep annotations",
		"finalizers":      "ebb's API keeps a deployment's name and spec only",
		"ownerReferences": "ebb's API keeps a deployment's name and spec only",
	}
	metadataOutputOnly = []string{"uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
		"deletionGracePeriodSeconds", "managedFields", "selfLink"}
)

// deploymentDocs reads data, one or more YAML documents separated by
// "---" lines (or one JSON object), into deployments. Each document is a
// ModelDeployment manifest (apiVersion serving.ebb.dev/v1alpha1, kind
// ModelDeployment, metadata.name, spec), as kubectl applies it, or ebb's
// own form (name and spec), as `ebb get deployments NAME -o yaml` prints
// it. Every problem of every document is reported at once; the spec's
// fields are left to the server, which checks them all.
func deploymentDocs(data []byte) ([]deployDoc, error) {
	// Each document as JSON, or why it is not YAML; empty ones (comments
	// only, a leading or trailing ---) are left out and not counted.
	type part struct {
		body []byte
		err  error
	}
	var parts []part
	for _, p := range splitYAML(data) {
		body, err := yaml.YAMLToJSON(p)
		if err != nil {
			parts = append(parts, part{err: fmt.Errorf("not valid YAML or JSON: %w", err)})
		} else if t := bytes.TrimSpace(body); len(t) > 0 && string(t) != "null" {
			parts = append(parts, part{body: body})
		}
	}
	if len(parts) == 0 {
		return nil, errors.New("holds no deployment: write one with name and spec, or a ModelDeployment manifest")
	}
	var docs []deployDoc
	var errs []error
	for i, p := range parts {
		err := p.err
		if err == nil {
			var d deployDoc
			if d, err = deploymentDoc(p.body); err == nil {
				docs = append(docs, d)
				continue
			}
		}
		if len(parts) > 1 {
			err = fmt.Errorf("document %d: %w", i+1, err)
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return docs, nil
}

// deploymentDoc converts one document, as JSON, to ebb's form.
func deploymentDoc(body []byte) (deployDoc, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return deployDoc{}, errors.New("must hold one deployment, a mapping with name and spec (or a ModelDeployment manifest)")
	}
	_, hasKind := top["kind"]
	_, hasAPIVersion := top["apiVersion"]
	_, hasMetadata := top["metadata"]
	if !hasKind && !hasAPIVersion && !hasMetadata {
		name, err := stringField(top, "name", `add a line such as "name: diabetes" at the top`)
		if err != nil {
			return deployDoc{}, err
		}
		return deployDoc{name: name, body: body}, nil
	}
	return manifestDoc(top)
}

// manifestDoc converts a Kubernetes manifest to ebb's form, refusing any
// kind but ModelDeployment.
func manifestDoc(top map[string]json.RawMessage) (deployDoc, error) {
	var problems []string
	kind, err := stringField(top, "kind", "add \"kind: "+manifestKind+"\"")
	if err != nil {
		return deployDoc{}, err
	}
	apiVersion, err := stringField(top, "apiVersion", "add \"apiVersion: "+manifestAPIVersion+"\"")
	if err != nil {
		return deployDoc{}, err
	}
	if kind != manifestKind {
		return deployDoc{}, fmt.Errorf("kind %s (%s) is not a deployment ebb deploys: `ebb deploy -f` takes kind %s (apiVersion %s) or ebb's own form (name and spec); apply other objects with kubectl",
			kind, apiVersion, manifestKind, manifestAPIVersion)
	}
	if apiVersion != manifestAPIVersion {
		return deployDoc{}, fmt.Errorf("apiVersion %s is not one ebb serves: write apiVersion: %s", apiVersion, manifestAPIVersion)
	}
	for _, k := range slices.Sorted(maps.Keys(top)) {
		switch k {
		case "apiVersion", "kind", "metadata", "spec", "status": // status: output-only, ignored
		case "name":
			problems = append(problems, "name: a manifest's name is metadata.name: move it there")
		default:
			problems = append(problems, k+": unknown field: a ModelDeployment has apiVersion, kind, metadata and spec")
		}
	}
	var meta map[string]json.RawMessage
	if raw, ok := top["metadata"]; !ok || json.Unmarshal(raw, &meta) != nil || meta == nil {
		return deployDoc{}, errors.New("metadata must be a mapping with the deployment's name: add \"metadata:\" with \"  name: diabetes\" under it")
	}
	name, err := stringField(meta, "name", "add \"name: diabetes\" under metadata")
	if err != nil {
		problems = append(problems, "metadata."+err.Error())
	}
	var notes []string
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		why, notKept := metadataNotKept[k]
		switch {
		case k == "name" || slices.Contains(metadataOutputOnly, k):
		case k == "generateName":
			problems = append(problems, "metadata.generateName: ebb does not make up names: give metadata.name")
		case notKept:
			notes = append(notes, "metadata."+k+" is not kept: "+why)
		default:
			problems = append(problems, "metadata."+k+": unknown field: check its spelling and case")
		}
	}
	if len(problems) > 0 {
		return deployDoc{}, errors.New(strings.Join(problems, "; "))
	}
	out := map[string]json.RawMessage{"name": mustJSON(name)}
	if spec, ok := top["spec"]; ok {
		out["spec"] = spec
	}
	return deployDoc{name: name, body: mustJSON(out), notes: notes}, nil
}

// stringField returns m[key], which must be a non-empty string; hint says
// how to add a missing one.
func stringField(m map[string]json.RawMessage, key, hint string) (string, error) {
	raw, ok := m[key]
	if !ok || string(raw) == "null" || string(raw) == `""` {
		return "", fmt.Errorf("%s is required: %s", key, hint)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s must be a string such as \"diabetes\", got %s", key, raw)
	}
	return s, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // strings and raw JSON always encode
	}
	return b
}

// splitYAML splits a YAML stream into its documents: a line that starts
// with "---" (alone, or followed by a space and the next document's first
// content) begins a new document, and a "..." line ends one. Such lines
// can only be document markers at the start of a line: content in block
// scalars is indented.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		docs = append(docs, bytes.Clone(cur.Bytes()))
		cur.Reset()
	}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		text := strings.TrimRight(string(line), "\r\n")
		switch {
		case text == "---" || strings.HasPrefix(text, "--- ") || strings.HasPrefix(text, "---\t"):
			flush()
			if rest := strings.TrimLeft(text[3:], " \t"); rest != "" {
				cur.WriteString(rest + "\n")
			}
		case text == "...":
			flush()
		default:
			cur.Write(line)
		}
	}
	flush()
	return docs
}
