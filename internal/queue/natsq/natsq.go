// Package natsq is the async queue (queue.Queue) on NATS JetStream, the
// queue of ebb in a cluster at scale: a NATS the operator points at (a chart
// option), shared by every gateway and worker.
//
// Layout, for Options.Name "EBB_ASYNC" and subject prefix "ebb.async":
//
//   - Stream EBB_ASYNC, work-queue retention, direct gets allowed: one
//     message per pending request, on the subject
//     ebb.async.q.<deployment>.<level>.t<tenant>.<id>, its body the payload
//     and its metadata in a header. level is 1 for priority 0 and above, 0
//     below (batch). Each (deployment, level) has a durable pull consumer
//     filtered to its subjects, whose AckWait is the claims' lease (set by
//     a process's first claim; JetStream keeps one per consumer): a message
//     not acknowledged in time is delivered again, which is how a crashed
//     worker loses nothing. The deployment's messages in the stream are
//     its depth, counted there by a direct get of its first (a
//     consumer's counts lag a publish). A request's subject
//     holds it alone, so that Get and Cancel find it by tenant and id.
//   - Key-value bucket EBB_ASYNC_RECORDS: the outcome of every finished
//     request (its result, or its cancellation, and the delivery of its
//     callback), under the key t<tenant>.<id>. The first outcome is a
//     create, so the first completion wins and a second stores nothing;
//     later changes (a callback's delivery) are compare-and-sets on the
//     key's revision. The bucket's TTL (Options.MaxAge) bounds what the
//     server keeps even when no one calls DeleteExpired.
//   - Stream EBB_ASYNC_CB, work-queue, subject ebb.async.cb: one message per
//     result to call back; a failed attempt is negatively acknowledged with
//     the delay until the next.
//
// A request costs JetStream two stored writes: its message (the 202 is sent
// once the server acknowledged it) and its outcome; its acknowledgement
// removes the message. A first delivery is run without a read: a request
// cancelled before it was claimed has had its message deleted, and one
// cancelled while it is claimed keeps its cancellation, since the result's
// create then fails. A delivery after the first reads the outcome first.
//
// Order of writes. Complete creates the outcome, then publishes the
// callback message, then acknowledges the message without waiting for the
// server: a crash in between leaves the request's message to be delivered
// again, and that claim, finding the outcome stored, publishes the
// callback message (its message id deduplicates) and acknowledges; a lost
// acknowledgement is the same case. Cancel creates the outcome, then
// deletes the message. Get therefore reads the outcome first, then the
// message: the outcome is the truth once it exists, and a message still
// there beside it is only waiting for its acknowledgement (a completion
// acknowledges without a round trip, one fewer per request). With
// Replicas above 1 a direct get may be answered by a replica a moment
// behind.
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
	// MaxDepth bounds the pending requests of a deployment, both priority
	// levels together; default 100000. Enqueue counts them (its
	// messages in the stream, as Depth does) when its last count
	// is a second old or at half the bound, and counts its own enqueues
	// in between: only other processes' enqueues meanwhile go unseen.
	MaxDepth int
	// MaxAge is the longest the server keeps a request or an outcome, a
	// backstop behind DeleteExpired; default 8 days. Keep it above the
	// longest deadline plus result TTL.
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

	// mu guards:
	//   - ensured: the request consumers this process knows exist, by name;
	//   - leased: those it set its lease on, by name (Claim uses them);
	//   - claims: the metadata of each request this process claimed and
	//     has not completed or released, by lease token, so that Complete
	//     writes its outcome without reading anything.
	mu      sync.Mutex
	ensured map[string]bool
	leased  map[string]jetstream.Consumer
	claims  map[string]claimed
	// counts keeps Enqueue from counting a deployment's messages in the
	// stream on every enqueue.
	counts queue.PendingCounts
}

// claimed is what a claim knows of its request.
type claimed struct {
	key string
	m   *meta
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
	q := &Queue{nc: nc, js: js, opts: opts, ensured: map[string]bool{}, leased: map[string]jetstream.Consumer{},
		claims:  map[string]claimed{},
		subject: strings.ReplaceAll(strings.ToLower(opts.Name), "_", "."), url: nc.ConnectedUrlRedacted()}
	ctx, cancel := q.op(ctx)
	defer cancel()
	if err := q.checkLayout(ctx); err != nil {
		return nil, err
	}
	// One message per subject, new ones refused: a request id is stored
	// once.
	q.stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: opts.Name, Subjects: []string{q.subject + ".q.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Replicas: opts.Replicas, MaxAge: opts.MaxAge, AllowDirect: true,
		MaxMsgsPerSubject: 1, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true,
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

// checkLayout refuses a request stream that holds requests in the layout
// of earlier ebb builds (a subject per deployment and level): updating it
// would delete all but one request per subject.
func (q *Queue) checkLayout(ctx context.Context) error {
	st, err := q.js.Stream(ctx, q.opts.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return q.fail(ctx, "read stream "+q.opts.Name, err)
	}
	if info := st.CachedInfo(); info.Config.MaxMsgsPerSubject != 1 && info.State.Msgs > 0 {
		return fmt.Errorf("natsq: stream %s holds %d async requests in an older layout (a subject per deployment); "+
			"let an older ebb finish them, or delete the stream (nats stream rm %s), then start this one",
			q.opts.Name, info.State.Msgs, q.opts.Name)
	}
	return nil
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
		return je.APIError().Code == 503 && !perSubjectError(err)
	}
	return false
}

// perSubjectError reports the per-subject limit refusing a message: its
// request id is stored already.
func perSubjectError(err error) bool {
	je, ok := errors.AsType[jetstream.JetStreamError](err)
	return ok && je.APIError() != nil && strings.Contains(je.APIError().Description, "maximum messages per subject")
}

func (q *Queue) now() time.Time { return q.opts.Now().UTC().Truncate(time.Microsecond) }

// token turns a name into a subject token: itself when made of letters,
// digits and "-", else "_" and its base32.
func token(name string) string {
	if plain(name) {
		return name
	}
	return "_" + strings.ToLower(b32.EncodeToString([]byte(name)))
}

// plain reports a non-empty name of letters, digits and "-" alone.
func plain(name string) bool {
	ok := name != ""
	for i := 0; i < len(name) && ok; i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
	}
	return ok
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

// key is a request's key: its outcome's in the bucket, and the last two
// tokens of its subject in the stream. It is "" for an id that is no
// request id (wildcards, dots): such an id names nothing.
func key(tenant, id string) string {
	if !plain(id) {
		return ""
	}
	return "t" + strings.ToLower(b32.EncodeToString([]byte(tenant))) + "." + id
}

func level(priority int) string {
	if priority < 0 {
		return "0"
	}
	return "1"
}

var levels = []string{"1", "0"} // in claim order

// requestSubject is the subject of the request under key k.
func (q *Queue) requestSubject(deployment string, priority int, k string) string {
	return q.subject + ".q." + token(deployment) + "." + level(priority) + "." + k
}

// anyRequestSubject matches the request under key k, of any deployment.
func (q *Queue) anyRequestSubject(k string) string { return q.subject + ".q.*.*." + k }

// record is a finished request's outcome in the bucket.
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

// expires is when a pending request's record ends: its deadline plus its
// result TTL (queue.Request.ExpiresAt).
func (m *meta) expires() time.Time {
	r := queue.Request{Deadline: m.Deadline, ResultTTL: m.TTL}
	return r.ExpiresAt()
}

// outcome is the record of m's request finished in state s at now.
func (m *meta) outcome(s queue.State, now time.Time) *record {
	return &record{ID: m.ID, Tenant: m.Tenant, Deployment: m.Deployment, Version: m.Version, State: s,
		Created: m.Created, Expires: now.Add(m.TTL), TTL: m.TTL, BodyRef: m.BodyRef, Callback: m.Callback}
}

// pendingRecord is what Get and List say of m's request while it waits.
func (m *meta) pendingRecord() queue.Record {
	r := queue.Record{ID: m.ID, Tenant: m.Tenant, Deployment: m.Deployment, Version: m.Version,
		State: queue.Pending, CreatedAt: m.Created, ExpiresAt: m.expires(), Callback: m.Callback}
	if m.Callback != "" {
		r.CallbackState = queue.CallbackWaiting
	}
	return r
}

const headerRequest = "Ebb-Request"

func parseMeta(h nats.Header) (*meta, error) {
	var m meta
	if err := json.Unmarshal([]byte(h.Get(headerRequest)), &m); err != nil {
		return nil, fmt.Errorf("decode request metadata: %w", err)
	}
	return &m, nil
}

// Enqueue implements queue.Queue.
func (q *Queue) Enqueue(ctx context.Context, r queue.Request) error {
	ctx, cancel := q.op(ctx)
	defer cancel()
	if r.CreatedAt.IsZero() {
		r.CreatedAt = q.now()
	}
	k := key(r.Tenant, r.ID)
	if k == "" {
		return fmt.Errorf("natsq: enqueue: %q is not a request id (letters, digits and - only)", r.ID)
	}
	m, err := json.Marshal(meta{ID: r.ID, Tenant: r.Tenant, Deployment: r.Deployment, Version: r.Version,
		Priority: r.Priority, ContentType: r.ContentType, HeaderLength: r.HeaderLength, Header: r.Header,
		BodyRef: r.BodyRef, Callback: r.Callback, Created: r.CreatedAt, Deadline: r.Deadline, TTL: r.ResultTTL})
	if err != nil {
		return err
	}
	if err := q.ensureConsumers(ctx, r.Deployment); err != nil {
		return q.fail(ctx, "enqueue "+r.ID, err)
	}
	now := q.now()
	counted, err := q.checkDepth(ctx, r.Deployment, now)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: q.requestSubject(r.Deployment, r.Priority, k), Data: r.Body, Header: nats.Header{}}
	msg.Header.Set(headerRequest, string(m))
	if _, err := q.js.PublishMsg(ctx, msg); err != nil {
		switch {
		case errors.Is(err, nats.ErrMaxPayload):
			return fmt.Errorf("natsq: enqueue %s: %d bytes, over the NATS server's max_payload of %d: %w",
				r.ID, len(r.Body), q.nc.MaxPayload(), queue.ErrTooLarge)
		case perSubjectError(err):
			return fmt.Errorf("natsq: enqueue %s: a request with this id is queued already", r.ID)
		}
		return q.fail(ctx, "enqueue "+r.ID, err)
	}
	q.counts.Enqueued(r.Deployment, counted, now)
	return nil
}

// checkDepth returns queue.ErrFull when dep has MaxDepth requests pending,
// counting them when PendingCounts says so; counted is the count, -1 when
// not taken.
func (q *Queue) checkDepth(ctx context.Context, dep string, now time.Time) (counted int, err error) {
	if !q.counts.MustCount(dep, now, q.opts.MaxDepth) {
		return -1, nil
	}
	n, err := q.depth(ctx, dep)
	if err != nil {
		return -1, q.fail(ctx, "count the requests of "+dep, err)
	}
	if n >= q.opts.MaxDepth {
		return -1, fmt.Errorf("natsq: deployment %q has %d async requests pending, its limit: %w", dep, n, queue.ErrFull)
	}
	return n, nil
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

// remember keeps what the claim leased by tok knows of its request; take
// returns and forgets it.
func (q *Queue) remember(tok string, c claimed) {
	q.mu.Lock()
	q.claims[tok] = c
	q.mu.Unlock()
}

func (q *Queue) take(tok string) (claimed, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c, ok := q.claims[tok]
	if ok {
		delete(q.claims, tok)
	}
	return c, ok
}

func nak(delay time.Duration) string {
	if delay <= 0 {
		return "-NAK"
	}
	return fmt.Sprintf(`-NAK {"delay": %d}`, delay.Nanoseconds())
}
