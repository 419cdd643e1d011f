package natsq

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ebb-ml/ebb/internal/queue"
)

// Get implements queue.Queue.
func (q *Queue) Get(ctx context.Context, tenant, id string) (queue.Record, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	r, _, err := q.get(ctx, key(tenant, id))
	if err == nil && !r.Expires.After(q.now()) {
		err = queue.ErrNotFound
	}
	if errors.Is(err, queue.ErrNotFound) {
		return queue.Record{}, fmt.Errorf("async request %q %w", id, queue.ErrNotFound)
	}
	if err != nil {
		return queue.Record{}, q.fail(ctx, "get "+id, err)
	}
	return r.toRecord(), nil
}

// scan calls fn with every record whose key matches filter, as the bucket
// holds them now.
func (q *Queue) scan(ctx context.Context, filter string, fn func(r *record, e jetstream.KeyValueEntry) error) error {
	w, err := q.kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch of the records ended")
			}
			if e == nil {
				return nil // the records there were when the watch began
			}
			var r record
			if err := json.Unmarshal(e.Value(), &r); err != nil {
				return fmt.Errorf("decode record %s: %w", e.Key(), err)
			}
			if err := fn(&r, e); err != nil {
				return err
			}
		}
	}
}

// List implements queue.Queue: it reads every record of the tenant, so it
// costs in proportion to the tenant's records; results carry no body.
func (q *Queue) List(ctx context.Context, tenant string, opts queue.ListOptions) ([]queue.Record, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	if opts.Limit <= 0 {
		opts.Limit = 100
	}
	now := q.now()
	out := []queue.Record{}
	err := q.scan(ctx, strings.TrimSuffix(key(tenant, ""), ".")+".*", func(r *record, _ jetstream.KeyValueEntry) error {
		if r.Expires.After(now) && (opts.Deployment == "" || r.Deployment == opts.Deployment) &&
			(opts.State == "" || r.State == opts.State) {
			rec := r.toRecord()
			if rec.Result != nil {
				rec.Result.Body = nil
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, q.fail(ctx, "list", err)
	}
	slices.SortFunc(out, func(a, b queue.Record) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(b.ID, a.ID))
	})
	if len(out) > opts.Limit {
		out = out[:opts.Limit]
	}
	return out, nil
}

// Depth implements queue.Queue: the messages of the deployment's subjects,
// acknowledged (done) ones excepted.
func (q *Queue) Depth(ctx context.Context, deployment string) (int, error) {
	ds, err := q.depths(ctx, q.subject+".q."+token(deployment)+".*")
	if err != nil {
		return 0, q.fail(ctx, "depth of "+deployment, err)
	}
	return ds[deployment], nil
}

// Depths implements queue.Queue.
func (q *Queue) Depths(ctx context.Context) (map[string]int, error) {
	ds, err := q.depths(ctx, q.subject+".q.>")
	if err != nil {
		return nil, q.fail(ctx, "depths", err)
	}
	return ds, nil
}

func (q *Queue) depths(ctx context.Context, filter string) (map[string]int, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	info, err := q.stream.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	prefix := q.subject + ".q."
	for subj, n := range info.State.Subjects {
		rest, ok := strings.CutPrefix(subj, prefix)
		i := strings.LastIndexByte(rest, '.')
		if !ok || i < 0 || n == 0 {
			continue
		}
		out[untoken(rest[:i])] += int(n)
	}
	return out, nil
}

// DeleteExpired implements queue.Queue. It reads every record, so run it
// now and then (the worker runs it every minute); the bucket's TTL deletes
// what it misses.
func (q *Queue) DeleteExpired(ctx context.Context, now time.Time) (queue.Swept, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	var sw queue.Swept
	err := q.scan(ctx, ">", func(r *record, e jetstream.KeyValueEntry) error {
		if r.Expires.After(now) {
			return nil
		}
		err := q.kv.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil // changed since read: look again next time
		}
		if err != nil {
			return err
		}
		sw.Records++
		if r.BodyRef != "" {
			sw.Blobs = append(sw.Blobs, r.BodyRef)
		}
		if r.Result != nil && r.Result.BodyRef != "" {
			sw.Blobs = append(sw.Blobs, r.Result.BodyRef)
		}
		return nil
	})
	if err != nil {
		return sw, q.fail(ctx, "delete expired", err)
	}
	return sw, nil
}

// ClaimCallbacks implements queue.Queue.
func (q *Queue) ClaimCallbacks(ctx context.Context, n int, lease time.Duration) ([]queue.Callback, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	c, err := q.consumer(ctx, q.cbs, "cb", q.subject+".cb", lease)
	if err != nil {
		return nil, q.fail(ctx, "claim callbacks", err)
	}
	batch, err := c.FetchNoWait(n)
	if err != nil {
		return nil, q.fail(ctx, "claim callbacks", err)
	}
	var out []queue.Callback
	var claimErr error
	for msg := range batch.Messages() {
		if claimErr != nil {
			_ = q.ack(ctx, msg.Reply(), nak(0))
			continue
		}
		k := msg.Headers().Get(headerKey)
		r, _, err := q.get(ctx, k)
		switch {
		case errors.Is(err, queue.ErrNotFound):
			_ = q.ack(ctx, msg.Reply(), "+ACK")
			continue
		case err != nil:
			claimErr = err
			_ = q.ack(ctx, msg.Reply(), nak(0))
			continue
		case r.CB != queue.CallbackPending || r.Result == nil:
			_ = q.ack(ctx, msg.Reply(), "+ACK")
			continue
		}
		md, err := msg.Metadata()
		if err != nil {
			claimErr = err
			continue
		}
		attempt := int(md.NumDelivered)
		out = append(out, queue.Callback{ID: r.ID, Tenant: r.Tenant, Deployment: r.Deployment, URL: r.Callback,
			Attempt: attempt, LeaseToken: leaseToken(k, attempt, msg.Reply()), Result: *r.Result})
	}
	if err := batch.Error(); err != nil && claimErr == nil {
		claimErr = err
	}
	if claimErr != nil {
		return out, q.fail(ctx, "claim callbacks", claimErr)
	}
	return out, nil
}

// SettleCallback implements queue.Queue.
func (q *Queue) SettleCallback(ctx context.Context, id, tok string, o queue.CallbackOutcome) error {
	ctx, cancel := q.op(ctx)
	defer cancel()
	k, attempt, reply := parseToken(tok)
	if k == "" {
		return fmt.Errorf("natsq: settle callback of %s: malformed lease token", id)
	}
	_, err := q.update(ctx, k, nil, func(r *record) (bool, error) {
		if r.CB != queue.CallbackPending {
			return false, nil
		}
		switch {
		case o.Delivered:
			r.CB = queue.CallbackDelivered
		case o.Retry.IsZero():
			r.CB = queue.CallbackFailed
		}
		r.CBAttempts, r.CBError = attempt, o.Error
		return true, nil
	})
	if errors.Is(err, queue.ErrNotFound) {
		return q.ack(ctx, reply, "+ACK")
	}
	if err != nil {
		return q.fail(ctx, "settle callback of "+id, err)
	}
	ack := "+ACK"
	if !o.Delivered && !o.Retry.IsZero() {
		ack = nak(o.Retry.Sub(q.now()))
	}
	if err := q.ack(ctx, reply, ack); err != nil {
		return q.fail(ctx, "settle callback of "+id, err)
	}
	return nil
}
