package v1alpha1

import (
	"github.com/ebb-ml/ebb/internal/serving"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ModelDeploymentSpec is a deployment's spec as the admin API takes it
// (model, engine, scaling, ...) plus what only a cluster needs.
type ModelDeploymentSpec struct {
	serving.Spec `json:",inline"`

	// Replicas, when set, pins the replica count: minReplicas and
	// maxReplicas both become this value. `kubectl scale` sets it; remove
	// it to give the autoscaler back its range.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Replicas *int32 `json:"replicas,omitempty"`

	// Template overrides the replica pods.
	// +optional
	Template PodOverrides `json:"template,omitempty"`

	// ColdStart holds the options that trade idle cost for cold-start time.
	// +optional
	ColdStart ColdStart `json:"coldStart,omitempty"`
}

// PodOverrides are the pod-level settings of a deployment's replicas.
type PodOverrides struct {
	// Image runs the replica; default the operator's own ebb image.
	// +optional
	Image string `json:"image,omitempty"`
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	// Resources of the replica container, GPUs (nvidia.com/gpu) and MIG
	// slices (nvidia.com/mig-1g.10gb, ...) included.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// Labels and Annotations are added to every replica pod.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ColdStart are the cold-start mitigations of a deployment.
type ColdStart struct {
	// WarmPool keeps this many low-priority placeholder pods ("balloons")
	// with the replica's resources on nodes, so a new replica preempts one
	// instead of waiting for a node.
	// +optional
	// +kubebuilder:validation:Minimum=0
	WarmPool int32 `json:"warmPool,omitempty"`
	// PrePull runs a DaemonSet that pulls the replica image on every
	// eligible node ahead of the first replica.
	// +optional
	PrePull bool `json:"prePull,omitempty"`
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

// Deployment returns the admin API's view of d: the same spec, with
// Replicas applied to the scaling range.
func (d *ModelDeployment) Deployment() serving.Deployment {
	spec := *d.Spec.Spec.DeepCopy()
	if r := d.Spec.Replicas; r != nil {
		spec.Scaling.MinReplicas, spec.Scaling.MaxReplicas = *r, max(*r, 1)
	}
	return serving.Deployment{
		Name:       d.Name,
		Spec:       spec,
		Generation: d.Generation,
		CreatedAt:  d.CreationTimestamp.Time,
	}
}
