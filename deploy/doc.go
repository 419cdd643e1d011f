// Package deploy holds ebb's Kubernetes packaging: the CRDs generated from
// api/v1alpha1 (crds/), the Helm chart (helm/ebb), the plain manifests
// rendered from it (manifests/ebb.yaml) and an example ModelDeployment
// (examples/). hack/gen.sh regenerates every generated file; the Dockerfile
// at the repository root builds the image the chart runs.
//
// The package has no Go API. Its tests check that the chart lints and
// renders for its default values and with every toggle on, that what it
// renders keeps its promises (non-root, read-only, least-privilege RBAC,
// consistent ports), that every generated file is up to date, that the
// rendered manifests apply cleanly to a real kube-apiserver
// (internal/kubetest) and grant the service accounts exactly the rights
// they need, and that the Dockerfile builds a non-root image with ONNX
// Runtime where ebb looks for it.
package deploy
