// Package core holds the serving types that need no Kubernetes: what a
// replica is told (Batching, Python, the Protocol names), what it reports
// of its start (ArtifactFetch, Phase), the registry versions it serves
// under (ModelRef, OIPVersion), the header its secret travels in, and the
// Duration they are written with.
//
// Package serving re-exports every name here (type aliases, constants and
// functions), so the control plane keeps speaking serving. The replica
// side (internal/server, internal/batch, the engines, cmd/ebb-replica)
// imports core instead: serving's Template carries Kubernetes' pod types,
// and linking k8s.io/api and apimachinery into every replica process costs
// tens of MiB of resident memory.
//
// +kubebuilder:object:generate=true
package core
