package serving

import (
	"fmt"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/pool"
)

// Pool is a multi-model pool: a set of replicas of one engine that host
// many models each, loading and unloading them on demand (package pool
// decides where). A model joins a pool through its deployment's spec.pool;
// clients call it by its deployment's name, as any deployment. The pool's
// replicas scale 0:N on the demand of all its models together, and each
// model is placed on ShardSize of them (shuffle sharding), more while it
// is hot.
//
// +kubebuilder:object:generate=false
type Pool struct {
	Name string   `json:"name"`
	Spec PoolSpec `json:"spec"`
	// Status is what the control loop observes; output only.
	Status PoolStatus `json:"status,omitzero"`
	// Generation increases by one on every change to Spec.
	Generation int64     `json:"generation"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// PoolSpec is the desired state of a pool.
type PoolSpec struct {
	// Engine runs every model of the pool: trees, onnx or python. A
	// python pool's models share its replicas' worker processes, each an
	// instance of its deployment's spec.python.class, which must opt in
	// with the class attribute ebb_multi_model = True (package
	// engine/python); they run /usr/bin/python3, one worker per replica.
	Engine string `json:"engine"`
	// MemoryBudget is the most memory the models loaded on one replica may
	// hold together, measured by the replica after each load (e.g. 512MiB,
	// 2Gi, 200MB).
	MemoryBudget string `json:"memoryBudget"`
	// ShardSize is how many replicas each model is placed on (k of the
	// pool's N), more while it is hot; default DefaultShardSize.
	ShardSize int32 `json:"shardSize,omitempty"`
	// MinReplicas and MaxReplicas bound the pool's replicas; the pool
	// scales between them on the demand of all its models. Defaults 0 and
	// DefaultMaxReplicas.
	MinReplicas int32 `json:"minReplicas,omitempty"`
	MaxReplicas int32 `json:"maxReplicas,omitempty"`
	// Targets are the loads the pool scales and places by.
	// +optional
	Targets PoolTargets `json:"targets,omitzero"`
	// ScaleToZeroAfter is how long the pool stays up without a request
	// for any model; default DefaultScaleToZeroAfter.
	// +optional
	ScaleToZeroAfter Duration `json:"scaleToZeroAfter,omitzero"`
	// Batching, when set, batches each model's requests on its own.
	Batching *Batching `json:"batching,omitempty"`
	// Env is added to every replica's environment.
	Env map[string]string `json:"env,omitempty"`
	// Template holds the settings of each replica pod in a cluster
	// (resources, placement, image), as a deployment's spec.template;
	// `ebb up` applies its resource limits to replica processes.
	// +optional
	Template Template `json:"template,omitzero"`
}

// PoolTargets are the loads a pool aims at.
type PoolTargets struct {
	// Concurrency is the requests in flight per replica, all models
	// together, that the pool's autoscaler aims at; default
	// DefaultTargetConcurrency.
	Concurrency float64 `json:"concurrency,omitempty"`
	// ModelInFlight is one model's requests in flight (or held) per
	// replica of its shard above which its shard widens; default
	// pool.DefaultTargetInFlight.
	ModelInFlight float64 `json:"modelInFlight,omitempty"`
	// ModelRate is one model's requests per second per replica of its
	// shard above which its shard widens; 0 leaves rate out.
	ModelRate float64 `json:"modelRate,omitempty"`
}

// PoolRef names the pool a deployment's model is hosted in.
type PoolRef struct {
	// Name is the pool's name.
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
}

// PoolStatus is what the control loop observes of a pool.
type PoolStatus struct {
	// Replicas, ReadyReplicas and DesiredReplicas count the pool's
	// replicas as a deployment's status does. Every count is optional in
	// the ModelPool's schema: a merge patch leaves out a zero that was
	// zero already.
	// +optional
	Replicas int32 `json:"replicas"`
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas"`
	// Models counts the deployments that name the pool; Loaded those
	// loaded on at least one replica.
	// +optional
	Models int `json:"models"`
	// +optional
	Loaded int `json:"loaded"`
	// Reason explains the latest scaling decision; Failure why replicas
	// cannot start, if they cannot.
	Reason  string `json:"reason,omitempty"`
	Failure string `json:"failure,omitempty"`
	// Quarantined lists the models the pool no longer places, each with
	// why.
	Quarantined []PoolQuarantine `json:"quarantined,omitempty"`
	// ReplicaStatuses lists every replica with its memory.
	ReplicaStatuses []PoolReplicaStatus `json:"replicaStatuses,omitempty"`
}

// PoolQuarantine is one quarantined model of a pool.
type PoolQuarantine struct {
	Model  string `json:"model"`
	Reason string `json:"reason"`
}

// PoolReplicaStatus is one replica of a pool.
type PoolReplicaStatus struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Endpoint string `json:"endpoint,omitempty"`
	// Slot is the replica's place in the pool, its name in placement.
	Slot string `json:"slot,omitempty"`
	// Models counts the models it holds or loads; UsedBytes is their
	// measured memory, BudgetBytes its budget.
	Models      int    `json:"models"`
	UsedBytes   int64  `json:"usedBytes"`
	BudgetBytes int64  `json:"budgetBytes"`
	Message     string `json:"message,omitempty"`
}

// PoolModelStatus is where a pooled deployment's model is: in a
// deployment's Status.
//
// +kubebuilder:object:generate=false
type PoolModelStatus struct {
	// Pool names the pool.
	Pool string `json:"pool"`
	// Replicas are the slots of the replicas that hold the model, ready.
	Replicas []string `json:"replicas,omitempty"`
	// Bytes is the model's memory as a replica measured it; 0 before.
	Bytes int64 `json:"bytes,omitempty"`
	// Quarantine, when set, is why the pool no longer places the model.
	Quarantine string `json:"quarantine,omitempty"`
}

// Defaults and bounds of a PoolSpec.
const (
	DefaultShardSize = pool.DefaultReplicas
	// poolEnginesText names the engines a pool runs: those that host
	// several models in one process.
	poolEnginesText = "trees, onnx or python"
)

// poolKeyPrefix starts the key the control loop knows a pool's replicas
// by: no deployment name or track key has a ':'.
const poolKeyPrefix = "pool:"

// PoolKey is the key the control loop knows pool name's replicas by, as it
// knows a deployment's by its name: "pool:NAME".
func PoolKey(name string) string { return poolKeyPrefix + name }

// PoolOfKey returns the pool name of a PoolKey, and whether key is one.
func PoolOfKey(key string) (string, bool) { return strings.CutPrefix(key, poolKeyPrefix) }

// PoolEngine reports whether engine can run a pool: trees and onnx, and
// python for classes that opt in to sharing a process (checked as each
// model loads).
func PoolEngine(engine string) bool {
	return engine == "trees" || engine == "onnx" || engine == "python"
}

// Default fills the zero fields of s with defaults. Call it before
// Validate.
func (s *PoolSpec) Default() {
	if s.ShardSize == 0 {
		s.ShardSize = DefaultShardSize
	}
	if s.MaxReplicas == 0 {
		s.MaxReplicas = max(DefaultMaxReplicas, s.MinReplicas)
	}
	if s.Targets.Concurrency == 0 {
		s.Targets.Concurrency = DefaultTargetConcurrency
	}
	if s.Targets.ModelInFlight == 0 {
		s.Targets.ModelInFlight = pool.DefaultTargetInFlight
	}
	if s.ScaleToZeroAfter.Duration == 0 {
		s.ScaleToZeroAfter = D(DefaultScaleToZeroAfter)
	}
}

// BudgetBytes returns the per-replica memory budget in bytes; 0 when it
// does not parse (Validate says why).
func (s *PoolSpec) BudgetBytes() int64 {
	b, err := pool.ParseBytes(s.MemoryBudget)
	if err != nil {
		return 0
	}
	return b
}

// Policy returns the pool's placement policy.
func (s *PoolSpec) Policy() pool.Policy {
	return pool.Policy{Replicas: int(s.ShardSize), TargetInFlight: s.Targets.ModelInFlight, TargetRate: s.Targets.ModelRate}
}

// DeploymentSpec returns the spec of the pool's replicas as a deployment:
// its engine, environment and batching, scaled by its bounds and
// concurrency target. Model is empty: a pool's replica starts with none.
func (s *PoolSpec) DeploymentSpec() Spec {
	out := Spec{Engine: s.Engine, Env: s.Env, Batching: s.Batching, Template: s.Template, Scaling: Scaling{
		MinReplicas: s.MinReplicas, MaxReplicas: s.MaxReplicas,
		TargetConcurrency: s.Targets.Concurrency, ScaleToZeroAfter: s.ScaleToZeroAfter,
	}}
	out.Default()
	return out
}

// Validate checks the pool's name and spec, returning a
// *PoolValidationError that lists every problem.
func (p *Pool) Validate() error {
	var errs []*FieldError
	if err := ValidateName(p.Name); err != nil {
		errs = append(errs, err.(*FieldError))
	}
	errs = append(errs, p.Spec.validate()...)
	if len(errs) > 0 {
		return &PoolValidationError{Errors: errs}
	}
	return nil
}

// PoolValidationError collects every field error of a pool.
//
// +kubebuilder:object:generate=false
type PoolValidationError struct {
	Errors []*FieldError
}

func (e *PoolValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.Error()
	}
	return "invalid pool: " + strings.Join(parts, "; ")
}

func (s *PoolSpec) validate() []*FieldError {
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, args...)})
	}
	switch {
	case s.Engine == "":
		add("spec.engine", "is required: %s", poolEnginesText)
	case !PoolEngine(s.Engine):
		add("spec.engine", "%q cannot run a pool: use %s", s.Engine, poolEnginesText)
	}
	if s.MemoryBudget == "" {
		add("spec.memoryBudget", "is required: the most memory one replica's models may hold, e.g. 512MiB")
	} else if b, err := pool.ParseBytes(s.MemoryBudget); err != nil {
		add("spec.memoryBudget", "%v", err)
	} else if b < 1<<20 {
		add("spec.memoryBudget", "%s is less than 1 MiB: give room for at least a few models", s.MemoryBudget)
	}
	if s.ShardSize < 1 || s.ShardSize > MaxReplicasLimit {
		add("spec.shardSize", "must be between 1 and %d, got %d", MaxReplicasLimit, s.ShardSize)
	}
	if s.MinReplicas < 0 {
		add("spec.minReplicas", "must be 0 or more, got %d", s.MinReplicas)
	}
	if s.MaxReplicas < 1 || s.MaxReplicas > MaxReplicasLimit {
		add("spec.maxReplicas", "must be between 1 and %d, got %d", MaxReplicasLimit, s.MaxReplicas)
	}
	if s.MinReplicas > s.MaxReplicas {
		add("spec", "minReplicas (%d) must not exceed maxReplicas (%d)", s.MinReplicas, s.MaxReplicas)
	}
	t := s.Targets
	if t.Concurrency <= 0 {
		add("spec.targets.concurrency", "must be greater than 0, got %g", t.Concurrency)
	}
	if t.ModelInFlight <= 0 {
		add("spec.targets.modelInFlight", "must be greater than 0, got %g", t.ModelInFlight)
	}
	if t.ModelRate < 0 {
		add("spec.targets.modelRate", "must be 0 (off) or more, got %g", t.ModelRate)
	}
	if s.ScaleToZeroAfter.Duration < 0 {
		add("spec.scaleToZeroAfter", "must not be negative, got %s", s.ScaleToZeroAfter)
	}
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			add("spec.env", "%q is not a valid environment variable name", k)
		}
	}
	if b := s.Batching; b != nil && (b.MaxBatchSize < 1 || b.MaxQueueDelay.Duration < 0 || b.MaxQueueDelay.Duration > 10*time.Second) {
		add("spec.batching", "needs maxBatchSize of at least 1 and maxQueueDelay between 0 and 10s")
	}
	return errs
}

// validatePooled checks a deployment whose model is hosted in a pool
// (spec.pool): the pool's replicas run it, so the fields that shape a
// deployment's own replicas, or the gateway's choice among them, have no
// place.
func (s *Spec) validatePooled() []*FieldError {
	if s.Pool == nil {
		return nil
	}
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, args...)})
	}
	if err := ValidateName(s.Pool.Name); err != nil {
		add("spec.pool.name", "%s", strings.TrimPrefix(err.Error(), "name: "))
	}
	_, isRef := ParseModelRef(s.Model)
	if !PoolEngine(s.Engine) && !(s.Engine == "" && isRef) {
		add("spec.engine", "%q cannot be hosted in a pool: a pool runs %s models", s.Engine, poolEnginesText)
	}
	const why = "a pooled model runs on its pool's replicas: "
	if s.Replicas != nil {
		add("spec.replicas", why+"remove it; the pool scales (spec.minReplicas of the pool)")
	}
	if s.Scaling.MinReplicas > 0 || len(s.Scaling.Schedule) > 0 || s.Scaling.MaxConcurrency > 0 {
		add("spec.scaling", why+"remove minReplicas, schedule and maxConcurrency; the pool's bounds and targets apply")
	}
	if len(s.Traffic) > 0 || s.Shadow != nil {
		add("spec", why+"traffic splits and shadows need replicas of their own; deploy them outside the pool")
	}
	if s.Routing != nil || s.Scatter != nil {
		add("spec", why+"routing and scatter choose among a deployment's own replicas; remove them")
	}
	if s.Batching != nil || len(s.Env) > 0 {
		add("spec", why+"batching and env are the pool's (spec.batching and spec.env of the pool)")
	}
	if s.Python != nil && s.Python.Workers > 0 {
		add("spec.python.workers", why+"its models share the pool's worker processes; remove it")
	}
	return errs
}
