// Package v1alpha1 holds ebb's Kubernetes API, group serving.ebb.dev: the
// ModelDeployment custom resource, whose spec is exactly the admin API's
// deployment spec (serving.Spec, pod template and cold-start options
// included), so that a deployment moves from `ebb up` to a cluster
// unchanged.
//
// +kubebuilder:object:generate=true
// +groupName=serving.ebb.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of this package.
	GroupVersion = schema.GroupVersion{Group: "serving.ebb.dev", Version: "v1alpha1"}
	// SchemeBuilder registers this package's types with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}
	// AddToScheme adds this package's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
