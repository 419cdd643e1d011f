package v1alpha1

import (
	"github.com/ebb-ml/ebb/internal/serving"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ModelJobSpec is a batch job's spec exactly as the admin API and `ebb
// jobs submit` take it (serving.JobSpec): the input dataset and its
// column-to-tensor mapping, the deployment it feeds or the serving spec
// of its own, the output, the deadline and the lease. A job's spec does
// not change once it is submitted: to run another, delete the ModelJob
// and create a new one.
//
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a job's spec cannot change once submitted: delete the ModelJob and create another"
type ModelJobSpec struct {
	serving.JobSpec `json:",inline"`
}

// ModelJobStatus is where the job stands: the status the admin API
// reports (GET /v1/jobs/NAME), copied from the job store by the leading
// operator every few seconds while it changes.
type ModelJobStatus struct {
	serving.JobStatus `json:",inline"`
}

// ModelJob is a batch inference job: every row of a dataset through a
// model before a deadline, within a lease. The leading operator submits
// a ModelJob that kubectl created as the admin API submits one (the same
// checks and planning: a job that cannot fit its lease shows phase
// Refused with the numbers), runs it, and copies its progress to the
// status; a job submitted through the API (`ebb jobs submit`) shows up
// as a ModelJob too. Deleting a ModelJob cancels its job if it runs and
// removes its record; the output it wrote stays.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mj;mjs,categories=ebb
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Done",type=integer,JSONPath=`.status.rowsDone`
// +kubebuilder:printcolumn:name="Rows",type=integer,JSONPath=`.status.rowsTotal`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.replicas`,priority=1
// +kubebuilder:printcolumn:name="Deadline",type=string,JSONPath=`.spec.deadline`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ModelJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ModelJobSpec   `json:"spec,omitempty"`
	Status ModelJobStatus `json:"status,omitempty"`
}

// ModelJobList is a list of ModelJobs.
//
// +kubebuilder:object:root=true
type ModelJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ModelJob `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ModelJob{}, &ModelJobList{})
}

// Job returns the admin API's view of j: the same spec and status.
func (j *ModelJob) Job() serving.Job {
	return serving.Job{
		Name:       j.Name,
		Spec:       *j.Spec.JobSpec.DeepCopy(),
		Status:     *j.Status.JobStatus.DeepCopy(),
		Generation: j.Generation,
		CreatedAt:  j.CreationTimestamp.Time,
		UpdatedAt:  j.CreationTimestamp.Time,
	}
}
