package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// Forwarder runs an async request through the gateway's chain (auth
// aside: the request was authorized when it was submitted), returning the
// chain's answer. err is for a request that got no answer at all; an
// answer with any status is a result, except the retryable ones (see
// Retryable).
type Forwarder interface {
	Forward(ctx context.Context, req *Request) (Result, error)
}

// Retryable reports whether an answer of the chain leaves the request for
// a later claim rather than being its result: 503 (the deployment stayed
// cold too long, its hold queue was full, no replica could take it) and 429
// (a tenant limit; the queue is where excess waits). Every other status,
// 4xx included, is the result.
func Retryable(status int) bool {
	return status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests
}

// WorkerOptions tune a Worker; zero values take the defaults shown.
type WorkerOptions struct {
	// Concurrency returns how many requests of a deployment the worker
	// runs at once: the pace the deployment takes. Default 4 each.
	Concurrency func(deployment string) int
	// Lease is how long a claim holds a request: longer than a request
	// may take (holding while cold included). Default 5m.
	Lease time.Duration
	// Poll is how often the queue is looked at when Wake was not called;
	// default 1s.
	Poll time.Duration
	// RetryDelay is how long a request that failed retryably waits before
	// it is claimed again; default 2s.
	RetryDelay time.Duration
	// MaxAttempts bounds the claims of one request (crashes and retryable
	// failures count); beyond it the request completes with 500. Its
	// deadline usually ends it first. Default 50.
	MaxAttempts int
	// Sweep is how often expired records are deleted; default 1m.
	Sweep time.Duration
	// Callbacks configure result delivery to callback URLs.
	Callbacks CallbackOptions
	// Clock; default the real clock.
	Clock clock.WithTicker
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Waiters, when set, is told of every result the worker stores, so
	// that readers waiting for it (Prefer: wait) answer at once.
	Waiters *Waiters
}

// CallbackOptions configure callbacks.
type CallbackOptions struct {
	// Secret keys the Ebb-Signature HMAC.
	Secret []byte
	// AllowedHosts is the allow-list (CallbackAllowed); empty allows none:
	// every pending callback then fails.
	AllowedHosts []string
	// Client posts callbacks; default one with a 10s timeout that follows
	// no redirects (a redirect could leave the allow-list).
	Client *http.Client
	// MaxAttempts bounds the attempts of one callback; default 10.
	MaxAttempts int
	// BaseDelay and MaxDelay bound the exponential backoff between
	// attempts (with jitter: between half and all of BaseDelay·2^(n-1),
	// at most MaxDelay); defaults 1s and 10m.
	BaseDelay, MaxDelay time.Duration
	// Concurrency bounds the callbacks posted at once; default 16.
	Concurrency int
	// Lease is how long a claim holds a callback; default 1m.
	Lease time.Duration
}

// Worker drains a Queue: for each deployment with pending requests it
// claims as many as the deployment's concurrency leaves room for, runs
// each through the Forwarder and stores the answer as its result; it posts
// results to their callback URLs, and deletes expired records. Several
// workers (processes) may share one queue.
type Worker struct {
	q    Queue
	fwd  Forwarder
	opts WorkerOptions
	wake chan struct{}
	// cbDue is set when a result with a callback was stored; lookAll by
	// Wake, for a claim that reads every deployment's depth.
	cbDue   atomic.Bool
	lookAll atomic.Bool

	// mu guards inflight (requests running, by deployment), cbInflight
	// (callbacks being posted) and hinted.
	mu         sync.Mutex
	inflight   map[string]int
	cbInflight int
	// hinted are the deployments that may have requests to claim: those
	// Enqueued named, and those whose last claim took all it asked for. A
	// wake claims for them alone; only the poll reads every deployment's
	// depth (Queue.Depths counts what is pending: a read per wake, one per
	// request submitted, cost more than the claims).
	hinted map[string]bool
}

// NewWorker returns a Worker; Run starts it.
func NewWorker(q Queue, fwd Forwarder, opts WorkerOptions) *Worker {
	if opts.Concurrency == nil {
		opts.Concurrency = func(string) int { return 4 }
	}
	if opts.Lease <= 0 {
		opts.Lease = 5 * time.Minute
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 2 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 50
	}
	if opts.Sweep <= 0 {
		opts.Sweep = time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Callbacks = opts.Callbacks.withDefaults()
	return &Worker{q: q, fwd: fwd, opts: opts, wake: make(chan struct{}, 1), inflight: map[string]int{}, hinted: map[string]bool{}}
}

// Wake makes the worker look at the whole queue now.
func (w *Worker) Wake() {
	w.lookAll.Store(true)
	w.kick()
}

// kick makes the worker claim for its hinted deployments now.
func (w *Worker) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Enqueued tells the worker that a request of deployment dep was stored:
// the gateway calls it after an Enqueue, so that the first request of a
// cold deployment does not wait for the next poll. It wakes the worker
// unless dep has requests in flight and less room than a claim batch:
// then the next request to finish wakes it, with room for a batch.
func (w *Worker) Enqueued(dep string) {
	pace := w.opts.Concurrency(dep)
	w.mu.Lock()
	w.hinted[dep] = true
	inflight := w.inflight[dep]
	w.mu.Unlock()
	if inflight > 0 && pace-inflight < claimBatch(pace) {
		return
	}
	w.kick()
}

// claimBatch is the fewest requests the worker claims for a deployment
// whose backlog exceeds its room while it has requests in flight: a
// quarter of its pace. A claim is a write transaction; one per finished
// request cost more than forwarding the requests did, while a quarter
// still leaves three quarters of the pace running meanwhile.
func claimBatch(pace int) int { return max(1, pace/4) }

// Run works the queue until ctx is done, then waits for the requests and
// callbacks it started: a request interrupted by the end is released for
// another worker.
func (w *Worker) Run(ctx context.Context) error {
	if len(w.opts.Callbacks.AllowedHosts) > 0 && len(w.opts.Callbacks.Secret) == 0 {
		w.opts.Logger.Warn("async callbacks are allowed but have no signing secret: receivers cannot verify them")
	}
	t := w.opts.Clock.NewTicker(w.opts.Poll)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var swept time.Time
	tick := true
	for {
		w.claim(ctx, &wg, tick || w.lookAll.Swap(false))
		// Callbacks are looked for on every tick, and at once after a
		// result with a callback URL: not on every wake, since a claim
		// is a write transaction.
		if w.cbDue.Swap(false) || tick {
			w.claimCallbacks(ctx, &wg)
		}
		tick = false
		if now := w.opts.Clock.Now(); now.Sub(swept) >= w.opts.Sweep {
			swept = now
			if sw, err := w.q.DeleteExpired(ctx, now); err != nil && ctx.Err() == nil {
				w.opts.Logger.Warn("delete expired async requests", "err", err)
			} else if sw.Records > 0 {
				w.opts.Logger.Debug("deleted expired async requests", "records", sw.Records, "blobs", len(sw.Blobs))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			tick = true
		case <-w.wake:
		}
	}
}

// claim starts the requests the deployments have room for: on a poll
// (all), those of every deployment with requests pending, as the queue's
// depths say; otherwise those of the hinted deployments.
func (w *Worker) claim(ctx context.Context, wg *sync.WaitGroup, all bool) {
	const unknown = -1
	var depths map[string]int
	if all {
		var err error
		if depths, err = w.q.Depths(ctx); err != nil {
			if ctx.Err() == nil {
				w.opts.Logger.Warn("read async queue depths", "err", err)
			}
			return
		}
	}
	w.mu.Lock()
	if depths == nil {
		depths = make(map[string]int, len(w.hinted))
	}
	for dep := range w.hinted {
		if _, ok := depths[dep]; !ok {
			depths[dep] = unknown
		}
	}
	w.mu.Unlock()
	for dep, n := range depths {
		pace := w.opts.Concurrency(dep)
		w.mu.Lock()
		inflight := w.inflight[dep]
		w.mu.Unlock()
		// n counts this worker's own requests in flight too; unknown, it
		// is taken as deep.
		free := pace - inflight
		if n != unknown {
			free = min(pace, n) - inflight
		}
		if free <= 0 || (inflight > 0 && (n == unknown || n > pace) && free < claimBatch(pace)) {
			continue // hinted still: a request that ends wakes the worker
		}
		rs, err := w.q.Claim(ctx, dep, free, w.opts.Lease)
		if err != nil && ctx.Err() == nil {
			w.opts.Logger.Warn("claim async requests", "deployment", dep, "err", err)
		}
		w.mu.Lock()
		// A claim that got all it asked for may have left more.
		if err == nil && len(rs) < free {
			delete(w.hinted, dep)
		} else {
			w.hinted[dep] = true
		}
		w.mu.Unlock()
		for _, r := range rs {
			w.mu.Lock()
			w.inflight[dep]++
			w.mu.Unlock()
			wg.Go(func() {
				defer func() {
					w.mu.Lock()
					w.inflight[dep]--
					left := w.inflight[dep]
					if left == 0 {
						delete(w.inflight, dep)
					}
					w.mu.Unlock()
					// Room for the next ones, claimed in a batch
					// where the backlog is deep.
					if pace := w.opts.Concurrency(dep); left == 0 || pace-left >= claimBatch(pace) {
						w.kick()
					}
				}()
				w.run(ctx, r)
			})
		}
	}
}

// finishTimeout bounds storing a result or a release after the worker's
// context ended: a result computed is worth keeping.
const finishTimeout = 10 * time.Second

// run runs one claimed request and stores its result, or releases it.
func (w *Worker) run(ctx context.Context, r *Request) {
	now := w.opts.Clock.Now()
	switch {
	case !r.Deadline.IsZero() && !now.Before(r.Deadline):
		w.complete(ctx, r, errorResult(http.StatusGatewayTimeout, "the async request was not run before its deadline"))
		return
	case r.Attempt > w.opts.MaxAttempts:
		w.complete(ctx, r, errorResult(http.StatusInternalServerError,
			fmt.Sprintf("the async request failed %d attempts; giving up", r.Attempt-1)))
		return
	}
	fctx := ctx
	if !r.Deadline.IsZero() {
		var cancel context.CancelFunc
		fctx, cancel = context.WithDeadline(ctx, r.Deadline)
		defer cancel()
	}
	res, err := w.fwd.Forward(fctx, r)
	status := res.Status
	if err == nil && !Retryable(status) {
		w.complete(ctx, r, Result{Status: status, ContentType: res.ContentType, HeaderLength: res.HeaderLength, Body: res.Body})
		return
	}
	fin, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	at := w.opts.Clock.Now().Add(w.opts.RetryDelay)
	if ctx.Err() != nil {
		at = w.opts.Clock.Now() // shutting down: another worker may take it now
	} else if !r.Deadline.IsZero() && !at.Before(r.Deadline) {
		at = r.Deadline // its next claim completes it with 504
	}
	if w.opts.Logger.Enabled(ctx, slog.LevelDebug) {
		w.logFor(r).Debug("async request failed retryably; released", "status", status, "err", err, "retry_at", at)
	}
	if err := w.q.Release(fin, r.ID, r.LeaseToken, at); err != nil {
		w.logFor(r).Warn("release async request; it runs again when its lease expires", "err", err)
	}
}

// logFor returns the logger of r's lines. It is made for a line that is
// logged, not per request: its attributes are formatted when it is made
// (a JSON handler renders them ahead).
func (w *Worker) logFor(r *Request) *slog.Logger {
	return w.opts.Logger.With("id", r.ID, "deployment", r.Deployment, "attempt", r.Attempt)
}

func (w *Worker) complete(ctx context.Context, r *Request, res Result) {
	fin, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	stored, err := w.q.Complete(fin, r.ID, r.LeaseToken, res)
	switch {
	case err != nil:
		w.logFor(r).Warn("store async result; the request runs again when its lease expires", "err", err)
	case !stored:
		if w.opts.Logger.Enabled(ctx, slog.LevelDebug) {
			w.logFor(r).Debug("async request already had a result; this run's is dropped")
		}
	default:
		if w.opts.Waiters != nil {
			w.opts.Waiters.Stored(r, &res) // readers answer with it, unread
		}
		if r.Callback != "" {
			w.cbDue.Store(true)
			w.kick() // its callback is due
		}
	}
}

// errorResult is a result the worker makes itself, as the gateway's
// errors are shaped.
func errorResult(status int, msg string) Result {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return Result{Status: status, ContentType: "application/json", Body: append(b, '\n')}
}
