package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Batch inference jobs (store.JobStore): a job's spec and status are JSON
// columns, as a deployment's spec is, so that a field added later needs no
// migration; seq orders jobs by submission. job_chunks holds the
// checkpoint of every finished chunk, keyed by (job, id): inserting one
// twice keeps the first, which makes a chunk idempotent by its id.

var _ store.JobStore = (*Store)(nil)

const jobColumns = `name, spec, status, generation, created_at, updated_at`

const chunkColumns = `job, id, chunk_index, row_count, skipped_rows, done_at`

// CreateJob implements store.JobStore.
func (s *Store) CreateJob(ctx context.Context, j serving.Job) (serving.Job, error) {
	spec, err := json.Marshal(j.Spec)
	if err != nil {
		return serving.Job{}, fmt.Errorf("encode job %q: %w", j.Name, err)
	}
	status, err := json.Marshal(j.Status)
	if err != nil {
		return serving.Job{}, fmt.Errorf("encode job %q: %w", j.Name, err)
	}
	now := s.now()
	err = s.insert(ctx, fmt.Sprintf("job %q", j.Name),
		`INSERT INTO jobs (`+jobColumns+`) VALUES (?, ?, ?, 1, ?, ?)`,
		j.Name, string(spec), string(status), s.time(now), s.time(now))
	if err != nil {
		return serving.Job{}, fmt.Errorf("create job %q: %w", j.Name, err)
	}
	out := serving.Job{Name: j.Name, Generation: 1, CreatedAt: now, UpdatedAt: now}
	if err := decodeJob(&out, spec, status); err != nil {
		return serving.Job{}, err
	}
	return out, nil
}

// GetJob implements store.JobStore.
func (s *Store) GetJob(ctx context.Context, name string) (serving.Job, error) {
	j, err := getJob(ctx, s.read(), name, "")
	if err != nil {
		return serving.Job{}, fmt.Errorf("get job %q: %w", name, err)
	}
	return j, nil
}

// ListJobs implements store.JobStore: every job, oldest first.
func (s *Store) ListJobs(ctx context.Context) ([]serving.Job, error) {
	out, err := list(ctx, s.read(), scanJob, `SELECT `+jobColumns+` FROM jobs ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}

// UpdateJob implements store.JobStore: it reads the named job, passes it
// to fn and writes back what fn left (store.ApplyJobUpdate), all in one
// transaction that holds the row. fn may be called more than once, should
// the database make the transaction run again.
func (s *Store) UpdateJob(ctx context.Context, name string, fn func(*serving.Job) error) (serving.Job, error) {
	var out serving.Job
	var fnErr error
	err := s.write(ctx, func(tx conn) error {
		fnErr = nil
		old, err := getJob(ctx, tx, name, s.rowLock(ForUpdate))
		if err != nil {
			return err
		}
		var spec, status []byte
		out, spec, status, fnErr, err = store.ApplyJobUpdate(old, fn, s.now())
		if err != nil {
			return err
		}
		if err := decodeJob(&out, spec, status); err != nil {
			return err
		}
		_, err = tx.exec(ctx, `UPDATE jobs SET spec = ?, status = ?, generation = ?, updated_at = ? WHERE name = ?`,
			string(spec), string(status), out.Generation, s.time(out.UpdatedAt), name)
		return err
	})
	if fnErr != nil {
		return serving.Job{}, fnErr
	}
	if err != nil {
		return serving.Job{}, fmt.Errorf("update job %q: %w", name, err)
	}
	return out, nil
}

// DeleteJob implements store.JobStore; a missing job is an error wrapping
// store.ErrNotFound.
func (s *Store) DeleteJob(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx conn) error {
		res, err := tx.exec(ctx, `DELETE FROM jobs WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("job %q %w", name, store.ErrNotFound)
		}
		_, err = tx.exec(ctx, `DELETE FROM job_chunks WHERE job = ?`, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete job %q: %w", name, err)
	}
	return nil
}

// PutJobChunk implements store.JobStore with one insert that keeps an
// existing row, after checking, in the same transaction, that the job
// exists.
func (s *Store) PutJobChunk(ctx context.Context, c store.JobChunk) error {
	now := s.now()
	err := s.write(ctx, func(tx conn) error {
		var one int
		err := tx.row(ctx, `SELECT 1 FROM jobs WHERE name = ?`+s.rowLock(ForNoKeyUpdate), c.Job).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("job %q %w", c.Job, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		_, err = tx.exec(ctx, `INSERT INTO job_chunks (`+chunkColumns+`) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (job, id) DO NOTHING`,
			c.Job, c.ID, c.Index, c.Rows, c.Skipped, s.time(now))
		return err
	})
	if err != nil {
		return fmt.Errorf("record chunk %s of job %q: %w", c.ID, c.Job, err)
	}
	return nil
}

// ListJobChunks implements store.JobStore.
func (s *Store) ListJobChunks(ctx context.Context, job string) ([]store.JobChunk, error) {
	out, err := list(ctx, s.read(), scanChunk, `SELECT `+chunkColumns+` FROM job_chunks WHERE job = ? ORDER BY chunk_index, id`, job)
	if err != nil {
		return nil, fmt.Errorf("list chunks of job %q: %w", job, err)
	}
	return out, nil
}

// getJob reads one job; lock is appended to the query.
func getJob(ctx context.Context, c conn, name, lock string) (serving.Job, error) {
	j, err := scanJob(c.row(ctx, `SELECT `+jobColumns+` FROM jobs WHERE name = ?`+lock, name))
	if errors.Is(err, sql.ErrNoRows) {
		return serving.Job{}, fmt.Errorf("job %q %w", name, store.ErrNotFound)
	}
	return j, err
}

func scanJob(sc scanner) (serving.Job, error) {
	var j serving.Job
	var spec, status []byte
	if err := sc.Scan(&j.Name, &spec, &status, &j.Generation, timeCol(&j.CreatedAt), timeCol(&j.UpdatedAt)); err != nil {
		return serving.Job{}, err
	}
	return j, decodeJob(&j, spec, status)
}

// decodeJob sets j's Spec and Status from their JSON, as a read returns
// them.
func decodeJob(j *serving.Job, spec, status []byte) error {
	j.Spec, j.Status = serving.JobSpec{}, serving.JobStatus{}
	if err := json.Unmarshal(spec, &j.Spec); err != nil {
		return fmt.Errorf("decode spec of job %q: %w", j.Name, err)
	}
	if err := json.Unmarshal(status, &j.Status); err != nil {
		return fmt.Errorf("decode status of job %q: %w", j.Name, err)
	}
	return nil
}

func scanChunk(sc scanner) (store.JobChunk, error) {
	var c store.JobChunk
	err := sc.Scan(&c.Job, &c.ID, &c.Index, &c.Rows, &c.Skipped, timeCol(&c.DoneAt))
	return c, err
}
