package v1alpha1

import (
	"github.com/ebb-ml/ebb/internal/serving"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ModelPoolSpec is a multi-model pool's spec exactly as the admin API and
// `ebb pools apply` take it (serving.PoolSpec): the engine, the memory
// budget of each replica, how many replicas each model is placed on, the
// replica bounds and targets, and the replica pods' template.
type ModelPoolSpec struct {
	serving.PoolSpec `json:",inline"`
}

// ModelPoolStatus is what the leading operator's control loop observes of
// the pool: its replicas, with each one's memory against its budget, the
// models it hosts and loaded, and the models it quarantined.
type ModelPoolStatus struct {
	serving.PoolStatus `json:",inline"`
	// ObservedGeneration is the generation of the spec the status is for.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// ModelPool is a multi-model pool: replica pods of one engine that host
// many models each, loading and unloading them on demand within a memory
// budget measured after each load. A ModelDeployment joins it with
// spec.pool and is called by its own name, as any deployment; its status
// says which of the pool's replicas hold it (status.pool). The pool's
// replicas scale 0:N on the demand of all its models together; each model
// is placed on spec.shardSize of them (shuffle sharding), more while it is
// hot. The replica pods are labelled serving.ebb.dev/pool and owned by
// the ModelPool.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mp;mps,categories=ebb
// +kubebuilder:printcolumn:name="Engine",type=string,JSONPath=`.spec.engine`
// +kubebuilder:printcolumn:name="Budget",type=string,JSONPath=`.spec.memoryBudget`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.status.desiredReplicas`
// +kubebuilder:printcolumn:name="Models",type=integer,JSONPath=`.status.models`
// +kubebuilder:printcolumn:name="Loaded",type=integer,JSONPath=`.status.loaded`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ModelPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ModelPoolSpec   `json:"spec,omitempty"`
	Status ModelPoolStatus `json:"status,omitempty"`
}

// ModelPoolList is a list of ModelPools.
//
// +kubebuilder:object:root=true
type ModelPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ModelPool `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ModelPool{}, &ModelPoolList{})
}

// Pool returns the admin API's view of p: the same spec, defaulted as
// `ebb up` stores it, and the status the leader last wrote.
func (p *ModelPool) Pool() serving.Pool {
	out := serving.Pool{
		Name:       p.Name,
		Spec:       *p.Spec.PoolSpec.DeepCopy(),
		Status:     *p.Status.PoolStatus.DeepCopy(),
		Generation: p.Generation,
		CreatedAt:  p.CreationTimestamp.Time,
		UpdatedAt:  p.CreationTimestamp.Time,
	}
	out.Spec.Default()
	return out
}
