package serving

import (
	"time"
)

// Deployment is one served model: what the user asked for (Spec) and what
// ebb observes (Status).
//
// +kubebuilder:object:generate=false
type Deployment struct {
	Name   string `json:"name"`
	Spec   Spec   `json:"spec"`
	Status Status `json:"status"`
	// Generation increases by one on every change to Spec.
	Generation int64     `json:"generation"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// Spec is the desired state of a deployment.
type Spec struct {
	// Model is a registry version ("diabetes@champion", "diabetes:3") or
	// an artifact path.
	Model string `json:"model"`
	// Engine names the runtime that loads Model: trees, onnx, python, http
	// or echo.
	// +optional
	Engine string `json:"engine,omitempty"`
	// Batching, when set, groups concurrent requests into one model call
	// (Triton's dynamic batching) in engines that can batch.
	// +optional
	Batching *Batching `json:"batching,omitempty"`
	// Python configures engine "python".
	// +optional
	Python *Python `json:"python,omitempty"`
	// Command configures engine "http": the argv of any OIP v2 server,
	// started once per replica with $PORT set to the port it must serve on.
	// +optional
	Command []string `json:"command,omitempty"`
	// URL configures engine "http" without Command: an OIP v2 server that
	// ebb does not start; each replica fronts it.
	// +optional
	URL string `json:"url,omitempty"`
	// Env is added to every replica's environment.
	// +optional
	Env map[string]string `json:"env,omitempty"`
	// Scaling is the autoscaling policy.
	// +optional
	Scaling Scaling `json:"scaling"`
}

// Batching is a dynamic batching policy with Triton's semantics: a batch is
// sent as soon as it holds MaxBatchSize rows or one of PreferredBatchSizes,
// otherwise when its oldest request has waited MaxQueueDelay.
type Batching struct {
	// +optional
	MaxBatchSize int `json:"maxBatchSize"`
	// +optional
	PreferredBatchSizes []int `json:"preferredBatchSizes,omitempty"`
	// +optional
	MaxQueueDelay Duration `json:"maxQueueDelay"`
}

// Python says which user class serves the model: it has load(path) and
// predict(inputs).
type Python struct {
	// Class is "FILE.py:ClassName" (FILE relative to the model's
	// directory, or absolute) or "module:ClassName".
	// +optional
	Class string `json:"class"`
	// Interpreter is the Python to run; default /usr/bin/python3.
	// +optional
	Interpreter string `json:"interpreter,omitempty"`
}

// Scaling is a deployment's autoscaling policy. The autoscaler keeps the
// average number of in-flight requests per replica near TargetConcurrency,
// between MinReplicas and MaxReplicas, and scales to zero when MinReplicas is
// 0 and no request arrived for ScaleToZeroAfter.
type Scaling struct {
	// +optional
	MinReplicas int32 `json:"minReplicas"`
	// +optional
	MaxReplicas int32 `json:"maxReplicas"`
	// +optional
	TargetConcurrency float64 `json:"targetConcurrency"`
	// +optional
	ScaleToZeroAfter Duration `json:"scaleToZeroAfter"`
	// StableWindow is the averaging window for normal scaling decisions.
	// +optional
	StableWindow Duration `json:"stableWindow"`
	// PanicWindowPercent is the panic window as a percentage of StableWindow.
	// +optional
	PanicWindowPercent float64 `json:"panicWindowPercent"`
	// PanicThreshold is the ratio of panic-window demand to current capacity
	// (in percent) above which the autoscaler enters panic mode.
	// +optional
	PanicThreshold float64 `json:"panicThresholdPercent"`
}

// Status is what ebb observes about a deployment.
//
// +kubebuilder:object:generate=false
type Status struct {
	// Replicas counts replicas that exist in any state.
	// +optional
	Replicas int32 `json:"replicas"`
	// ReadyReplicas counts replicas that receive traffic.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// DesiredReplicas is the autoscaler's latest decision.
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas"`
	// ModelVersion is the registry version new replicas run ("diabetes:3");
	// empty when the spec names an artifact path.
	// +optional
	ModelVersion string `json:"modelVersion,omitempty"`
	// Failure, when set, says why replicas cannot start (the model does not
	// load or resolve) while none is ready; requests fail fast with it.
	// +optional
	Failure string `json:"failure,omitempty"`
	// Reason explains the latest decision or failure in words.
	// +optional
	Reason string `json:"reason,omitempty"`
	// LastScaleTime is when DesiredReplicas last changed.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +optional
	LastScaleTime *time.Time `json:"lastScaleTime,omitempty"`
	// ReplicaStatuses lists every replica with its cold-start phases.
	// +optional
	ReplicaStatuses []ReplicaStatus `json:"replicaStatuses,omitempty"`
}

// Replica states.
const (
	ReplicaStarting = "starting"
	ReplicaReady    = "ready"
	ReplicaDraining = "draining"
	ReplicaFailed   = "failed"
)

// ReplicaStatus is one replica as observed.
//
// +kubebuilder:object:generate=false
type ReplicaStatus struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Endpoint string `json:"endpoint,omitempty"`
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	StartedAt time.Time `json:"startedAt"`
	Restarts  int32     `json:"restarts,omitempty"`
	// ColdStart lists where this replica's start spent its time, in order.
	ColdStart []Phase `json:"coldStart,omitempty"`
	// ModelVersion is the registry version this replica serves, if any.
	ModelVersion string `json:"modelVersion,omitempty"`
	Message      string `json:"message,omitempty"`
}

// Cold-start phase names, in the order they happen.
const (
	PhaseProcessStarted = "process_started" // scheduled until the process runs
	PhaseModelLoaded    = "model_loaded"    // process running until the model is in memory
	PhaseReady          = "ready"           // model loaded until the replica receives traffic
)

// Phase is one step of a cold start: it ended at At and took Duration.
//
// +kubebuilder:object:generate=false
type Phase struct {
	Name string `json:"name"`
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	At       time.Time `json:"at"`
	Duration Duration  `json:"duration"`
}
