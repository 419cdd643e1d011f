package serving

import "time"

// Event types, as Kubernetes names them.
const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

// Event reasons: the stable, machine-readable half of an Event. The
// operator records the same reasons as Kubernetes Events on the
// ModelDeployment, so `ebb describe` reads alike in both homes.
const (
	// ReasonScaledUp and ReasonScaledDown: the autoscaler changed the
	// desired replicas; the message has the counts and its reason.
	ReasonScaledUp   = "ScaledUp"
	ReasonScaledDown = "ScaledDown"
	// ReasonReplicaStarted: a replica's process (pod) runs.
	ReasonReplicaStarted = "ReplicaStarted"
	// ReasonReplicaReady: a replica receives traffic; the message has its
	// cold start.
	ReasonReplicaReady = "ReplicaReady"
	// ReasonReplicaStopping: a replica is drained and stopped.
	ReasonReplicaStopping = "ReplicaStopping"
	// ReasonReplicaFailed: a replica failed to start or crashed early; the
	// next start backs off.
	ReasonReplicaFailed = "ReplicaFailed"
	// ReasonReplicaExited: a ready replica exited without being asked to.
	ReasonReplicaExited = "ReplicaExited"
	// ReasonRolled: the deployment's model changed (an alias moved, the
	// spec changed) and its replicas roll to the new one.
	ReasonRolled = "Rolled"
	// ReasonResolveFailed: the deployment's model reference cannot be
	// resolved or fetched.
	ReasonResolveFailed = "ResolveFailed"
	// ReasonModelLoaded and ReasonModelLoadFailed: a pool's replica loaded
	// a pooled deployment's model, or failed to; ReasonQuarantined: the
	// pool no longer places the model, which crashed its replicas.
	ReasonModelLoaded     = "ModelLoaded"
	ReasonModelLoadFailed = "ModelLoadFailed"
	ReasonQuarantined     = "Quarantined"
)

// Event is one thing that happened to a deployment, for people: a scale
// decision and its reason, a replica's start, readiness or failure, a
// roll. It is the item of GET /v1/deployments/{name}/events.
//
// +kubebuilder:object:generate=false
type Event struct {
	// Time is when it (last) happened.
	Time time.Time `json:"time"`
	// Type is EventNormal or EventWarning.
	Type string `json:"type"`
	// Reason is one word in CamelCase, such as ReasonScaledUp.
	Reason string `json:"reason"`
	// Message says what happened, in words.
	Message string `json:"message"`
	// Count is how many times in a row it happened (Time is the latest);
	// 0 and 1 both mean once.
	Count int32 `json:"count,omitempty"`
}
