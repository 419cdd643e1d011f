package v1alpha1

import (
	"github.com/ebb-ml/ebb/internal/serving"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ModelDeploymentSpec is a deployment's spec exactly as the admin API and
// `ebb up` take it: model, engine, scaling, replicas (a pin, which `kubectl
// scale` sets through the scale subresource), the replica pod template and
// the cold-start options. It is one type, serving.Spec, so a deployment
// moves between the two homes unchanged.
type ModelDeploymentSpec struct {
	serving.Spec `json:",inline"`
}

// ModelDeploymentStatus is what the operator observes: the same status the
// admin API reports, plus Kubernetes bookkeeping.
type ModelDeploymentStatus struct {
	serving.Status `json:",inline"`

	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Selector selects the replica pods, for the scale subresource.
	// +optional
	Selector string `json:"selector,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ModelDeployment serves one model, scaling its replica pods 0:N with
// traffic.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=md;mds,categories=ebb
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.spec.model`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.modelVersion`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.status.desiredReplicas`
// +kubebuilder:printcolumn:name="Min",type=integer,JSONPath=`.spec.scaling.minReplicas`
// +kubebuilder:printcolumn:name="Max",type=integer,JSONPath=`.spec.scaling.maxReplicas`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ModelDeployment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ModelDeploymentSpec   `json:"spec,omitempty"`
	Status ModelDeploymentStatus `json:"status,omitempty"`
}

// ModelDeploymentList is a list of ModelDeployments.
//
// +kubebuilder:object:root=true
type ModelDeploymentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ModelDeployment `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ModelDeployment{}, &ModelDeploymentList{})
}

// Deployment returns the admin API's view of d: the same spec (a pin in
// Replicas stays a pin; it is not folded into the scaling range).
func (d *ModelDeployment) Deployment() serving.Deployment {
	return serving.Deployment{
		Name:       d.Name,
		Spec:       *d.Spec.Spec.DeepCopy(),
		Generation: d.Generation,
		CreatedAt:  d.CreationTimestamp.Time,
	}
}
