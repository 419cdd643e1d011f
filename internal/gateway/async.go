package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/fairqueue"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/valyala/fasthttp"
)

// Async inference (issue 15). An ordinary infer request with the header
// "Prefer: respond-async" (RFC 7240) is stored in the durable queue
// (package queue) instead of being forwarded, and answered
//
//	202 Accepted
//	Location: /v2/async/{id}
//	Preference-Applied: respond-async
//	{"id":"{id}","state":"pending"}
//
// only once it is stored: a queue store that cannot be reached gets 503,
// and nothing was acknowledged. GET /v2/async/{id} then answers 202 with
// Retry-After while the request waits or runs, and 200 once it has a
// result: the result's body passed through, with its Content-Type, and the
// status the chain answered in Ebb-Result-Status. An unknown id, and
// another tenant's, are 404 alike. queue.Worker runs the stored requests
// through the chain (the lead's queue.Forwarder) at the deployment's pace.
//
// A request may name a callback URL in Ebb-Callback; its host must be on
// Async.CallbackHosts (400 otherwise, naming CallbackHostsFlag), and the
// worker posts the signed result there (queue/callback.go).

// Headers and flags of async inference.
const (
	// CallbackHeader names the callback URL of an async request.
	CallbackHeader = "Ebb-Callback"
	// ResultStatusHeader carries the status the chain answered a
	// finished async request with.
	ResultStatusHeader = "Ebb-Result-Status"
	// CallbackHostsFlag is the flag that sets Async.CallbackHosts, as
	// refusals name it.
	CallbackHostsFlag = "--async-callback-hosts"
	// AsyncMaxBodyFlag is the flag that sets Async.MaxBodyBytes.
	AsyncMaxBodyFlag = "--async-max-body-bytes"
)

// Error codes of async answers.
const (
	codeAsyncNotFound    = "async/not_found"
	codeAsyncUnavailable = "async/unavailable"
	codeAsyncFull        = "async/queue_full"
	codeAsyncTooLarge    = "async/too_large"
	codeAsyncCallback    = "async/callback_not_allowed"
	codeAsyncCancelled   = "async/cancelled"
)

// AsyncQueue is what the gateway needs of the queue: *queue.Spilling,
// sqlstore's and natsq's Queue are ones.
type AsyncQueue interface {
	Enqueue(ctx context.Context, r queue.Request) error
	Get(ctx context.Context, tenant, id string) (queue.Record, error)
	Cancel(ctx context.Context, tenant, id string) error
	List(ctx context.Context, tenant string, opts queue.ListOptions) ([]queue.Record, error)
}

// Async configures async inference (Options.Async); zero values take the
// defaults shown.
type Async struct {
	// Queue stores the requests; required.
	Queue AsyncQueue
	// Wake, when set, is called with the deployment once a request is
	// stored (queue.Worker.Enqueued), so that it runs without waiting for
	// a poll.
	Wake func(deployment string)
	// MaxBodyBytes bounds an async request body (413 beyond it, naming
	// AsyncMaxBodyFlag); default, and at most, Options.MaxBodyBytes.
	MaxBodyBytes int64
	// CallbackHosts allow callback URLs (queue.CallbackAllowed); empty,
	// the default, allows none.
	CallbackHosts []string
	// Deadline is how long a request may wait to run, after which it
	// completes with 504; default 24h.
	Deadline time.Duration
	// ResultTTL is how long a result is kept; default 24h.
	ResultTTL time.Duration
	// RetryAfter is the polling interval GET suggests while a request is
	// pending, in seconds; default 1.
	RetryAfter int
	// Timeout bounds storing a request; default 10s.
	Timeout time.Duration
	// Waiters, when set, is told of the results this process's worker
	// stores (queue.WorkerOptions.Waiters): a GET waiting for one
	// (Prefer: wait) answers at once.
	Waiters *queue.Waiters
	// MaxWait bounds the wait a GET may ask for; default
	// DefaultAsyncMaxWait.
	MaxWait time.Duration
}

// withDefaults fills a's defaults, bounded by the gateway's options.
func (a Async) withDefaults(o Options) *Async {
	if a.MaxBodyBytes <= 0 || a.MaxBodyBytes > o.MaxBodyBytes {
		a.MaxBodyBytes = o.MaxBodyBytes
	}
	if a.Deadline <= 0 {
		a.Deadline = 24 * time.Hour
	}
	if a.ResultTTL <= 0 {
		a.ResultTTL = 24 * time.Hour
	}
	if a.RetryAfter <= 0 {
		a.RetryAfter = 1
	}
	if a.Timeout <= 0 {
		a.Timeout = 10 * time.Second
	}
	if a.MaxWait <= 0 {
		a.MaxWait = DefaultAsyncMaxWait
	}
	return &a
}

// async returns the async options with their defaults, or nil when async
// inference is off.
func (g *Gateway) async() *Async {
	if g.opts.Async == nil || g.opts.Async.Queue == nil {
		return nil
	}
	return g.opts.Async.withDefaults(g.opts)
}

// wantsAsync reports whether ctx's request prefers an asynchronous
// answer: a Prefer header with the respond-async preference.
func (g *Gateway) wantsAsync(ctx *fasthttp.RequestCtx) bool {
	if g.opts.Async == nil || len(ctx.Request.Header.Peek("Prefer")) == 0 {
		return false // without allocating, for every other request
	}
	for _, h := range ctx.Request.Header.PeekAll("Prefer") {
		for pref := range bytes.SplitSeq(h, []byte(",")) {
			token, _, _ := bytes.Cut(pref, []byte(";"))
			token, _, _ = bytes.Cut(token, []byte("="))
			if bytes.EqualFold(bytes.TrimSpace(token), []byte("respond-async")) {
				return true
			}
		}
	}
	return false
}

var pathAsync = []byte("/v2/async/")

// submitAsync stores ctx's infer request for name (and version) of
// tenant in the queue and answers 202 with where to poll.
func (g *Gateway) submitAsync(ctx *fasthttp.RequestCtx, name, version []byte, tenant string) {
	a := g.async()
	if a == nil {
		g.infer(ctx, name, version, tenant)
		return
	}
	keep, ok := g.asyncTarget(ctx, b2s(name), b2s(version))
	if !ok {
		return
	}
	prio := queue.PriorityInteractive
	if h := ctx.Request.Header.Peek(PriorityHeader); len(h) > 0 {
		p, err := fairqueue.ParsePriority(b2s(h))
		if err != nil {
			writeErrorCode(ctx, http.StatusBadRequest, codeBadPriority, fmt.Sprintf("header %s: %v", PriorityHeader, err))
			return
		}
		if p == fairqueue.Batch {
			prio = queue.PriorityBatch
		}
	}
	callback := string(ctx.Request.Header.Peek(CallbackHeader))
	if callback != "" {
		if err := queue.CallbackAllowed(a.CallbackHosts, callback); err != nil {
			writeErrorCode(ctx, http.StatusBadRequest, codeAsyncCallback, fmt.Sprintf(
				"header %s: %v; the gateway's operator allows callback hosts with %s", CallbackHeader, err, CallbackHostsFlag))
			return
		}
	}
	if cl := int64(ctx.Request.Header.ContentLength()); cl > a.MaxBodyBytes {
		ctx.SetConnectionClose() // the body stays unread
		g.asyncTooLarge(ctx, a)
		return
	}
	x := g.acquire(ctx)
	defer x.release()
	held, code := g.readBody(ctx, x)
	if code != 0 {
		return
	}
	defer g.budget.release(held)
	if int64(len(x.body)) > a.MaxBodyBytes {
		g.asyncTooLarge(ctx, a)
		return
	}
	now := g.opts.Clock.Now().UTC().Truncate(time.Microsecond)
	r := queue.Request{
		ID: queue.NewID(), Tenant: tenant, Deployment: string(name), Version: string(version), Priority: prio,
		ContentType:  string(ctx.Request.Header.ContentType()),
		HeaderLength: headerLength(ctx),
		Body:         bytes.Clone(x.body), Callback: callback,
		CreatedAt: now, Deadline: now.Add(a.Deadline), ResultTTL: a.ResultTTL,
	}
	for _, h := range keep {
		if v := ctx.Request.Header.Peek(h); len(v) > 0 {
			if r.Header == nil {
				r.Header = map[string]string{}
			}
			r.Header[h] = string(v)
		}
	}
	// Not the request's context: a store that took the request finishes
	// storing it even if the client left.
	sctx, cancel := context.WithTimeout(context.Background(), a.Timeout)
	defer cancel()
	if err := a.Queue.Enqueue(sctx, r); err != nil {
		g.asyncStoreError(ctx, r.Deployment, err)
		return
	}
	if a.Waiters != nil {
		a.Waiters.Accepted(&r)
	}
	if a.Wake != nil {
		a.Wake(r.Deployment)
	}
	loc := string(pathAsync) + r.ID
	ctx.Response.Header.Set("Location", loc)
	ctx.Response.Header.Set("Preference-Applied", "respond-async")
	writeJSON(ctx, http.StatusAccepted, asyncStatus{ID: r.ID, State: queue.Pending, Location: loc})
}

// asyncTarget checks that name (and version) can take requests, answering
// 404 when not, and returns the headers the chain will need again: the
// deployment's routing key header, a route object's match header.
func (g *Gateway) asyncTarget(ctx *fasthttp.RequestCtx, name, version string) (keep []string, ok bool) {
	rt := g.routes.Lookup(name)
	if rt == nil {
		sh := g.opts.Shards.Lookup(name)
		if sh == nil {
			writeError(ctx, http.StatusNotFound, notFound(name))
			return nil, false
		}
		if sh.Match.Header != "" {
			keep = append(keep, sh.Match.Header)
		}
		return keep, true
	}
	if rt.Protocol != "" {
		writeError(ctx, http.StatusNotFound, notOIP(rt.Deployment))
		return nil, false
	}
	if version != "" && rt.Version != version && !rt.Serves(version) {
		writeVersionNotFound(ctx, rt, version)
		return nil, false
	}
	if rt.Routing != nil && rt.Routing.Key != nil && rt.Routing.Key.Header != "" {
		keep = append(keep, rt.Routing.Key.Header)
	}
	return keep, true
}

func headerLength(ctx *fasthttp.RequestCtx) int64 {
	v := ctx.Request.Header.Peek("Inference-Header-Content-Length")
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func (g *Gateway) asyncTooLarge(ctx *fasthttp.RequestCtx, a *Async) {
	g.opts.Metrics.limit(limitBodyBytes)
	writeError(ctx, http.StatusRequestEntityTooLarge, fmt.Sprintf(
		"async request body exceeds the limit of %d bytes (%s): send fewer rows per request", a.MaxBodyBytes, AsyncMaxBodyFlag))
}

// asyncStoreError answers a failed Enqueue: nothing was stored.
func (g *Gateway) asyncStoreError(ctx *fasthttp.RequestCtx, name string, err error) {
	switch {
	case errors.Is(err, queue.ErrFull):
		ctx.Response.Header.Set("Retry-After", "5")
		writeErrorCode(ctx, http.StatusServiceUnavailable, codeAsyncFull,
			fmt.Sprintf("deployment %q has too many async requests waiting; nothing was stored: %v", name, err))
	case errors.Is(err, queue.ErrTooLarge):
		writeErrorCode(ctx, http.StatusRequestEntityTooLarge, codeAsyncTooLarge,
			fmt.Sprintf("the async request is too large for the queue's store; nothing was stored: %v: send fewer rows per request, or give the gateways --async-payloads (an s3:// or file:// location) so that large bodies go there", err))
	case errors.Is(err, queue.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		ctx.Response.Header.Set("Retry-After", "5")
		writeErrorCode(ctx, http.StatusServiceUnavailable, codeAsyncUnavailable,
			fmt.Sprintf("the async queue cannot store the request now; nothing was stored: %v", err))
	default:
		g.opts.Logger.Error("store async request", "deployment", name, "err", err)
		writeErrorCode(ctx, http.StatusInternalServerError, codeAsyncUnavailable,
			fmt.Sprintf("the async request could not be stored: %v", err))
	}
}

// asyncStatus is the JSON body of 202 and of a request without a result.
type asyncStatus struct {
	ID       string      `json:"id"`
	State    queue.State `json:"state"`
	Location string      `json:"location,omitempty"`
}

// serveAsync serves /v2/async/{id}: GET reads the request (its result
// once done), DELETE cancels it (async_manage.go); /v2/async lists the
// caller's requests. With auth on, the token must be valid and allow
// predict on the request's deployment; every refusal after authentication
// is the 404 of an unknown id, so ids leak nothing.
func (g *Gateway) serveAsync(ctx *fasthttp.RequestCtx, id []byte) {
	a := g.async()
	if a == nil {
		pageNotFound(ctx)
		return
	}
	if len(id) == 0 {
		g.serveAsyncList(ctx, a)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() && !ctx.IsDelete() {
		methodNotAllowed(ctx, "GET, HEAD, DELETE")
		return
	}
	p, tenant, ok := g.asyncCaller(ctx)
	if !ok {
		return
	}
	if !queue.ValidID(b2s(id)) {
		asyncMissing(ctx, id)
		return
	}
	if ctx.IsDelete() {
		g.asyncCancel(ctx, a, p, tenant, string(id))
		return
	}
	wait := preferredWait(ctx, a.MaxWait)
	var w *queue.Waiter
	stop := func() {}
	if wait > 0 {
		w, stop = a.watch(string(id)) // before the read: a result stored after it wakes the wait
	}
	// A request this process accepted is known pending: a GET that waits
	// for its result starts waiting without reading the queue (it reads
	// it again every asyncRecheck); one that does not wait reads it.
	rec, err := a.get(tenant, string(id), wait > 0)
	if err == nil && p != nil && auth.Check(*p, auth.Predict, rec.Deployment) != nil {
		err = queue.ErrNotFound
	}
	if err == nil && wait > 0 && !finished(rec.State) {
		ctx.Response.Header.Set("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
		rec, err = a.await(tenant, rec, wait, w, stop)
	} else {
		stop()
	}
	switch {
	case errors.Is(err, queue.ErrNotFound):
		asyncMissing(ctx, id)
		return
	case err != nil:
		ctx.Response.Header.Set("Retry-After", "5")
		writeErrorCode(ctx, http.StatusServiceUnavailable, codeAsyncUnavailable, fmt.Sprintf("the async queue cannot be read now: %v", err))
		return
	}
	switch rec.State {
	case queue.Done:
		res := rec.Result
		ctx.Response.Header.Set(ResultStatusHeader, strconv.Itoa(res.Status))
		ctx.Response.Header.Set(queue.HeaderID, rec.ID)
		if res.HeaderLength > 0 {
			ctx.Response.Header.Set("Inference-Header-Content-Length", strconv.FormatInt(res.HeaderLength, 10))
		}
		ct := res.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		ctx.SetContentType(ct)
		ctx.SetStatusCode(http.StatusOK)
		ctx.SetBody(res.Body)
	case queue.Cancelled:
		writeJSON(ctx, http.StatusGone, struct {
			asyncStatus
			Code string `json:"code"`
		}{asyncStatus{ID: rec.ID, State: rec.State}, codeAsyncCancelled})
	default:
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(a.RetryAfter))
		ctx.Response.Header.Set("Location", string(pathAsync)+rec.ID)
		writeJSON(ctx, http.StatusAccepted, asyncStatus{ID: rec.ID, State: rec.State})
	}
}
