package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/queue"
)

// The durable async queue (queue.Queue) in the store's database, one row
// per request in async_requests (migration 8).
//
// Claiming. A claim is one write transaction: it selects the deployment's
// claimable rows (pending, no lease or an expired one), highest priority
// and oldest first, and gives each a new lease token and lease time. On
// SQLite write transactions are serial, so two claims never see the same
// row claimable. On PostgreSQL the SELECT locks what it reads FOR UPDATE
// SKIP LOCKED: concurrent claims take disjoint rows without waiting on each
// other.
//
// Completing. Complete is one UPDATE of a pending row to done: the first
// completion wins, and a second finds the row done and changes nothing, so
// every request has at most one result whatever number of runs.

var _ queue.Queue = (*Queue)(nil)

// DefaultMaxDepth bounds the pending requests of one deployment when
// QueueOptions.MaxDepth is zero.
const DefaultMaxDepth = 100_000

// QueueOptions tune a Queue.
type QueueOptions struct {
	// MaxDepth bounds the pending requests of one deployment (Enqueue
	// returns queue.ErrFull beyond it); default DefaultMaxDepth. On
	// PostgreSQL concurrent enqueues may pass it by a few.
	MaxDepth int
}

// Queue is the async request queue kept in a Store's database. Its clock
// is the Store's Now.
type Queue struct {
	s    *Store
	opts QueueOptions
	// counts keeps Enqueue from counting a deployment's pending requests
	// (a scan of its pending rows) on every enqueue.
	counts queue.PendingCounts
}

// Queue returns the async queue in s's database.
func (s *Store) Queue(opts QueueOptions) *Queue {
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = DefaultMaxDepth
	}
	return &Queue{s: s, opts: opts}
}

// us returns t in Unix microseconds; the zero time is 0.
func us(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromUS is us's inverse.
func fromUS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Enqueue implements queue.Queue.
func (q *Queue) Enqueue(ctx context.Context, r queue.Request) error {
	header, err := json.Marshal(r.Header)
	if err != nil {
		return fmt.Errorf("enqueue async request %s: encode header: %w", r.ID, err)
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = q.s.now()
	}
	cb := queue.CallbackNone
	if r.Callback != "" {
		cb = queue.CallbackWaiting
	}
	now := q.s.now()
	counted := -1
	err = q.s.write(ctx, func(tx conn) error {
		counted = -1
		if q.counts.MustCount(r.Deployment, now, q.opts.MaxDepth) {
			var n int
			if err := tx.row(ctx, `SELECT count(*) FROM async_requests WHERE deployment = ? AND state = 'pending'`,
				r.Deployment).Scan(&n); err != nil {
				return err
			}
			if n >= q.opts.MaxDepth {
				return fmt.Errorf("deployment %q has %d async requests pending, its limit: %w", r.Deployment, n, queue.ErrFull)
			}
			counted = n
		}
		_, err := tx.exec(ctx, `INSERT INTO async_requests (id, tenant, deployment, version, priority,
			content_type, header_length, header, body, body_ref, callback, created_us, deadline_us,
			result_ttl_us, state, attempts, lease_token, lease_until_us, expires_us, result_status,
			result_content_type, result_header_length, result_body, result_body_ref, completed_us,
			cb_state, cb_attempts, cb_token, cb_next_us, cb_error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, '', 0, ?, 0, '', 0, ?, '', 0, ?, 0, '', 0, '')`,
			r.ID, r.Tenant, r.Deployment, r.Version, r.Priority, r.ContentType, r.HeaderLength, string(header),
			nonNil(r.Body), r.BodyRef, r.Callback, us(r.CreatedAt), us(r.Deadline), r.ResultTTL.Microseconds(),
			us(r.ExpiresAt()), []byte{}, string(cb))
		if q.s.d.IsUniqueViolation(err) {
			return fmt.Errorf("async request %q already exists", r.ID)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("enqueue async request: %w", err)
	}
	q.counts.Enqueued(r.Deployment, counted, now)
	return nil
}

const requestColumns = `id, tenant, deployment, version, priority, content_type, header_length, header,
	body, body_ref, callback, created_us, deadline_us, result_ttl_us, attempts, lease_token`

func scanRequest(sc scanner) (*queue.Request, error) {
	var r queue.Request
	var header []byte
	var created, deadline, ttl int64
	if err := sc.Scan(&r.ID, &r.Tenant, &r.Deployment, &r.Version, &r.Priority, &r.ContentType, &r.HeaderLength,
		&header, &r.Body, &r.BodyRef, &r.Callback, &created, &deadline, &ttl, &r.Attempt, &r.LeaseToken); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(header, &r.Header); err != nil {
		return nil, fmt.Errorf("decode header of async request %s: %w", r.ID, err)
	}
	if r.BodyRef != "" {
		r.Body = nil
	}
	r.CreatedAt, r.Deadline, r.ResultTTL = fromUS(created), fromUS(deadline), time.Duration(ttl)*time.Microsecond
	return &r, nil
}

// Claim implements queue.Queue.
func (q *Queue) Claim(ctx context.Context, deployment string, n int, lease time.Duration) ([]*queue.Request, error) {
	if n <= 0 {
		return nil, nil
	}
	var out []*queue.Request
	err := q.s.write(ctx, func(tx conn) error {
		out = out[:0]
		now := q.s.now()
		ids, err := list(ctx, tx, scanString, `SELECT id FROM async_requests
			WHERE deployment = ? AND state = 'pending' AND lease_until_us <= ?
			ORDER BY priority DESC, seq LIMIT ?`+q.s.rowLock(ForUpdateSkipLocked),
			deployment, us(now), n)
		if err != nil {
			return err
		}
		for _, id := range ids {
			r, err := scanRequest(tx.row(ctx, `UPDATE async_requests
				SET attempts = attempts + 1, lease_token = ?, lease_until_us = ?
				WHERE id = ? RETURNING `+requestColumns, queue.NewToken(), us(now.Add(lease)), id))
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim async requests of %q: %w", deployment, err)
	}
	return out, nil
}

func scanString(sc scanner) (string, error) {
	var s string
	err := sc.Scan(&s)
	return s, err
}

// Release implements queue.Queue.
func (q *Queue) Release(ctx context.Context, id, token string, at time.Time) error {
	_, err := q.s.exec(ctx, `UPDATE async_requests SET lease_token = '', lease_until_us = ?
		WHERE id = ? AND lease_token = ? AND state = 'pending'`, us(at), id, token)
	if err != nil {
		return fmt.Errorf("release async request %s: %w", id, err)
	}
	return nil
}

// Complete implements queue.Queue.
func (q *Queue) Complete(ctx context.Context, id, token string, r queue.Result) (bool, error) {
	if r.CompletedAt.IsZero() {
		r.CompletedAt = q.s.now()
	}
	at := us(r.CompletedAt)
	// In a write transaction, not a statement of its own: concurrent
	// completions then share a commit (combine.go).
	var res sql.Result
	err := q.s.write(ctx, func(tx conn) error {
		var err error
		res, err = tx.exec(ctx, `UPDATE async_requests SET state = 'done', lease_token = '',
		result_status = ?, result_content_type = ?, result_header_length = ?, result_body = ?,
		result_body_ref = ?, completed_us = ?, expires_us = ? + result_ttl_us,
		cb_state = CASE WHEN callback = '' THEN '' ELSE 'pending' END, cb_next_us = ?
		WHERE id = ? AND state = 'pending'`,
			r.Status, r.ContentType, r.HeaderLength, nonNil(r.Body), r.BodyRef, at, at, at, id)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("complete async request %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, fmt.Errorf("complete async request %s: %w", id, err)
	} else if n == 1 {
		return true, nil
	}
	var one int
	err = q.s.read().row(ctx, `SELECT 1 FROM async_requests WHERE id = ?`, id).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, fmt.Errorf("complete async request %s: %w", id, queue.ErrNotFound)
	case err != nil:
		return false, fmt.Errorf("complete async request %s: %w", id, err)
	}
	return false, nil
}

// Cancel implements queue.Queue.
func (q *Queue) Cancel(ctx context.Context, tenant, id string) error {
	now := us(q.s.now())
	res, err := q.s.exec(ctx, `UPDATE async_requests SET state = 'cancelled', lease_token = '',
		completed_us = ?, expires_us = ? + result_ttl_us, cb_state = ''
		WHERE id = ? AND tenant = ? AND state = 'pending' AND expires_us > ?`, now, now, id, tenant, now)
	if err != nil {
		return fmt.Errorf("cancel async request %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("cancel async request %s: %w", id, err)
	} else if n == 1 {
		return nil
	}
	if _, err := q.Get(ctx, tenant, id); err != nil {
		return fmt.Errorf("cancel async request %s: %w", id, err)
	}
	return fmt.Errorf("cancel async request %s: %w", id, queue.ErrFinished)
}

// recordColumns are what Get reads; List reads them with empty bodies.
const recordColumns = `id, tenant, deployment, version, state, created_us, expires_us, attempts,
	result_status, result_content_type, result_header_length, %s, result_body_ref, completed_us,
	callback, cb_state, cb_attempts, cb_error`

func scanRecord(sc scanner) (queue.Record, error) {
	var r queue.Record
	var res queue.Result
	var created, expires, completed int64
	var state, cb string
	if err := sc.Scan(&r.ID, &r.Tenant, &r.Deployment, &r.Version, &state, &created, &expires, &r.Attempts,
		&res.Status, &res.ContentType, &res.HeaderLength, &res.Body, &res.BodyRef, &completed,
		&r.Callback, &cb, &r.CallbackAttempts, &r.CallbackError); err != nil {
		return queue.Record{}, err
	}
	r.State, r.CallbackState = queue.State(state), queue.CallbackState(cb)
	r.CreatedAt, r.ExpiresAt = fromUS(created), fromUS(expires)
	if r.State == queue.Done {
		if res.BodyRef != "" {
			res.Body = nil
		}
		res.CompletedAt = fromUS(completed)
		r.Result = &res
	}
	return r, nil
}

// Get implements queue.Queue.
func (q *Queue) Get(ctx context.Context, tenant, id string) (queue.Record, error) {
	r, err := scanRecord(q.s.read().row(ctx, `SELECT `+fmt.Sprintf(recordColumns, "result_body")+`
		FROM async_requests WHERE id = ? AND tenant = ? AND expires_us > ?`, id, tenant, us(q.s.now())))
	if errors.Is(err, sql.ErrNoRows) {
		return queue.Record{}, fmt.Errorf("async request %q %w", id, queue.ErrNotFound)
	}
	if err != nil {
		return queue.Record{}, fmt.Errorf("get async request %s: %w", id, err)
	}
	return r, nil
}

// List implements queue.Queue; the results it returns carry no body.
func (q *Queue) List(ctx context.Context, tenant string, opts queue.ListOptions) ([]queue.Record, error) {
	if opts.Limit <= 0 {
		opts.Limit = 100
	}
	query := `SELECT ` + fmt.Sprintf(recordColumns, "''") + ` FROM async_requests WHERE tenant = ? AND expires_us > ?`
	args := []any{tenant, us(q.s.now())}
	if opts.Deployment != "" {
		query += ` AND deployment = ?`
		args = append(args, opts.Deployment)
	}
	if opts.State != "" {
		query += ` AND state = ?`
		args = append(args, string(opts.State))
	}
	out, err := list(ctx, q.s.read(), scanRecord, query+` ORDER BY seq DESC LIMIT ?`, append(args, opts.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("list async requests: %w", err)
	}
	for _, r := range out {
		if r.Result != nil {
			r.Result.Body = nil
		}
	}
	return out, nil
}

// Depth implements queue.Queue.
func (q *Queue) Depth(ctx context.Context, deployment string) (int, error) {
	var n int
	err := q.s.read().row(ctx, `SELECT count(*) FROM async_requests WHERE deployment = ? AND state = 'pending'`,
		deployment).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("async queue depth of %q: %w", deployment, err)
	}
	return n, nil
}

// Depths implements queue.Queue.
func (q *Queue) Depths(ctx context.Context) (map[string]int, error) {
	type depth struct {
		dep string
		n   int
	}
	ds, err := list(ctx, q.s.read(), func(sc scanner) (depth, error) {
		var d depth
		err := sc.Scan(&d.dep, &d.n)
		return d, err
	}, `SELECT deployment, count(*) FROM async_requests WHERE state = 'pending' GROUP BY deployment`)
	if err != nil {
		return nil, fmt.Errorf("async queue depths: %w", err)
	}
	out := make(map[string]int, len(ds))
	for _, d := range ds {
		out[d.dep] = d.n
	}
	return out, nil
}

// DeleteExpired implements queue.Queue.
func (q *Queue) DeleteExpired(ctx context.Context, now time.Time) (queue.Swept, error) {
	var sw queue.Swept
	err := q.s.write(ctx, func(tx conn) error {
		sw = queue.Swept{}
		refs, err := list(ctx, tx, func(sc scanner) ([2]string, error) {
			var r [2]string
			err := sc.Scan(&r[0], &r[1])
			return r, err
		}, `DELETE FROM async_requests WHERE expires_us <= ? RETURNING body_ref, result_body_ref`, us(now))
		if err != nil {
			return err
		}
		sw.Records = len(refs)
		for _, r := range refs {
			for _, ref := range r {
				if ref != "" {
					sw.Blobs = append(sw.Blobs, ref)
				}
			}
		}
		return nil
	})
	if err != nil {
		return queue.Swept{}, fmt.Errorf("delete expired async requests: %w", err)
	}
	return sw, nil
}

// ClaimCallbacks implements queue.Queue.
func (q *Queue) ClaimCallbacks(ctx context.Context, n int, lease time.Duration) ([]queue.Callback, error) {
	if n <= 0 {
		return nil, nil
	}
	var out []queue.Callback
	err := q.s.write(ctx, func(tx conn) error {
		out = out[:0]
		now := q.s.now()
		ids, err := list(ctx, tx, scanString, `SELECT id FROM async_requests
			WHERE cb_state = 'pending' AND cb_next_us <= ? ORDER BY cb_next_us LIMIT ?`+q.s.rowLock(ForUpdateSkipLocked),
			us(now), n)
		if err != nil {
			return err
		}
		for _, id := range ids {
			var cb queue.Callback
			var completed int64
			err := tx.row(ctx, `UPDATE async_requests SET cb_attempts = cb_attempts + 1, cb_token = ?, cb_next_us = ?
				WHERE id = ? RETURNING id, tenant, deployment, callback, cb_attempts, cb_token,
				result_status, result_content_type, result_header_length, result_body, result_body_ref, completed_us`,
				queue.NewToken(), us(now.Add(lease)), id).Scan(&cb.ID, &cb.Tenant, &cb.Deployment, &cb.URL,
				&cb.Attempt, &cb.LeaseToken, &cb.Result.Status, &cb.Result.ContentType, &cb.Result.HeaderLength,
				&cb.Result.Body, &cb.Result.BodyRef, &completed)
			if err != nil {
				return err
			}
			if cb.Result.BodyRef != "" {
				cb.Result.Body = nil
			}
			cb.Result.CompletedAt = fromUS(completed)
			out = append(out, cb)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim async callbacks: %w", err)
	}
	return out, nil
}

// SettleCallback implements queue.Queue.
func (q *Queue) SettleCallback(ctx context.Context, id, token string, o queue.CallbackOutcome) error {
	state, next := queue.CallbackFailed, int64(0)
	switch {
	case o.Delivered:
		state = queue.CallbackDelivered
	case !o.Retry.IsZero():
		state, next = queue.CallbackPending, us(o.Retry)
	}
	_, err := q.s.exec(ctx, `UPDATE async_requests SET cb_state = ?, cb_next_us = ?, cb_error = ?, cb_token = ''
		WHERE id = ? AND cb_token = ? AND cb_state = 'pending'`, string(state), next, o.Error, id, token)
	if err != nil {
		return fmt.Errorf("settle callback of async request %s: %w", id, err)
	}
	return nil
}
