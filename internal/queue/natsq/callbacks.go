package natsq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ebb-ml/ebb/internal/queue"
)

// callbackConsumer returns the callback stream's consumer with this
// process's lease, as consumer does for requests.
func (q *Queue) callbackConsumer(ctx context.Context, lease time.Duration) (jetstream.Consumer, error) {
	const name = "cb"
	q.mu.Lock()
	c, ok := q.leased[name]
	q.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := q.cbs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: name, FilterSubject: q.subject + ".cb", AckPolicy: jetstream.AckExplicitPolicy, AckWait: lease,
		MaxDeliver: -1, MaxAckPending: -1, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.leased[name] = c
	q.mu.Unlock()
	return c, nil
}

// ClaimCallbacks implements queue.Queue.
func (q *Queue) ClaimCallbacks(ctx context.Context, n int, lease time.Duration) ([]queue.Callback, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	c, err := q.callbackConsumer(ctx, lease)
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
