package natsq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ebb-ml/ebb/internal/queue"
)

// consumer returns the durable pull consumer name on stream, filtered to
// filter. JetStream keeps one AckWait per consumer, so the lease is set by
// this process's first claim (creating or updating the consumer) and the
// lease of later claims is not looked at: every worker should claim with
// the same lease.
func (q *Queue) consumer(ctx context.Context, stream jetstream.Stream, name, filter string, lease time.Duration) (jetstream.Consumer, error) {
	q.mu.Lock()
	c, ok := q.consumers[name]
	q.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: name, FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy, AckWait: lease,
		MaxDeliver: -1, MaxAckPending: -1, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.consumers[name] = c
	q.mu.Unlock()
	return c, nil
}

// Claim implements queue.Queue: interactive requests first, then batch,
// each in the order they were enqueued.
func (q *Queue) Claim(ctx context.Context, deployment string, n int, lease time.Duration) ([]*queue.Request, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	var out []*queue.Request
	for _, lvl := range []string{"1", "0"} {
		if len(out) >= n {
			break
		}
		tok := token(deployment)
		c, err := q.consumer(ctx, q.stream, "q-"+tok+"-"+lvl, q.subject+".q."+tok+"."+lvl, lease)
		if err != nil {
			return out, q.fail(ctx, "claim "+deployment, err)
		}
		batch, err := c.FetchNoWait(n - len(out))
		if err != nil {
			return out, q.fail(ctx, "claim "+deployment, err)
		}
		var claimErr error
		for msg := range batch.Messages() {
			if claimErr != nil {
				_ = q.ack(ctx, msg.Reply(), nak(0)) // for another claim, now
				continue
			}
			r, err := q.claimed(ctx, msg)
			if err != nil {
				claimErr = err
				_ = q.ack(ctx, msg.Reply(), nak(0))
				continue
			}
			if r != nil {
				out = append(out, r)
			}
		}
		if err := batch.Error(); err != nil && claimErr == nil {
			claimErr = err
		}
		if claimErr != nil {
			return out, q.fail(ctx, "claim "+deployment, claimErr)
		}
	}
	return out, nil
}

// claimed turns a delivered message into a claimed request, or, when its
// record is gone or finished, acknowledges it and returns nil.
func (q *Queue) claimed(ctx context.Context, msg jetstream.Msg) (*queue.Request, error) {
	k := msg.Headers().Get(headerKey)
	rec, rev, err := q.get(ctx, k)
	if errors.Is(err, queue.ErrNotFound) {
		return nil, q.ack(ctx, msg.Reply(), "+ACK") // expired, or its enqueue failed
	}
	if err != nil {
		return nil, err
	}
	if rec.State != queue.Pending {
		if rec.State == queue.Done && rec.CB == queue.CallbackPending {
			// Its completion may have crashed before publishing the callback.
			if err := q.publishCallback(ctx, k, rec.ID); err != nil {
				return nil, err
			}
		}
		return nil, q.ack(ctx, msg.Reply(), "+ACK")
	}
	var m meta
	if err := json.Unmarshal([]byte(msg.Headers().Get(headerRequest)), &m); err != nil {
		_ = q.ack(ctx, msg.Reply(), "+TERM")
		return nil, fmt.Errorf("decode request %s: %w", k, err)
	}
	md, err := msg.Metadata()
	if err != nil {
		return nil, err
	}
	attempt := int(md.NumDelivered)
	r := &queue.Request{ID: m.ID, Tenant: m.Tenant, Deployment: m.Deployment, Version: m.Version,
		Priority: m.Priority, ContentType: m.ContentType, HeaderLength: m.HeaderLength, Header: m.Header,
		BodyRef: m.BodyRef, Callback: m.Callback, CreatedAt: m.Created, Deadline: m.Deadline, ResultTTL: m.TTL,
		Attempt: attempt, LeaseToken: leaseToken(k, attempt, msg.Reply())}
	if m.BodyRef == "" {
		r.Body = append([]byte(nil), msg.Data()...)
	}
	q.remember(r.LeaseToken, rec, rev)
	return r, nil
}

// Release implements queue.Queue: the message is delivered again after
// the delay until at.
func (q *Queue) Release(ctx context.Context, id, tok string, at time.Time) error {
	ctx, cancel := q.op(ctx)
	defer cancel()
	_, _, reply := parseToken(tok)
	q.take(tok)
	if err := q.ack(ctx, reply, nak(at.Sub(q.now()))); err != nil {
		return q.fail(ctx, "release "+id, err)
	}
	return nil
}

// find returns the key of request id, of whichever tenant.
func (q *Queue) find(ctx context.Context, id string) (string, error) {
	l, err := q.kv.ListKeysFiltered(ctx, "*."+id)
	if err != nil {
		return "", err
	}
	defer l.Stop()
	for k := range l.Keys() {
		return k, nil
	}
	return "", queue.ErrNotFound
}

// Complete implements queue.Queue.
func (q *Queue) Complete(ctx context.Context, id, tok string, res queue.Result) (bool, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	k, attempt, reply := parseToken(tok)
	if k == "" {
		var err error
		if k, err = q.find(ctx, id); err != nil {
			return false, q.completeErr(ctx, id, err)
		}
	}
	if res.CompletedAt.IsZero() {
		res.CompletedAt = q.now()
	}
	var callback bool
	stored, err := q.update(ctx, k, q.take(tok), func(r *record) (bool, error) {
		if r.State != queue.Pending {
			return false, nil
		}
		r.State, r.Result, r.Expires = queue.Done, &res, res.CompletedAt.Add(r.TTL)
		if attempt > 0 {
			r.Attempts = attempt
		}
		if r.Callback != "" {
			r.CB, callback = queue.CallbackPending, true
		}
		return true, nil
	})
	if err != nil {
		return false, q.completeErr(ctx, id, err)
	}
	if stored && callback {
		if err := q.publishCallback(ctx, k, id); err != nil {
			// The request's message stays unacknowledged: its next claim
			// publishes the callback.
			return true, nil
		}
	}
	// Not flushed: the connection sends it at once anyway, and if it is
	// lost, the next claim of the message acknowledges it (the record is
	// done).
	if reply != "" {
		_ = q.nc.Publish(reply, []byte("+ACK"))
	}
	return stored, nil
}

func (q *Queue) completeErr(ctx context.Context, id string, err error) error {
	if errors.Is(err, queue.ErrNotFound) {
		return fmt.Errorf("natsq: complete %s: %w", id, queue.ErrNotFound)
	}
	return q.fail(ctx, "complete "+id, err)
}

func (q *Queue) publishCallback(ctx context.Context, k, id string) error {
	msg := &nats.Msg{Subject: q.subject + ".cb", Header: nats.Header{}}
	msg.Header.Set(headerKey, k)
	_, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID("cb-"+id))
	return err
}

// Cancel implements queue.Queue. The request's message stays in the stream
// (and in Depth) until a claim skips it.
func (q *Queue) Cancel(ctx context.Context, tenant, id string) error {
	ctx, cancel := q.op(ctx)
	defer cancel()
	now := q.now()
	_, err := q.update(ctx, key(tenant, id), nil, func(r *record) (bool, error) {
		switch {
		case !r.Expires.After(now):
			return false, queue.ErrNotFound
		case r.State != queue.Pending:
			return false, queue.ErrFinished
		}
		r.State, r.Expires, r.CB = queue.Cancelled, now.Add(r.TTL), queue.CallbackNone
		return true, nil
	})
	switch {
	case errors.Is(err, queue.ErrNotFound), errors.Is(err, queue.ErrFinished):
		return fmt.Errorf("natsq: cancel %s: %w", id, err)
	case err != nil:
		return q.fail(ctx, "cancel "+id, err)
	}
	return nil
}
