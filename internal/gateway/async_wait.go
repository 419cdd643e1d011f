package gateway

import (
	"bytes"
	"context"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ebb-ml/ebb/internal/queue"
)

// A GET of an async result may ask to wait for it with the RFC 7240
// "wait" preference ("Prefer: wait=10", seconds): the gateway answers as
// soon as the result is stored, or with the usual 202 when the wait
// ends, instead of the client polling. A result stored by this process's
// worker wakes the wait at once (Async.Waiters); one stored by another
// process (another gateway's worker in a cluster) is seen when the queue
// is read again, every asyncRecheck.

// DefaultAsyncMaxWait bounds the wait a GET may ask for.
const DefaultAsyncMaxWait = 30 * time.Second

// asyncRecheck is how often a waiting GET reads the queue again.
const asyncRecheck = 500 * time.Millisecond

var preferWait = []byte("wait")

// preferredWait returns the wait ctx's Prefer headers ask for, at most
// max; 0 without one or with a malformed one.
func preferredWait(ctx *fasthttp.RequestCtx, max time.Duration) time.Duration {
	for _, h := range ctx.Request.Header.PeekAll("Prefer") {
		for pref := range bytes.SplitSeq(h, []byte(",")) {
			token, _, _ := bytes.Cut(pref, []byte(";"))
			name, value, ok := bytes.Cut(token, []byte("="))
			if !ok || !bytes.EqualFold(bytes.TrimSpace(name), preferWait) {
				continue
			}
			n, err := strconv.Atoi(string(bytes.Trim(bytes.TrimSpace(value), `"`)))
			if err != nil || n <= 0 {
				return 0
			}
			return min(time.Duration(n)*time.Second, max)
		}
	}
	return 0
}

func finished(s queue.State) bool { return s == queue.Done || s == queue.Cancelled }

// watch registers interest in id's result, where this process's worker
// reports results; stop withdraws it. w is nil without Waiters.
func (a *Async) watch(id string) (w *queue.Waiter, stop func()) {
	if a.Waiters == nil {
		return nil, func() {}
	}
	return a.Waiters.Wait(id)
}

// get reads tenant's request id, bounded by a.Timeout: from what this
// process remembers of it (Waiters.Known) when that is its result (a
// result never changes once stored), or, with pendingOK, that it is
// pending (it may have finished elsewhere since); else from the queue.
func (a *Async) get(tenant, id string, pendingOK bool) (queue.Record, error) {
	if a.Waiters != nil {
		if rec, ok := a.Waiters.Known(tenant, id); ok && (pendingOK || rec.State != queue.Pending) {
			return rec, nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.Timeout)
	defer cancel()
	return a.Queue.Get(ctx, tenant, id)
}

// await waits up to wait for rec, just read with w registered before the
// read, to finish, and returns it as last read. A result this process's
// worker stored comes with its wake and is answered as it is; any other
// wake (asyncRecheck passing, a wake without a result) reads the queue
// again, registered anew first so that a result stored in between is not
// missed.
func (a *Async) await(tenant string, rec queue.Record, wait time.Duration, w *queue.Waiter, stop func()) (queue.Record, error) {
	defer func() { stop() }()
	end := time.Now().Add(wait)
	for !finished(rec.State) {
		left := time.Until(end)
		if left <= 0 {
			break
		}
		var done <-chan struct{}
		if w != nil {
			done = w.Done()
		}
		t := time.NewTimer(min(left, asyncRecheck))
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
		if res := w.Result(); res != nil {
			// rec was read for this tenant: the result is theirs.
			rec.State, rec.Result = queue.Done, res
			return rec, nil
		}
		stop()
		w, stop = a.watch(rec.ID)
		r, err := a.get(tenant, rec.ID, false)
		if err != nil {
			return rec, err
		}
		rec = r
	}
	return rec, nil
}
