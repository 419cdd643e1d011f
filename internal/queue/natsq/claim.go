package natsq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ebb-ml/ebb/internal/queue"
)

// defaultLease is the AckWait a request consumer is created with when an
// Enqueue creates it, until a worker's first claim sets its own lease.
const defaultLease = 5 * time.Minute

// consumerName is the durable consumer of dep's requests at level lvl.
func consumerName(dep, lvl string) string { return "w-" + token(dep) + "-" + lvl }

// consumerDeployment is consumerName's inverse; ok is false for a
// consumer of another name.
func consumerDeployment(name string) (dep string, ok bool) {
	rest, ok := strings.CutPrefix(name, "w-")
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return "", false
	}
	return untoken(rest[:i]), true
}

func (q *Queue) consumerConfig(dep, lvl string, lease time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: consumerName(dep, lvl), FilterSubject: q.subject + ".q." + token(dep) + "." + lvl + ".>",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: lease, MaxDeliver: -1, MaxAckPending: -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// ensureConsumers makes sure dep's consumers exist, so that Depths, which
// finds the deployments by their consumers, sees its requests from the
// first: an Enqueue creates them when no one has, with the default lease.
func (q *Queue) ensureConsumers(ctx context.Context, dep string) error {
	for _, lvl := range levels {
		name := consumerName(dep, lvl)
		q.mu.Lock()
		ok := q.ensured[name]
		q.mu.Unlock()
		if ok {
			continue
		}
		_, err := q.stream.Consumer(ctx, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			_, err = q.stream.CreateConsumer(ctx, q.consumerConfig(dep, lvl, defaultLease))
			if errors.Is(err, jetstream.ErrConsumerExists) {
				err = nil // made by another process meanwhile
			}
		}
		if err != nil {
			return err
		}
		q.mu.Lock()
		q.ensured[name] = true
		q.mu.Unlock()
	}
	return nil
}

// consumer returns dep's consumer at lvl with this process's lease.
func (q *Queue) consumer(ctx context.Context, dep, lvl string, lease time.Duration) (jetstream.Consumer, error) {
	return q.leasedConsumer(ctx, q.stream, q.consumerConfig(dep, lvl, lease))
}

// leasedConsumer returns the durable consumer cfg names on stream, with
// cfg's AckWait, the lease. JetStream keeps one AckWait per consumer, so
// the lease is set by this process's first claim (creating or updating
// the consumer) and the lease of later claims is not looked at: every
// worker should claim with the same lease.
func (q *Queue) leasedConsumer(ctx context.Context, stream jetstream.Stream, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	q.mu.Lock()
	c, ok := q.leased[cfg.Durable]
	q.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := stream.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.leased[cfg.Durable], q.ensured[cfg.Durable] = c, true
	q.mu.Unlock()
	return c, nil
}

// fetch takes up to n messages from c, at once, and hands each to take.
// Once take fails, the messages left are given back (negatively
// acknowledged, for another claim now), that one too. It returns take's
// first error, else the batch's.
func (q *Queue) fetch(ctx context.Context, c jetstream.Consumer, n int, take func(jetstream.Msg) error) error {
	batch, err := c.FetchNoWait(n)
	if err != nil {
		return err
	}
	var first error
	for msg := range batch.Messages() {
		if first == nil {
			if first = take(msg); first == nil {
				continue
			}
		}
		_ = q.ack(ctx, msg.Reply(), nak(0))
	}
	if first != nil {
		return first
	}
	return batch.Error()
}

// Claim implements queue.Queue: interactive requests first, then batch,
// each in the order they were enqueued.
func (q *Queue) Claim(ctx context.Context, deployment string, n int, lease time.Duration) ([]*queue.Request, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	var out []*queue.Request
	for _, lvl := range levels {
		if len(out) >= n {
			break
		}
		c, err := q.consumer(ctx, deployment, lvl, lease)
		if err == nil {
			err = q.fetch(ctx, c, n-len(out), func(msg jetstream.Msg) error {
				r, err := q.claimed(ctx, msg)
				if r != nil {
					out = append(out, r)
				}
				return err
			})
		}
		if err != nil {
			return out, q.fail(ctx, "claim "+deployment, err)
		}
	}
	return out, nil
}

// claimed turns a delivered message into a claimed request, or, when the
// request is finished already, acknowledges it and returns nil. A first
// delivery is taken as it is (see the package's doc); a later one may come
// after a completion that crashed before its acknowledgement, so it reads
// the request's outcome first.
func (q *Queue) claimed(ctx context.Context, msg jetstream.Msg) (*queue.Request, error) {
	m, err := parseMeta(msg.Headers())
	if err != nil {
		_ = q.ack(ctx, msg.Reply(), "+TERM")
		return nil, fmt.Errorf("request on %s: %w", msg.Subject(), err)
	}
	k := key(m.Tenant, m.ID)
	md, err := msg.Metadata()
	if err != nil {
		return nil, err
	}
	attempt := int(md.NumDelivered)
	if attempt > 1 {
		rec, _, err := q.get(ctx, k)
		switch {
		case errors.Is(err, queue.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			if rec.State == queue.Done && rec.CB == queue.CallbackPending {
				// Its completion may have crashed before publishing
				// the callback.
				if err := q.publishCallback(ctx, k, rec.ID); err != nil {
					return nil, err
				}
			}
			return nil, q.ack(ctx, msg.Reply(), "+ACK")
		}
	}
	r := &queue.Request{ID: m.ID, Tenant: m.Tenant, Deployment: m.Deployment, Version: m.Version,
		Priority: m.Priority, ContentType: m.ContentType, HeaderLength: m.HeaderLength, Header: m.Header,
		BodyRef: m.BodyRef, Callback: m.Callback, CreatedAt: m.Created, Deadline: m.Deadline, ResultTTL: m.TTL,
		Attempt: attempt, LeaseToken: leaseToken(k, attempt, msg.Reply())}
	if m.BodyRef == "" {
		r.Body = append([]byte(nil), msg.Data()...)
	}
	q.remember(r.LeaseToken, claimed{key: k, m: m})
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

// Complete implements queue.Queue. The outcome is created: when one
// exists (an earlier completion, a cancellation), nothing is stored.
func (q *Queue) Complete(ctx context.Context, id, tok string, res queue.Result) (bool, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	_, attempt, reply := parseToken(tok)
	c, ok := q.take(tok)
	if !ok {
		// Not claimed here: find the request by its id.
		var err error
		if c, err = q.find(ctx, id); err != nil {
			if errors.Is(err, errFinished) {
				return false, nil
			}
			return false, q.completeErr(ctx, id, err)
		}
	}
	if res.CompletedAt.IsZero() {
		res.CompletedAt = q.now()
	}
	rec := c.m.outcome(queue.Done, res.CompletedAt)
	rec.Result, rec.Attempts = &res, attempt
	if rec.Callback != "" {
		rec.CB = queue.CallbackPending
	}
	stored, err := q.create(ctx, c.key, rec)
	if err != nil {
		return false, q.completeErr(ctx, id, err)
	}
	if stored && rec.Callback != "" {
		if err := q.publishCallback(ctx, c.key, id); err != nil {
			// Delivered again at once: that claim finds the result
			// stored and publishes the callback.
			_ = q.ack(ctx, reply, nak(0))
			return true, nil
		}
	}
	// Acknowledged without waiting for the server (a round trip less per
	// request; the client flushes it at once): Get reads the outcome
	// before the message. If the acknowledgement is lost, the message's
	// next delivery finds the outcome stored and acknowledges it.
	if reply != "" {
		_ = q.nc.Publish(reply, []byte("+ACK"))
	}
	return stored, nil
}

var errFinished = errors.New("finished")

// find returns the pending request id of whichever tenant; errFinished
// when only its outcome is left, queue.ErrNotFound when neither is.
func (q *Queue) find(ctx context.Context, id string) (claimed, error) {
	if plain(id) {
		if m, _, err := q.lookup(ctx, q.subject+".q.*.*.*."+id); err == nil {
			return claimed{key: key(m.Tenant, m.ID), m: m}, nil
		} else if !errors.Is(err, queue.ErrNotFound) {
			return claimed{}, err
		}
		l, err := q.kv.ListKeysFiltered(ctx, "*."+id)
		if err != nil {
			return claimed{}, err
		}
		defer l.Stop()
		for range l.Keys() {
			return claimed{}, errFinished
		}
	}
	return claimed{}, queue.ErrNotFound
}

func (q *Queue) completeErr(ctx context.Context, id string, err error) error {
	if errors.Is(err, queue.ErrNotFound) {
		return fmt.Errorf("natsq: complete %s: %w", id, queue.ErrNotFound)
	}
	return q.fail(ctx, "complete "+id, err)
}

// create stores rec as the first outcome under k; false when there is one.
func (q *Queue) create(ctx context.Context, k string, rec *record) (bool, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return false, err
	}
	_, err = q.kv.Create(ctx, k, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	return err == nil, err
}

func (q *Queue) publishCallback(ctx context.Context, k, id string) error {
	msg := &nats.Msg{Subject: q.subject + ".cb", Header: nats.Header{}}
	msg.Header.Set(headerKey, k)
	_, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID("cb-"+id))
	return err
}

const headerKey = "Ebb-Key"

// Cancel implements queue.Queue: the outcome is created cancelled, then
// the request's message deleted, so that no claim takes it.
func (q *Queue) Cancel(ctx context.Context, tenant, id string) error {
	ctx, cancel := q.op(ctx)
	defer cancel()
	now := q.now()
	k := key(tenant, id)
	if k == "" {
		return fmt.Errorf("natsq: cancel %s: %w", id, queue.ErrNotFound)
	}
	m, seq, err := q.lookup(ctx, q.anyRequestSubject(k))
	switch {
	case errors.Is(err, queue.ErrNotFound):
		rec, _, err := q.get(ctx, k)
		switch {
		case errors.Is(err, queue.ErrNotFound):
			return fmt.Errorf("natsq: cancel %s: %w", id, queue.ErrNotFound)
		case err != nil:
			return q.fail(ctx, "cancel "+id, err)
		case !rec.Expires.After(now):
			return fmt.Errorf("natsq: cancel %s: %w", id, queue.ErrNotFound)
		}
		return fmt.Errorf("natsq: cancel %s: %w", id, queue.ErrFinished)
	case err != nil:
		return q.fail(ctx, "cancel "+id, err)
	case !m.expires().After(now):
		return fmt.Errorf("natsq: cancel %s: %w", id, queue.ErrNotFound)
	}
	stored, err := q.create(ctx, k, m.outcome(queue.Cancelled, now))
	if err != nil {
		return q.fail(ctx, "cancel "+id, err)
	}
	if !stored {
		return fmt.Errorf("natsq: cancel %s: %w", id, queue.ErrFinished)
	}
	// The cancellation holds from here: a claim that takes the message
	// (one that took it meanwhile, or any if this delete fails) runs it,
	// and its result is not stored.
	_ = q.stream.DeleteMsg(ctx, seq)
	return nil
}
