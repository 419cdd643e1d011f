// Package natsq is the async queue (queue.Queue) on NATS JetStream, the
// queue of ebb in a cluster at scale: a NATS the operator points at (a chart
// option), shared by every gateway and worker.
//
// Layout, for Options.Name "EBB_ASYNC" and subject prefix "ebb.async":
//
//   - Stream EBB_ASYNC, work-queue retention, subjects
//     ebb.async.q.<deployment>.<level>: one message per request, its body
//     the payload and its metadata in a header. level is 1 for priority 0
//     and above, 0 below (batch). Each (deployment, level) has a durable
//     pull consumer whose AckWait is the claims' lease (set by a process's
//     first claim; JetStream keeps one per consumer): a message not
//     acknowledged in time is delivered again, which is how a crashed
//     worker loses nothing. MaxDepth is the stream's per-subject message
//     limit, with new messages refused, so it bounds each level of a
//     deployment.
//   - Stream EBB_ASYNC_CB, work-queue, subject ebb.async.cb: one message per
//     result to call back; a failed attempt is negatively acknowledged with
//     the delay until the next.
//   - Key-value bucket EBB_ASYNC_RECORDS: the record of every request (state,
//     result, callback delivery), under the key t<tenant>.<id>, so that a
//     tenant reads only its own keys. Every change is a compare-and-set on
//     the key's revision: the first completion wins. The bucket's TTL
//     (Options.MaxAge) bounds what the server keeps even when no one calls
//     DeleteExpired.
//
// Order of writes. Enqueue writes the record, then publishes the message:
// a message never names a missing record (one whose record was deleted or
// finished is acknowledged and skipped when claimed). Complete writes the
// result, then publishes the callback message, then acknowledges: a crash
// in between leaves the request message to be delivered again, and its
// claim, finding the result stored, publishes the callback message (its
// message id deduplicates) and acknowledges.
package natsq

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ebb-ml/ebb/internal/queue"
)

var _ queue.Queue = (*Queue)(nil)

// Options tune a Queue; zero values take the defaults shown.
type Options struct {
	// Name names the stream (Name), the callback stream (Name_CB) and the
	// bucket (Name_RECORDS); default "EBB_ASYNC". Subjects are its lower
	// case with "_" as "." ("ebb.async").
	Name string
	// Replicas of the streams and the bucket; default 1.
	Replicas int
	// MaxDepth bounds the pending requests of a deployment at one
	// priority level; default 100000.
	MaxDepth int
	// MaxAge is the longest the server keeps a record, a backstop behind
	// DeleteExpired; default 8 days. Keep it above the longest deadline
	// plus result TTL.
	MaxAge time.Duration
	// Timeout bounds each call on the server when the context does not
	// bound it sooner; beyond it the call fails with queue.ErrUnavailable.
	// Default 5s.
	Timeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Queue is the async queue on NATS JetStream.
type Queue struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	cbs     jetstream.Stream
	kv      jetstream.KeyValue
	opts    Options
	subject string // "ebb.async"
	url     string // the server, for errors

	// mu guards consumers, the pull consumers this process made, by name,
	// and claims: the record of each request this process claimed and
	// has not completed or released, by lease token, as the claim read it
	// (with its revision), so that Complete writes it without reading it
	// again; a record changed since makes Complete read it afresh.
	mu        sync.Mutex
	consumers map[string]jetstream.Consumer
	claims    map[string]claimedRecord
}

// claimedRecord is a record as a claim read it.
type claimedRecord struct {
	rec *record
	rev uint64
}

// Open returns a Queue on the JetStream of nc, creating (or updating) its
// streams and bucket. nc stays the caller's to close.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Queue, error) {
	if opts.Name == "" {
		opts.Name = "EBB_ASYNC"
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 1
	}
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = 100_000
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 8 * 24 * time.Hour
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	q := &Queue{nc: nc, js: js, opts: opts, consumers: map[string]jetstream.Consumer{}, claims: map[string]claimedRecord{},
		subject: strings.ReplaceAll(strings.ToLower(opts.Name), "_", "."), url: nc.ConnectedUrlRedacted()}
	ctx, cancel := q.op(ctx)
	defer cancel()
	q.stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: opts.Name, Subjects: []string{q.subject + ".q.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Replicas: opts.Replicas, MaxAge: opts.MaxAge,
		MaxMsgsPerSubject: int64(opts.MaxDepth), Discard: jetstream.DiscardNew, DiscardNewPerSubject: true,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return nil, q.fail(ctx, "create stream "+opts.Name, err)
	}
	q.cbs, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: opts.Name + "_CB", Subjects: []string{q.subject + ".cb"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Replicas: opts.Replicas, MaxAge: opts.MaxAge, Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return nil, q.fail(ctx, "create stream "+opts.Name+"_CB", err)
	}
	q.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: opts.Name + "_RECORDS", History: 1, TTL: opts.MaxAge, Storage: jetstream.FileStorage,
		Replicas: opts.Replicas,
	})
	if err != nil {
		return nil, q.fail(ctx, "create bucket "+opts.Name+"_RECORDS", err)
	}
	return q, nil
}

// op bounds a call on the server by Options.Timeout.
func (q *Queue) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, q.opts.Timeout, errTimeout)
}

var errTimeout = errors.New("NATS did not answer in time")

// fail wraps err from a call made under op's ctx: an error of NATS being
// unreachable, or not answering within the timeout, wraps
// queue.ErrUnavailable; the caller's own cancellation is returned as it is.
func (q *Queue) fail(ctx context.Context, what string, err error) error {
	if errors.Is(context.Cause(ctx), errTimeout) || unavailable(err) {
		return fmt.Errorf("natsq: %s: NATS at %s: %v: %w", what, q.url, err, queue.ErrUnavailable)
	}
	return fmt.Errorf("natsq: %s: %w", what, err)
}

func unavailable(err error) bool {
	for _, e := range []error{nats.ErrConnectionClosed, nats.ErrConnectionReconnecting, nats.ErrConnectionDraining,
		nats.ErrNoResponders, nats.ErrTimeout, nats.ErrDisconnected, nats.ErrNoServers, nats.ErrStaleConnection,
		jetstream.ErrNoStreamResponse, jetstream.ErrJetStreamNotEnabled} {
		if errors.Is(err, e) {
			return true
		}
	}
	if je, ok := errors.AsType[jetstream.JetStreamError](err); ok && je.APIError() != nil {
		return je.APIError().Code == 503 && !fullError(err)
	}
	return false
}

// fullError reports the per-subject limit refusing a message.
func fullError(err error) bool {
	je, ok := errors.AsType[jetstream.JetStreamError](err)
	return ok && je.APIError() != nil && strings.Contains(je.APIError().Description, "maximum messages per subject")
}

func (q *Queue) now() time.Time { return q.opts.Now().UTC().Truncate(time.Microsecond) }

// token turns a name into a subject token: itself when made of letters,
// digits and "-", else "_" and its base32.
func token(name string) string {
	ok := name != ""
	for i := 0; i < len(name) && ok; i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
	}
	if ok {
		return name
	}
	return "_" + strings.ToLower(b32.EncodeToString([]byte(name)))
}

// untoken is token's inverse.
func untoken(tok string) string {
	enc, ok := strings.CutPrefix(tok, "_")
	if !ok {
		return tok
	}
	b, err := b32.DecodeString(strings.ToUpper(enc))
	if err != nil {
		return tok
	}
	return string(b)
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// key is a record's key in the bucket.
func key(tenant, id string) string {
	return "t" + strings.ToLower(b32.EncodeToString([]byte(tenant))) + "." + id
}

func level(priority int) string {
	if priority < 0 {
		return "0"
	}
	return "1"
}

func (q *Queue) requestSubject(deployment string, priority int) string {
	return q.subject + ".q." + token(deployment) + "." + level(priority)
}

// record is a request's record in the bucket.
type record struct {
	ID         string              `json:"id"`
	Tenant     string              `json:"tenant"`
	Deployment string              `json:"deployment"`
	Version    string              `json:"version,omitempty"`
	State      queue.State         `json:"state"`
	Created    time.Time           `json:"created"`
	Expires    time.Time           `json:"expires"`
	TTL        time.Duration       `json:"ttl"`
	Attempts   int                 `json:"attempts,omitempty"`
	BodyRef    string              `json:"bodyRef,omitempty"`
	Result     *queue.Result       `json:"result,omitempty"`
	Callback   string              `json:"callback,omitempty"`
	CB         queue.CallbackState `json:"cb,omitempty"`
	CBAttempts int                 `json:"cbAttempts,omitempty"`
	CBError    string              `json:"cbError,omitempty"`
}

func (r *record) toRecord() queue.Record {
	out := queue.Record{ID: r.ID, Tenant: r.Tenant, Deployment: r.Deployment, Version: r.Version, State: r.State,
		CreatedAt: r.Created, ExpiresAt: r.Expires, Attempts: r.Attempts, Callback: r.Callback,
		CallbackState: r.CB, CallbackAttempts: r.CBAttempts, CallbackError: r.CBError}
	if r.Result != nil {
		res := *r.Result
		out.Result = &res
	}
	return out
}

// get reads the record under k with its revision; queue.ErrNotFound when
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

// update applies fn to the record under k and writes it back if fn
// reports a change, again from a fresh read when another writer won. read,
// when set, is the record as last read, tried first.
func (q *Queue) update(ctx context.Context, k string, read *claimedRecord, fn func(r *record) (bool, error)) (bool, error) {
	for {
		var r *record
		var rev uint64
		var err error
		if read != nil {
			r, rev, read = read.rec, read.rev, nil
		} else if r, rev, err = q.get(ctx, k); err != nil {
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

// meta is a request's metadata, in the Ebb-Request header of its message.
type meta struct {
	ID           string            `json:"id"`
	Tenant       string            `json:"tenant"`
	Deployment   string            `json:"deployment"`
	Version      string            `json:"version,omitempty"`
	Priority     int               `json:"priority,omitempty"`
	ContentType  string            `json:"contentType,omitempty"`
	HeaderLength int64             `json:"headerLength,omitempty"`
	Header       map[string]string `json:"header,omitempty"`
	BodyRef      string            `json:"bodyRef,omitempty"`
	Callback     string            `json:"callback,omitempty"`
	Created      time.Time         `json:"created"`
	Deadline     time.Time         `json:"deadline"`
	TTL          time.Duration     `json:"ttl"`
}

const (
	headerRequest = "Ebb-Request"
	headerKey     = "Ebb-Key"
)

// Enqueue implements queue.Queue.
func (q *Queue) Enqueue(ctx context.Context, r queue.Request) error {
	ctx, cancel := q.op(ctx)
	defer cancel()
	if r.CreatedAt.IsZero() {
		r.CreatedAt = q.now()
	}
	k := key(r.Tenant, r.ID)
	rec := record{ID: r.ID, Tenant: r.Tenant, Deployment: r.Deployment, Version: r.Version, State: queue.Pending,
		Created: r.CreatedAt, Expires: r.ExpiresAt(), TTL: r.ResultTTL, BodyRef: r.BodyRef, Callback: r.Callback}
	if r.Callback != "" {
		rec.CB = queue.CallbackWaiting
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	m, err := json.Marshal(meta{ID: r.ID, Tenant: r.Tenant, Deployment: r.Deployment, Version: r.Version,
		Priority: r.Priority, ContentType: r.ContentType, HeaderLength: r.HeaderLength, Header: r.Header,
		BodyRef: r.BodyRef, Callback: r.Callback, Created: r.CreatedAt, Deadline: r.Deadline, TTL: r.ResultTTL})
	if err != nil {
		return err
	}
	if _, err := q.kv.Create(ctx, k, b); err != nil {
		return q.fail(ctx, "enqueue "+r.ID, err)
	}
	msg := &nats.Msg{Subject: q.requestSubject(r.Deployment, r.Priority), Data: r.Body, Header: nats.Header{}}
	msg.Header.Set(headerRequest, string(m))
	msg.Header.Set(headerKey, k)
	if _, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(r.ID)); err != nil {
		_ = q.kv.Delete(context.WithoutCancel(ctx), k) // best effort: nothing was acknowledged
		if errors.Is(err, nats.ErrMaxPayload) {
			return fmt.Errorf("natsq: enqueue %s: %d bytes, over the NATS server's max_payload of %d: %w",
				r.ID, len(r.Body), q.nc.MaxPayload(), queue.ErrTooLarge)
		}
		if fullError(err) {
			return fmt.Errorf("natsq: enqueue %s: deployment %q has %d async requests pending at its priority, its limit: %w",
				r.ID, r.Deployment, q.opts.MaxDepth, queue.ErrFull)
		}
		return q.fail(ctx, "enqueue "+r.ID, err)
	}
	return nil
}

// A lease token is "<key> <attempt> <ack subject>": what Complete, Release
// and SettleCallback need without another lookup.
func leaseToken(k string, attempt int, reply string) string {
	return k + " " + strconv.Itoa(attempt) + " " + reply
}

func parseToken(tok string) (k string, attempt int, reply string) {
	parts := strings.SplitN(tok, " ", 3)
	if len(parts) != 3 {
		return "", 0, ""
	}
	attempt, _ = strconv.Atoi(parts[1])
	return parts[0], attempt, parts[2]
}

// ack sends an acknowledgement (+ACK, -NAK, ...) for the delivery whose ack
// subject is reply, and waits for the server to have read it.
func (q *Queue) ack(ctx context.Context, reply, body string) error {
	if reply == "" {
		return nil
	}
	if err := q.nc.Publish(reply, []byte(body)); err != nil {
		return err
	}
	return q.nc.FlushWithContext(ctx)
}

// remember keeps the record a claim read for the request leased by tok;
// take returns and forgets it.
func (q *Queue) remember(tok string, rec *record, rev uint64) {
	q.mu.Lock()
	q.claims[tok] = claimedRecord{rec: rec, rev: rev}
	q.mu.Unlock()
}

func (q *Queue) take(tok string) *claimedRecord {
	q.mu.Lock()
	defer q.mu.Unlock()
	c, ok := q.claims[tok]
	if !ok {
		return nil
	}
	delete(q.claims, tok)
	return &c
}

func nak(delay time.Duration) string {
	if delay <= 0 {
		return "-NAK"
	}
	return fmt.Sprintf(`-NAK {"delay": %d}`, delay.Nanoseconds())
}
