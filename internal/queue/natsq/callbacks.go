package natsq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ebb-ml/ebb/internal/queue"
)

// ClaimCallbacks implements queue.Queue.
func (q *Queue) ClaimCallbacks(ctx context.Context, n int, lease time.Duration) ([]queue.Callback, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	var out []queue.Callback
	c, err := q.leasedConsumer(ctx, q.cbs, jetstream.ConsumerConfig{
		Durable: "cb", FilterSubject: q.subject + ".cb", AckPolicy: jetstream.AckExplicitPolicy, AckWait: lease,
		MaxDeliver: -1, MaxAckPending: -1, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err == nil {
		err = q.fetch(ctx, c, n, func(msg jetstream.Msg) error {
			cb, err := q.callbackOf(ctx, msg)
			if cb != nil {
				out = append(out, *cb)
			}
			return err
		})
	}
	if err != nil {
		return out, q.fail(ctx, "claim callbacks", err)
	}
	return out, nil
}

// callbackOf turns a delivered callback message into a claimed callback,
// or, when its result is gone or needs no callback (any more),
// acknowledges it and returns nil.
func (q *Queue) callbackOf(ctx context.Context, msg jetstream.Msg) (*queue.Callback, error) {
	k := msg.Headers().Get(headerKey)
	r, _, err := q.get(ctx, k)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		return nil, q.ack(ctx, msg.Reply(), "+ACK")
	case err != nil:
		return nil, err
	case r.CB != queue.CallbackPending || r.Result == nil:
		return nil, q.ack(ctx, msg.Reply(), "+ACK")
	}
	md, err := msg.Metadata()
	if err != nil {
		return nil, err
	}
	attempt := int(md.NumDelivered)
	return &queue.Callback{ID: r.ID, Tenant: r.Tenant, Deployment: r.Deployment, URL: r.Callback,
		Attempt: attempt, LeaseToken: leaseToken(k, attempt, msg.Reply()), Result: *r.Result}, nil
}

// SettleCallback implements queue.Queue.
func (q *Queue) SettleCallback(ctx context.Context, id, tok string, o queue.CallbackOutcome) error {
	ctx, cancel := q.op(ctx)
	defer cancel()
	k, attempt, reply := parseToken(tok)
	if k == "" {
		return fmt.Errorf("natsq: settle callback of %s: malformed lease token", id)
	}
	_, err := q.update(ctx, k, func(r *record) (bool, error) {
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
