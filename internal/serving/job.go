package serving

import (
	"fmt"
	"strings"
	"time"
)

// Job is a batch inference job: every row of an input dataset sent through
// a model, the outputs written to one location, before a deadline and
// within a lease budget. The job either feeds an existing deployment at
// batch priority (Spec.Deployment) or runs replicas of its own from zero
// and back to zero (Spec.Serving). internal/jobs plans and runs it.
//
// +kubebuilder:object:generate=false
type Job struct {
	// Name identifies the job; the API makes one up when it is empty.
	Name   string    `json:"name"`
	Spec   JobSpec   `json:"spec"`
	Status JobStatus `json:"status"`
	// Generation increases by one on every change to Spec (a job's spec
	// does not change once submitted: it stays 1).
	Generation int64     `json:"generation"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// JobSpec is what a job's owner asks for.
//
// +kubebuilder:object:generate=false
type JobSpec struct {
	// Input is the dataset: where it is, its format, and which columns
	// make which input tensor.
	Input JobInput `json:"input"`
	// Deployment names an existing deployment to feed at batch priority
	// (its online traffic goes first). Exactly one of Deployment and
	// Serving is given.
	// +optional
	Deployment string `json:"deployment,omitempty"`
	// Serving is the spec of the job's own deployment, as `ebb deploy`
	// takes it (model, engine, python, env, template...): the job starts
	// its replicas from zero and scales them back to zero when done. The
	// planner sizes them: replicas, traffic and shadow are not allowed.
	// +optional
	Serving *Spec `json:"serving,omitempty"`
	// Output is where the results go, written once every row is done.
	Output JobOutput `json:"output"`
	// Deadline is when the last row must be done, RFC 3339.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	Deadline time.Time `json:"deadline"`
	// Lease bounds what the job may spend.
	Lease Lease `json:"lease"`
	// ChunkRows is how many rows go in one request (and one checkpoint);
	// default DefaultChunkRows.
	// +optional
	ChunkRows int32 `json:"chunkRows,omitempty"`
	// OnBadRow says what a row that does not fit the mapping (a missing
	// or non-numeric value) does: fail (the default) fails the job naming
	// the row; skip leaves it out of the output and counts it.
	// +optional
	OnBadRow string `json:"onBadRow,omitempty"`
	// RowsPerSecond, when set, is the expected throughput of one replica:
	// the job is sized, and refused when it cannot fit, at submit rather
	// than after its probe. The probe's measurement replaces it.
	// +optional
	RowsPerSecond float64 `json:"rowsPerSecond,omitempty"`
}

// JobInput is a job's dataset.
type JobInput struct {
	// URI is file:///abs/path, a path, or s3://bucket/key.
	URI string `json:"uri"`
	// Format is csv (with a header line), jsonl (one JSON object per
	// line) or parquet; default from URI's extension.
	// +optional
	Format string `json:"format,omitempty"`
	// Columns maps columns to input tensors: each entry makes one tensor
	// of shape [rows, len(columns)].
	Columns []TensorColumns `json:"columns"`
	// IDColumn, when set, is copied to each output row to identify it;
	// otherwise each output row carries its row number (from 0).
	// +optional
	IDColumn string `json:"idColumn,omitempty"`
}

// TensorColumns makes one input tensor of the named columns, in order:
// shape [rows, len(Columns)].
type TensorColumns struct {
	Tensor string `json:"tensor"`
	// Datatype is FP32 (the default), FP64, INT32, INT64, BOOL or BYTES.
	// +optional
	Datatype string   `json:"datatype,omitempty"`
	Columns  []string `json:"columns"`
}

// JobOutput is where a job's results go.
type JobOutput struct {
	// URI is file:///abs/path, a path, or s3://bucket/key.
	URI string `json:"uri"`
	// Format is jsonl, csv or parquet; default from URI's extension.
	// +optional
	Format string `json:"format,omitempty"`
}

// Lease is a job's budget.
type Lease struct {
	// MaxReplicas bounds the replicas the job runs at once.
	MaxReplicas int32 `json:"maxReplicas"`
	// MaxReplicaHours bounds the replica-hours the job may use, all its
	// replicas together, from its probe to its last row.
	MaxReplicaHours float64 `json:"maxReplicaHours"`
	// MaxGPUHours, when above 0, also bounds the GPU-hours the job may
	// use: replica-hours × the GPUs one replica asks for (nvidia.com/gpu
	// and MIG slices in the serving spec's template.resources). Only for
	// a serving spec (the job's own, or the fed deployment's) that asks
	// for GPUs.
	// +optional
	MaxGPUHours float64 `json:"maxGPUHours,omitempty"`
	// Windows, when set, are the only times the job may run (weekends
	// only, nights only): the schedule windows of deployments, without
	// minReplicas and maxReplicas. Outside them the job holds no replica.
	// +optional
	Windows []ScheduleWindow `json:"windows,omitempty"`
}

// Job phases.
const (
	JobPending   = "Pending"   // stored, not started
	JobPlanning  = "Planning"  // probing the rate and sizing the pool
	JobRunning   = "Running"   // chunks in flight
	JobSucceeded = "Succeeded" // every row done, output written
	JobFailed    = "Failed"    // stopped: Message says why
	JobCancelled = "Cancelled" // stopped by its owner
	JobRefused   = "Refused"   // cannot meet its deadline within its lease
)

// JobFinished reports whether phase is one a job never leaves.
func JobFinished(phase string) bool {
	switch phase {
	case JobSucceeded, JobFailed, JobCancelled, JobRefused:
		return true
	}
	return false
}

// RequestCancel asks j to stop at now, and records why among its events
// (the API's cancel: "cancel requested"): a job not started yet is
// Cancelled at once; a running one is left to its runner, which ends it
// at its next step. It reports false, changing nothing, for a job that
// is finished already.
func (j *Job) RequestCancel(now time.Time, why string) bool {
	if JobFinished(j.Status.Phase) {
		return false
	}
	j.Status.CancelRequested = true
	j.Status.AddEvent(now, "%s", why)
	if j.Status.Phase == JobPending || j.Status.Phase == "" {
		j.Status.Phase, j.Status.Message, j.Status.FinishedAt = JobCancelled, "cancelled before it started", &now
	}
	return true
}

// JobStatus is where a job stands.
//
// +kubebuilder:object:generate=false
type JobStatus struct {
	Phase string `json:"phase"`
	// Message says why the job is in its phase, in words.
	// +optional
	Message string `json:"message,omitempty"`
	// Deployment is the deployment that serves the job's chunks.
	// +optional
	Deployment string `json:"deployment,omitempty"`
	RowsTotal  int64  `json:"rowsTotal"`
	RowsDone   int64  `json:"rowsDone"`
	// RowsSkipped counts bad rows left out (onBadRow: skip); BadRows
	// lists the first few, with why.
	// +optional
	RowsSkipped int64 `json:"rowsSkipped,omitempty"`
	// +optional
	BadRows     []string `json:"badRows,omitempty"`
	ChunksTotal int64    `json:"chunksTotal"`
	ChunksDone  int64    `json:"chunksDone"`
	// RowsPerSecond is the measured rate of the whole job, lately.
	// +optional
	RowsPerSecond float64 `json:"rowsPerSecond,omitempty"`
	// ETA is when the last row is expected, at the measured rate.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	ETA *time.Time `json:"eta,omitempty"`
	// Replicas is how many replicas the job holds now.
	Replicas int32 `json:"replicas"`
	// ReplicaHours is what the job has used of its lease.
	ReplicaHours float64 `json:"replicaHours"`
	// GPUHours is ReplicaHours × the GPUs per replica, counted alongside
	// it; 0 for a deployment without GPUs.
	// +optional
	GPUHours float64 `json:"gpuHours,omitempty"`
	// Plan is the planner's latest sizing.
	// +optional
	Plan *JobPlan `json:"plan,omitempty"`
	// Refusal, for a Refused job, has the numbers: what the job needs
	// against what its lease allows.
	// +optional
	Refusal *JobRefusal `json:"refusal,omitempty"`
	// Warnings say what is at risk (the deadline, the budget).
	// +optional
	Warnings []string `json:"warnings,omitempty"`
	// Events are the job's latest events, oldest first (at most
	// MaxJobEvents): GET /v1/jobs/{name}/logs shows them.
	// +optional
	Events []JobEvent `json:"events,omitempty"`
	// CancelRequested is set by a cancel; the runner stops at its next
	// step and sets phase Cancelled.
	// +optional
	CancelRequested bool `json:"cancelRequested,omitempty"`
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	StartedAt *time.Time `json:"startedAt,omitempty"`
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	// Floor, while a job that feeds an existing deployment holds replicas
	// on it, records the deployment's own spec.scaling.minReplicas, so
	// that it is restored when the job ends, after a crash too. The home
	// that runs jobs writes it; the runner keeps it as the store has it.
	// +optional
	Floor *JobFloor `json:"floor,omitempty"`
}

// JobFloor is a floor of replicas a job holds on a deployment it feeds:
// spec.scaling.minReplicas raised from MinReplicas, the deployment's own,
// to Set while the job runs. At the end MinReplicas comes back, unless
// the deployment's owner changed the value in the meantime (it is no
// longer Set): the owner's change is kept.
//
// +kubebuilder:object:generate=false
type JobFloor struct {
	Deployment  string `json:"deployment"`
	MinReplicas int32  `json:"minReplicas"`
	Set         int32  `json:"set"`
}

// MaxJobEvents bounds JobStatus.Events; MaxJobBadRows JobStatus.BadRows.
const (
	MaxJobEvents  = 50
	MaxJobBadRows = 20
)

// JobEvent is one thing that happened to a job.
//
// +kubebuilder:object:generate=false
type JobEvent struct {
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
}

// AddEvent appends an event at t, dropping the oldest beyond MaxJobEvents.
func (s *JobStatus) AddEvent(t time.Time, format string, args ...any) {
	s.Events = append(s.Events, JobEvent{Time: t.UTC(), Message: fmt.Sprintf(format, args...)})
	if n := len(s.Events) - MaxJobEvents; n > 0 {
		s.Events = append(s.Events[:0:0], s.Events[n:]...)
	}
}

// JobPlan is a sizing of a job's pool by the planner.
//
// +kubebuilder:object:generate=false
type JobPlan struct {
	// Replicas is the count chosen: the fewest that meet the deadline,
	// hence the fewest replica-hours.
	Replicas int32 `json:"replicas"`
	// RowsPerSecondPerReplica is the rate the plan assumes.
	RowsPerSecondPerReplica float64 `json:"rowsPerSecondPerReplica"`
	// ReplicaHours is what the rest of the job is predicted to use.
	ReplicaHours float64 `json:"replicaHours"`
	// Finish is the predicted end of the last row.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	Finish time.Time `json:"finish"`
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	PlannedAt time.Time `json:"plannedAt"`
}

// JobRefusal says why a job cannot meet its deadline within its lease,
// with the numbers: what it needs against what its lease allows.
//
// +kubebuilder:object:generate=false
type JobRefusal struct {
	Rows                    int64   `json:"rows"`
	RowsPerSecondPerReplica float64 `json:"rowsPerSecondPerReplica"`
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	Deadline time.Time `json:"deadline"`
	// AllowedHours is the time the job may run before its deadline
	// (inside its windows, if any).
	AllowedHours float64 `json:"allowedHours"`
	// NeededReplicas is what meets the deadline; 0 when no count does
	// (no allowed time left).
	NeededReplicas  int32 `json:"neededReplicas"`
	AllowedReplicas int32 `json:"allowedReplicas"`
	// NeededReplicaHours is what the rows take; AllowedReplicaHours what
	// is left of the budget.
	NeededReplicaHours  float64 `json:"neededReplicaHours"`
	AllowedReplicaHours float64 `json:"allowedReplicaHours"`
	// GPUsPerReplica, NeededGPUHours and AllowedGPUHours are set for a
	// lease with maxGPUHours: NeededReplicaHours × GPUsPerReplica against
	// what is left of maxGPUHours.
	// +optional
	GPUsPerReplica int64 `json:"gpusPerReplica,omitempty"`
	// +optional
	NeededGPUHours float64 `json:"neededGPUHours,omitempty"`
	// +optional
	AllowedGPUHours float64 `json:"allowedGPUHours,omitempty"`
}

func (r *JobRefusal) Error() string {
	var why []string
	if r.AllowedHours <= 0 {
		why = append(why, "no allowed time is left before the deadline")
	}
	if r.NeededReplicas > r.AllowedReplicas {
		why = append(why, fmt.Sprintf("it needs %d replicas and the lease allows %d", r.NeededReplicas, r.AllowedReplicas))
	}
	if r.NeededReplicaHours > r.AllowedReplicaHours {
		why = append(why, fmt.Sprintf("it needs %.2f replica-hours and the lease allows %.2f", r.NeededReplicaHours, r.AllowedReplicaHours))
	}
	if r.GPUsPerReplica > 0 && r.NeededGPUHours > r.AllowedGPUHours {
		why = append(why, fmt.Sprintf("it needs %.2f GPU-hours (%d GPUs per replica) and the lease allows %.2f",
			r.NeededGPUHours, r.GPUsPerReplica, r.AllowedGPUHours))
	}
	if len(why) == 0 {
		why = append(why, "the lease does not fit")
	}
	return fmt.Sprintf("cannot finish %d rows by %s at %.4g rows/s per replica (%.2f h allowed before the deadline): %s",
		r.Rows, r.Deadline.UTC().Format(time.RFC3339), r.RowsPerSecondPerReplica, r.AllowedHours, strings.Join(why, "; "))
}
