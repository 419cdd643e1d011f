package jobs

import (
	"context"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Admission checks a job when it is submitted, before it is stored and
// before any replica starts, with what can be known then: that its input
// can be read and has the columns its mapping names, that its output can
// be written, and that its lease can fit its deadline — always for the
// time its windows leave, and for replicas and replica-hours when the job
// gives its expected rate (spec.rowsPerSecond). The admin API calls it.
type Admission struct {
	Storage *Storage
	Planner Planner
	Clock   Clock
	// GPUs, when set, tells the GPUs per replica of a deployment a job
	// feeds, so that lease.maxGPUHours is checked at submit too; a job's
	// own spec (spec.serving) says its GPUs itself.
	GPUs GPUCounter
}

// Admit checks j, which must be defaulted and valid, and fills in its
// status what it learned: the rows and chunks, and the plan when the rate
// is known. It returns a *serving.JobRefusal, with the numbers, when the
// lease cannot fit; an *InputError when the input or output is wrong.
func (a *Admission) Admit(ctx context.Context, j *serving.Job) error {
	clock := a.Clock
	if clock == nil {
		clock = wallClock{}
	}
	st := a.Storage
	if st == nil {
		st = &Storage{}
	}
	in, err := openInput(ctx, st, j.Spec)
	if err != nil {
		return &InputError{err}
	}
	out, err := parseLoc(j.Spec.Output.URI)
	if err == nil {
		err = st.checkWritable(ctx, out)
	}
	if err != nil {
		return &InputError{err}
	}
	j.Status.RowsTotal, j.Status.ChunksTotal = in.rows, in.chunks()
	now := clock.Now()
	rate := j.Spec.RowsPerSecond
	if rate == 0 {
		// Unknown until the probe: only the windows can refuse now.
		if allowedDuration(j.Spec.Lease.Windows, now, j.Spec.Deadline) > 0 || in.rows == 0 {
			return nil
		}
		return &serving.JobRefusal{Rows: in.rows, Deadline: j.Spec.Deadline, AllowedReplicas: j.Spec.Lease.MaxReplicas,
			AllowedReplicaHours: j.Spec.Lease.MaxReplicaHours}
	}
	var gpus int64
	if j.Spec.Serving != nil {
		gpus = j.Spec.Serving.GPUs()
	} else if a.GPUs != nil && j.Spec.Lease.MaxGPUHours > 0 {
		if gpus, err = a.GPUs.GPUsPerReplica(ctx, j.Spec.Deployment); err != nil {
			return err
		}
	}
	plan, err := a.Planner.Plan(Situation{Now: now, Deadline: j.Spec.Deadline, RowsLeft: in.rows, RowsPerSecondPerReplica: rate,
		Lease: j.Spec.Lease, GPUsPerReplica: gpus})
	if err != nil {
		return err
	}
	if in.rows > 0 {
		j.Status.Plan = &plan
	}
	return nil
}

// InputError is a job whose input cannot be read or does not have the
// mapped columns (a *SchemaError inside), or whose output cannot be
// written.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }
