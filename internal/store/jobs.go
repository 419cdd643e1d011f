package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// JobStore keeps batch inference jobs (serving.Job) and the checkpoints
// of their chunks: the SQL store in both homes. Errors wrap ErrNotFound,
// ErrExists and ErrUnavailable as the deployment methods' do.
type JobStore interface {
	// CreateJob stores j with Generation 1 and CreatedAt and UpdatedAt
	// now; j's Status is stored as given (a new job is Pending).
	CreateJob(ctx context.Context, j serving.Job) (serving.Job, error)
	GetJob(ctx context.Context, name string) (serving.Job, error)
	// ListJobs returns every job, oldest first.
	ListJobs(ctx context.Context) ([]serving.Job, error)
	// UpdateJob follows ApplyJobUpdate in one transaction; fn's error is
	// returned unwrapped and nothing is written.
	UpdateJob(ctx context.Context, name string, fn func(*serving.Job) error) (serving.Job, error)
	// DeleteJob deletes the job and its chunk checkpoints.
	DeleteJob(ctx context.Context, name string) error

	// PutJobChunk records that chunk c of job c.Job is done. It is
	// idempotent by (c.Job, c.ID): a chunk recorded before is kept as it
	// was, and putting it again is no error. A missing job is an error
	// wrapping ErrNotFound.
	PutJobChunk(ctx context.Context, c JobChunk) error
	// ListJobChunks returns the chunks recorded for job, by Index (then
	// ID); none (an empty slice) for a job without any, or no such job.
	ListJobChunks(ctx context.Context, job string) ([]JobChunk, error)
}

// JobChunk is the checkpoint of one finished chunk of a job: its results
// are written (internal/jobs says where), and it is never sent again.
type JobChunk struct {
	Job string
	// ID names the chunk uniquely within its job: its index and a hash of
	// the input's identity, so that a chunk of a changed input is another.
	ID    string
	Index int64
	// Rows is how many input rows the chunk held; Skipped how many of
	// them were bad and left out of its results.
	Rows    int64
	Skipped int64
	// DoneAt is set by the store.
	DoneAt time.Time
}

// ApplyJobUpdate is ApplyUpdate for a job: fn edits a copy of old; its
// Spec and Status are kept (Name may not change); Generation increases
// when the Spec changed; UpdatedAt is now. It returns the job to write
// and its spec and status as JSON; fnErr is fn's own error.
func ApplyJobUpdate(old serving.Job, fn func(*serving.Job) error, now time.Time) (out serving.Job, spec, status []byte, fnErr, err error) {
	j := old
	// fn gets a deep enough copy: the slices a status update appends to.
	j.Status.Warnings = append([]string(nil), old.Status.Warnings...)
	j.Status.Events = append([]serving.JobEvent(nil), old.Status.Events...)
	j.Status.BadRows = append([]string(nil), old.Status.BadRows...)
	if err := fn(&j); err != nil {
		return serving.Job{}, nil, nil, err, err
	}
	if j.Name != old.Name {
		return serving.Job{}, nil, nil, nil, fmt.Errorf("cannot rename job %q to %q", old.Name, j.Name)
	}
	oldSpec, err := json.Marshal(old.Spec)
	if err != nil {
		return serving.Job{}, nil, nil, nil, err
	}
	if spec, err = json.Marshal(j.Spec); err != nil {
		return serving.Job{}, nil, nil, nil, fmt.Errorf("encode spec: %w", err)
	}
	if status, err = json.Marshal(j.Status); err != nil {
		return serving.Job{}, nil, nil, nil, fmt.Errorf("encode status: %w", err)
	}
	out = serving.Job{Name: old.Name, Spec: j.Spec, Status: j.Status, Generation: old.Generation,
		CreatedAt: old.CreatedAt, UpdatedAt: now}
	if string(oldSpec) != string(spec) {
		out.Generation++
	}
	return out, spec, status, nil, nil
}
