package serving

import "time"

// Cost is what a deployment's replicas used over a period, against
// keeping its peak running the whole period (always-on): the figure that
// says what scaling to zero saved.
//
// +kubebuilder:object:generate=false
type Cost struct {
	Deployment string    `json:"deployment"`
	Since      time.Time `json:"since"`
	Until      time.Time `json:"until"`
	// ReplicaSeconds integrates the replicas that existed (starting,
	// ready or draining), a tick at a time; the replicas of a traffic
	// split's tracks and of a shadow count with their deployment.
	ReplicaSeconds float64 `json:"replicaSeconds"`
	// PeakReplicas is the most that existed at once over the period, and
	// AlwaysOnSeconds PeakReplicas over the whole period.
	PeakReplicas    int32   `json:"peakReplicas"`
	AlwaysOnSeconds float64 `json:"alwaysOnSeconds"`
	// Reduction is ReplicaSeconds / AlwaysOnSeconds (0 when nothing ran).
	Reduction float64 `json:"reduction"`
	// GPUSeconds integrates the GPUs of those replicas (each replica's
	// nvidia.com/gpu and MIG slices, Spec.GPUs); PeakGPUs is the most in
	// use at once, and AlwaysOnGPUSeconds PeakGPUs over the whole period.
	// All 0 for a deployment whose replicas ask for no GPUs.
	GPUSeconds         float64 `json:"gpuSeconds,omitempty"`
	PeakGPUs           int64   `json:"peakGPUs,omitempty"`
	AlwaysOnGPUSeconds float64 `json:"alwaysOnGPUSeconds,omitempty"`
	// Partial says the record starts after Since: the server started, or
	// its leader changed, since; the figures cover [Recorded, Until].
	Partial  bool      `json:"partial,omitempty"`
	Recorded time.Time `json:"recorded"`
}
