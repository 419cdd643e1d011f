package natsq

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ebb-ml/ebb/internal/queue"
)

// get reads the outcome under k with its revision; queue.ErrNotFound when
// there is none.
func (q *Queue) get(ctx context.Context, k string) (*record, uint64, error) {
	e, err := q.kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, queue.ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, 0, fmt.Errorf("decode record %s: %w", k, err)
	}
	return &r, e.Revision(), nil
}

// update applies fn to the outcome under k and writes it back if fn
// reports a change, again from a fresh read when another writer won.
func (q *Queue) update(ctx context.Context, k string, fn func(r *record) (bool, error)) (bool, error) {
	for {
		r, rev, err := q.get(ctx, k)
		if err != nil {
			return false, err
		}
		changed, err := fn(r)
		if err != nil || !changed {
			return false, err
		}
		b, err := json.Marshal(r)
		if err != nil {
			return false, err
		}
		_, err = q.kv.Update(ctx, k, b, rev)
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // changed since read
		}
		return err == nil, err
	}
}

// Direct gets of the request stream, made here since the client's own
// puts a last-by-subject request's subject in the request's subject,
// where a wildcard cannot go.
const (
	statusHeader = "Status"
	descHeader   = "Description"
	seqHeader    = "Nats-Sequence"
)

// lookup returns the metadata and sequence of the last request message on
// subject (which may have wildcards); queue.ErrNotFound when there is none.
func (q *Queue) lookup(ctx context.Context, subject string) (*meta, uint64, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": subject})
	if err != nil {
		return nil, 0, err
	}
	msg, err := q.nc.RequestWithContext(ctx, q.directSubject(), req)
	if err != nil {
		return nil, 0, err
	}
	if err := directStatus(msg); err != nil {
		return nil, 0, err
	}
	return requestOf(msg)
}

func (q *Queue) directSubject() string { return "$JS.API.DIRECT.GET." + q.opts.Name }

// directStatus is the error of a direct get's status answer: nil for a
// message, queue.ErrNotFound for none, errEOB at a batch's end.
func directStatus(msg *nats.Msg) error {
	switch st := msg.Header.Get(statusHeader); st {
	case "":
		return nil
	case "404":
		return queue.ErrNotFound
	case "204":
		return errEOB
	default:
		return fmt.Errorf("direct get from the request stream: %s %s", st, msg.Header.Get(descHeader))
	}
}

var errEOB = errors.New("end of batch")

func requestOf(msg *nats.Msg) (*meta, uint64, error) {
	seq, err := strconv.ParseUint(msg.Header.Get(seqHeader), 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("direct get from the request stream: no sequence: %w", err)
	}
	m, err := parseMeta(msg.Header)
	if err != nil {
		return nil, 0, fmt.Errorf("request %d: %w", seq, err)
	}
	return m, seq, nil
}

// scanBatch is how many request messages one direct get of a scan asks
// for, and scanBytes the most bytes.
const (
	scanBatch = 256
	scanBytes = 8 << 20
)

// scanRequests calls fn with every request message on filter, in stream
// order. It reads them whole (payloads too), scanBatch at a time.
func (q *Queue) scanRequests(ctx context.Context, filter string, fn func(m *meta, seq uint64) error) error {
	inbox := q.nc.NewInbox()
	sub, err := q.nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	for from := uint64(1); ; {
		req, err := json.Marshal(map[string]any{"seq": from, "next_by_subj": filter, "batch": scanBatch, "max_bytes": scanBytes})
		if err != nil {
			return err
		}
		if err := q.nc.PublishRequest(q.directSubject(), inbox, req); err != nil {
			return err
		}
		got := 0
		for {
			msg, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return err
			}
			err = directStatus(msg)
			if errors.Is(err, queue.ErrNotFound) {
				return nil
			}
			if errors.Is(err, errEOB) {
				if got == 0 || msg.Header.Get("Nats-Num-Pending") == "0" {
					return nil
				}
				break
			}
			if err != nil {
				return err
			}
			m, seq, err := requestOf(msg)
			if err != nil {
				return err
			}
			got++
			from = seq + 1
			if err := fn(m, seq); err != nil {
				return err
			}
		}
	}
}

// Get implements queue.Queue. The request's outcome is read first, then
// its message: Complete stores the outcome before it acknowledges the
// message, and does not wait for the server to remove it, so an outcome
// found is the answer even while the message lingers. A request completed
// between the two reads has neither when its message is read: its outcome
// exists by then, so a missing message is followed by a second read of the
// outcome. A pending request costs two reads, a finished one one; the
// gateway answers most polls from what its process remembers
// (queue.Waiters) without either.
func (q *Queue) Get(ctx context.Context, tenant, id string) (queue.Record, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	now := q.now()
	notFound := fmt.Errorf("async request %q %w", id, queue.ErrNotFound)
	k := key(tenant, id)
	if k == "" {
		return queue.Record{}, notFound
	}
	outcome := func() (queue.Record, bool, error) {
		r, _, err := q.get(ctx, k)
		switch {
		case err == nil:
			if !r.Expires.After(now) {
				return queue.Record{}, true, notFound
			}
			return r.toRecord(), true, nil
		case !errors.Is(err, queue.ErrNotFound):
			return queue.Record{}, true, q.fail(ctx, "get "+id, err)
		}
		return queue.Record{}, false, nil
	}
	if rec, found, err := outcome(); found {
		return rec, err
	}
	if betweenReads != nil {
		betweenReads()
	}
	m, _, err := q.lookup(ctx, q.anyRequestSubject(k))
	switch {
	case errors.Is(err, queue.ErrNotFound):
		if rec, found, err := outcome(); found {
			return rec, err // completed between the two reads
		}
		return queue.Record{}, notFound
	case err != nil:
		return queue.Record{}, q.fail(ctx, "get "+id, err)
	case !m.expires().After(now):
		return queue.Record{}, notFound
	}
	return m.pendingRecord(), nil
}

// betweenReads, when set (by a test), runs between Get's read of an
// outcome and its read of the message.
var betweenReads func()

// scan calls fn with every outcome whose key matches filter, as the bucket
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

// List implements queue.Queue: it reads every outcome and every pending
// request of the tenant, so it costs in proportion to them; results carry
// no body.
func (q *Queue) List(ctx context.Context, tenant string, opts queue.ListOptions) ([]queue.Record, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	if opts.Limit <= 0 {
		opts.Limit = 100
	}
	now := q.now()
	keep := func(r queue.Record) bool {
		return r.ExpiresAt.After(now) && (opts.Deployment == "" || r.Deployment == opts.Deployment) &&
			(opts.State == "" || r.State == opts.State)
	}
	tk := strings.TrimSuffix(key(tenant, "x"), ".x")
	finished := map[string]bool{}
	out := []queue.Record{}
	err := q.scan(ctx, tk+".*", func(r *record, _ jetstream.KeyValueEntry) error {
		finished[r.ID] = true
		if rec := r.toRecord(); keep(rec) {
			if rec.Result != nil {
				rec.Result.Body = nil
			}
			out = append(out, rec)
		}
		return nil
	})
	if err == nil {
		err = q.scanRequests(ctx, q.subject+".q.*.*."+tk+".*", func(m *meta, _ uint64) error {
			if rec := m.pendingRecord(); !finished[m.ID] && keep(rec) {
				out = append(out, rec)
			}
			return nil
		})
	}
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

// Depth implements queue.Queue: the deployment's messages in the stream,
// not yet delivered or not yet acknowledged.
func (q *Queue) Depth(ctx context.Context, deployment string) (int, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	n, err := q.depth(ctx, deployment)
	if err != nil {
		return 0, q.fail(ctx, "depth of "+deployment, err)
	}
	return n, nil
}

// depth counts the deployment's messages as the stream holds them now:
// a direct get of the first, whose Nats-Num-Pending counts those after
// it. (A consumer's counts follow a publish a moment later: the bound on
// enqueues and a poll right after an enqueue need the count stored.)
func (q *Queue) depth(ctx context.Context, deployment string) (int, error) {
	req, err := json.Marshal(map[string]any{"seq": 1, "next_by_subj": q.subject + ".q." + token(deployment) + ".*.>", "batch": 1})
	if err != nil {
		return 0, err
	}
	msg, err := q.nc.RequestWithContext(ctx, q.directSubject(), req)
	if err != nil {
		return 0, err
	}
	switch err := directStatus(msg); {
	case errors.Is(err, queue.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	}
	after, err := strconv.Atoi(msg.Header.Get("Nats-Num-Pending"))
	if err != nil {
		return 0, fmt.Errorf("direct get from the request stream: no Nats-Num-Pending: %w", err)
	}
	return after + 1, nil
}

// Depths implements queue.Queue. The deployments are those with
// consumers (Enqueue makes them before it publishes), read in one call;
// each one's depth is then counted in the stream as Depth counts it, one
// direct get per deployment, since the consumers' own counts lag a
// publish.
func (q *Queue) Depths(ctx context.Context) (map[string]int, error) {
	ctx, cancel := q.op(ctx)
	defer cancel()
	deps := map[string]bool{}
	l := q.stream.ListConsumers(ctx)
	for info := range l.Info() {
		if dep, ok := consumerDeployment(info.Name); ok {
			deps[dep] = true
		}
	}
	if err := l.Err(); err != nil {
		return nil, q.fail(ctx, "depths", err)
	}
	out := map[string]int{}
	for dep := range deps {
		n, err := q.depth(ctx, dep)
		if err != nil {
			return nil, q.fail(ctx, "depth of "+dep, err)
		}
		if n > 0 {
			out[dep] = n
		}
	}
	return out, nil
}

// DeleteExpired implements queue.Queue. It reads every outcome and every
// pending request, so run it now and then (the worker runs it every
// minute); the bucket's TTL and the stream's MaxAge delete what it misses.
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
	if err == nil {
		err = q.scanRequests(ctx, q.subject+".q.>", func(m *meta, seq uint64) error {
			if m.expires().After(now) {
				return nil
			}
			err := q.stream.DeleteMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil // finished meanwhile
			}
			if err != nil {
				return err
			}
			sw.Records++
			if m.BodyRef != "" {
				sw.Blobs = append(sw.Blobs, m.BodyRef)
			}
			return nil
		})
	}
	if err != nil {
		return sw, q.fail(ctx, "delete expired", err)
	}
	return sw, nil
}
