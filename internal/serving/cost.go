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
	// Partial says the record starts after Since: the server started, or
	// its leader changed, since; the figures cover [Recorded, Until].
	Partial  bool      `json:"partial,omitempty"`
	Recorded time.Time `json:"recorded"`
}
