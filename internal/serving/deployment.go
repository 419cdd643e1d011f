package serving

import (
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
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
	// UpstreamModel is, for engine http, the name the server behind
	// (Command or URL) knows the model by: requests for this deployment
	// reach it under that name (/v2/models/{upstreamModel}/..., or the
	// "model" field of an OpenAI request). Default: the deployment's name.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	UpstreamModel string `json:"upstreamModel,omitempty"`
	// Protocol is, for engine http, the API the server behind speaks: oip
	// (the Open Inference Protocol v2, the default) or openai (the OpenAI
	// API of vLLM, TGI, llama.cpp and the like: the gateway serves it at
	// /openai/v1/... and routes by the request's "model" field).
	// +optional
	// +kubebuilder:validation:Enum=oip;openai
	Protocol string `json:"protocol,omitempty"`
	// Env is added to every replica's environment.
	// +optional
	Env map[string]string `json:"env,omitempty"`
	// Scaling is the autoscaling policy.
	// +optional
	Scaling Scaling `json:"scaling"`
	// Replicas, when set, pins the deployment at exactly this many
	// replicas whatever the demand: the autoscaler and its min..max range
	// step aside. 0 scales the deployment to zero for good: requests get
	// 503 and do not start a replica. `ebb scale NAME --replicas N` and
	// `kubectl scale` set it; removing it (`ebb scale NAME --auto`, or null
	// in a merge patch) returns the deployment to autoscaling.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Replicas *int32 `json:"replicas,omitempty"`
	// Template holds the settings of each replica pod in a cluster; `ebb
	// up` applies its resource limits to replica processes and reports
	// the rest in status.ignored.
	// +optional
	Template Template `json:"template,omitzero"`
	// ColdStart holds the options that trade idle cost for cold-start time
	// in a cluster; `ebb up` reports them in status.ignored.
	// +optional
	ColdStart ColdStart `json:"coldStart,omitzero"`
	// Traffic, when set, splits requests between several model versions
	// by weight (a canary, an A/B test): each target runs replicas of its
	// own and scales 0:N on its share. It lists every version served,
	// spec.model (the primary) included; the weights sum to 100.
	// +optional
	// +listType=atomic
	Traffic []TrafficTarget `json:"traffic,omitempty"`
	// Shadow, when set, mirrors a share of the requests to another model
	// version and compares its answers with the primary's; clients only
	// ever get the primary's. The shadow runs replicas of its own (the
	// track name.shadow), scaled 0:N on the mirrored load.
	// +optional
	Shadow *Shadow `json:"shadow,omitempty"`
	// Routing says how requests are spread over the replicas: by least
	// outstanding requests (the default), by a consistent hash of a key
	// taken from a header or an input tensor, or by a prompt's prefix.
	// +optional
	Routing *Routing `json:"routing,omitempty"`
	// Scatter, when set, splits a request with more rows than
	// segmentRows into segments served by several replicas in parallel,
	// and joins their outputs in row order.
	// +optional
	Scatter *Scatter `json:"scatter,omitempty"`
	// Pool, when set, hosts the model in a multi-model pool (serving.Pool)
	// instead of replicas of its own: the pool's replicas load it on
	// demand. Clients call it by the deployment's name all the same.
	// +optional
	Pool *PoolRef `json:"pool,omitempty"`
	// PredictionLog, when set, has the gateways log a sampled share of
	// the deployment's requests and answers to the prediction log (files,
	// and S3 where the home uploads them).
	// +optional
	PredictionLog *PredictionLog `json:"predictionLog,omitempty"`
}

// OpenAI reports whether the deployment's server speaks the OpenAI API
// rather than OIP v2.
func (s *Spec) OpenAI() bool { return s.Protocol == ProtocolOpenAI }

// Pinned reports whether the spec pins the replica count, and at what.
func (s *Spec) Pinned() (int32, bool) {
	if s.Replicas == nil {
		return 0, false
	}
	return max(*s.Replicas, 0), true
}

// ScaledToZero reports whether the owner pinned the deployment at zero
// replicas: requests fail at once and start nothing.
func (s *Spec) ScaledToZero() bool {
	n, ok := s.Pinned()
	return ok && n == 0
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
	// MaxConcurrency caps the requests in flight on one replica: the
	// gateway admits at most MaxConcurrency × ready replicas at once and
	// queues the rest, served fairly across tenants and by priority
	// (internal/fairqueue). 0, the default, sets no cap. Unlike
	// TargetConcurrency, which the autoscaler aims at, it is a hard limit.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	MaxConcurrency int32 `json:"maxConcurrency,omitempty"`
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
	// Schedule lists time windows with replica bounds of their own, such
	// as a floor of 2 during business hours; the first window that covers
	// a moment applies (see ScheduleWindow).
	// +optional
	Schedule []ScheduleWindow `json:"schedule,omitempty"`
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
	// Schedule, when spec.scaling.schedule is set, says which window's
	// bounds apply and when they next change.
	// +optional
	Schedule *ScheduleStatus `json:"schedule,omitempty"`
	// ModelVersion is the registry version new replicas run ("diabetes:3");
	// empty when the spec names an artifact path.
	// +optional
	ModelVersion string `json:"modelVersion,omitempty"`
	// SpecGeneration is the deployment's generation whose spec new
	// replicas run: behind the deployment's generation until the control
	// loop has read a new spec and resolved its model. Replicas of an
	// earlier one are marked outdated in ReplicaStatuses.
	// +optional
	SpecGeneration int64 `json:"specGeneration,omitempty"`
	// Metadata is the OIP v2 model metadata of ModelVersion, from its
	// registry signature: gateways answer GET /v2/models/{name} from it
	// while the deployment is at zero, without waking it.
	// +optional
	Metadata *oip.ModelMetadata `json:"metadata,omitempty"`
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
	// Traffic lists, for a deployment that splits its traffic
	// (spec.traffic), each target with its own replica counts; Replicas,
	// ReadyReplicas and DesiredReplicas above count all targets together.
	// +optional
	Traffic []TrafficStatus `json:"traffic,omitempty"`
	// Ignored lists the spec fields this home accepts but cannot honour,
	// each with the reason ("template.nodeSelector: no nodes to select on
	// one machine"). Only `ebb up` ignores any; a cluster honours them all.
	// +optional
	Ignored []string `json:"ignored,omitempty"`
	// Pool, for a model hosted in a pool (spec.pool), says where it is
	// loaded and whether it is quarantined.
	// +optional
	Pool *PoolModelStatus `json:"pool,omitempty"`
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
	// Track is the tag of the traffic target the replica serves, for a
	// deployment that splits its traffic; empty for the primary's.
	Track string `json:"track,omitempty"`
	// Outdated is set on a replica of an earlier spec or model version:
	// it serves until enough replicas of the current one are ready, then
	// drains.
	Outdated bool `json:"outdated,omitempty"`
}
