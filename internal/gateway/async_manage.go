package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/queue"
)

// Managing async requests: DELETE /v2/async/{id} cancels one, GET
// /v2/async lists the caller's (ebb async cancel and list).

const (
	codeAsyncFinished = "async/finished"
	codeAsyncBadQuery = "async/bad_query"
	// maxAsyncList bounds the records one list returns.
	maxAsyncList = 1000
)

// asyncCaller authenticates an async API call, answering the refusal
// itself (ok false), and returns the principal (nil with auth off) and
// the tenant the call acts for.
func (g *Gateway) asyncCaller(ctx *fasthttp.RequestCtx) (p *auth.Principal, tenant string, ok bool) {
	if g.opts.Auth != nil {
		pr, err := g.principal(ctx)
		if err != nil {
			writeAuthError(ctx, err)
			return nil, "", false
		}
		p = &pr
	}
	return p, g.tenantOf(ctx, p), true
}

// asyncMissing answers the 404 of an unknown id: unknown, expired, another
// tenant's, or one the token may not see are alike.
func asyncMissing(ctx *fasthttp.RequestCtx, id []byte) {
	writeErrorCode(ctx, http.StatusNotFound, codeAsyncNotFound, fmt.Sprintf("async request %q not found (unknown, expired, or not yours)", id))
}

// asyncUnavailable answers a queue that could not be read or written.
func asyncUnavailable(ctx *fasthttp.RequestCtx, what string, err error) {
	ctx.Response.Header.Set("Retry-After", "5")
	writeErrorCode(ctx, http.StatusServiceUnavailable, codeAsyncUnavailable, fmt.Sprintf("the async queue cannot %s now: %v", what, err))
}

// asyncCancel cancels tenant's request id: a request not yet run will not
// run; one running has its result dropped. Readers waiting here for it
// are woken (they read it cancelled).
func (g *Gateway) asyncCancel(ctx *fasthttp.RequestCtx, a *Async, p *auth.Principal, tenant, id string) {
	rec, err := a.get(tenant, id, true) // Cancel reads the queue anyway
	if err == nil && p != nil && auth.Check(*p, auth.Predict, rec.Deployment) != nil {
		err = queue.ErrNotFound
	}
	if err == nil {
		if finished(rec.State) {
			err = queue.ErrFinished
		} else {
			c, cancel := context.WithTimeout(context.Background(), a.Timeout)
			err = a.Queue.Cancel(c, tenant, id)
			cancel()
		}
	}
	switch {
	case errors.Is(err, queue.ErrNotFound):
		asyncMissing(ctx, []byte(id))
	case errors.Is(err, queue.ErrFinished):
		state := rec.State
		if !finished(state) {
			state = "done or cancelled"
		}
		writeErrorCode(ctx, http.StatusConflict, codeAsyncFinished, fmt.Sprintf("async request %q already finished (%s): there is nothing to cancel", id, state))
	case err != nil:
		asyncUnavailable(ctx, "cancel the request", err)
	default:
		if a.Waiters != nil {
			a.Waiters.Done(id, nil)
		}
		writeJSON(ctx, http.StatusOK, asyncStatus{ID: id, State: queue.Cancelled})
	}
}

// serveAsyncList serves GET /v2/async?deployment=&state=&limit=: the
// caller's requests, newest first, without result bodies. With auth on,
// only those of deployments the token may predict on are shown (the limit
// applies before that filter).
func (g *Gateway) serveAsyncList(ctx *fasthttp.RequestCtx, a *Async) {
	if !get(ctx) {
		return
	}
	p, tenant, ok := g.asyncCaller(ctx)
	if !ok {
		return
	}
	args := ctx.QueryArgs()
	opts := queue.ListOptions{Deployment: string(args.Peek("deployment")), State: queue.State(args.Peek("state")), Limit: 100}
	switch opts.State {
	case "", queue.Pending, queue.Done, queue.Cancelled:
	default:
		writeErrorCode(ctx, http.StatusBadRequest, codeAsyncBadQuery, fmt.Sprintf("state %q: want pending, done or cancelled", opts.State))
		return
	}
	if l := args.Peek("limit"); len(l) > 0 {
		n, err := strconv.Atoi(string(l))
		if err != nil || n < 1 || n > maxAsyncList {
			writeErrorCode(ctx, http.StatusBadRequest, codeAsyncBadQuery, fmt.Sprintf("limit %q: want a number from 1 to %d", l, maxAsyncList))
			return
		}
		opts.Limit = n
	}
	c, cancel := context.WithTimeout(context.Background(), a.Timeout)
	defer cancel()
	recs, err := a.Queue.List(c, tenant, opts)
	if err != nil {
		asyncUnavailable(ctx, "be read", err)
		return
	}
	out := queue.RecordList{Requests: make([]queue.RecordView, 0, len(recs))}
	for _, r := range recs {
		if p != nil && auth.Check(*p, auth.Predict, r.Deployment) != nil {
			continue
		}
		out.Requests = append(out.Requests, r.View())
	}
	writeJSON(ctx, http.StatusOK, out)
}
