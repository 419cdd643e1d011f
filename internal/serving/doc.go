// Package serving defines ebb's domain types: a Deployment with its Spec and
// Status, the scaling policy, and their validation and defaults. It does no
// I/O; every other package speaks in these types.
//
// The types carry deep-copy methods (zz_generated.deepcopy.go, made by
// controller-gen) so the Kubernetes API in api/v1alpha1 can embed them.
//
// +kubebuilder:object:generate=true
package serving
