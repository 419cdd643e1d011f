package queue

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

func (o CallbackOptions) withDefaults() CallbackOptions {
	if o.Client == nil {
		o.Client = &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = time.Second
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 10 * time.Minute
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	return o
}

// Backoff returns the delay before callback attempt n+1 after n failed:
// between half and all of base·2^(n-1), at most max.
func Backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

// claimCallbacks starts posting the callbacks that are due, as many as
// Callbacks.Concurrency leaves room for.
func (w *Worker) claimCallbacks(ctx context.Context, wg *sync.WaitGroup) {
	o := w.opts.Callbacks
	w.mu.Lock()
	free := o.Concurrency - w.cbInflight
	w.mu.Unlock()
	if free <= 0 {
		return
	}
	cbs, err := w.q.ClaimCallbacks(ctx, free, o.Lease)
	if err != nil && ctx.Err() == nil {
		w.opts.Logger.Warn("claim async callbacks", "err", err)
	}
	for _, cb := range cbs {
		w.mu.Lock()
		w.cbInflight++
		w.mu.Unlock()
		wg.Go(func() {
			defer func() {
				w.mu.Lock()
				w.cbInflight--
				w.mu.Unlock()
			}()
			w.callback(ctx, cb)
		})
	}
}

// callback posts one result to its callback URL and records the outcome.
func (w *Worker) callback(ctx context.Context, cb Callback) {
	o := w.opts.Callbacks
	out := CallbackOutcome{Delivered: true}
	if err := w.post(ctx, cb); err != nil {
		out = CallbackOutcome{Error: fmt.Sprintf("attempt %d: %v", cb.Attempt, err)}
		if cb.Attempt < o.MaxAttempts && !notAllowed(err) {
			out.Retry = w.opts.Clock.Now().Add(Backoff(cb.Attempt, o.BaseDelay, o.MaxDelay))
		}
		w.opts.Logger.Debug("async callback failed", "id", cb.ID, "attempt", cb.Attempt, "err", err, "retry_at", out.Retry)
	}
	fin, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if err := w.q.SettleCallback(fin, cb.ID, cb.LeaseToken, out); err != nil {
		w.opts.Logger.Warn("record async callback attempt; it is made again when its lease expires", "id", cb.ID, "err", err)
	}
}

type notAllowedError struct{ error }

func notAllowed(err error) bool {
	_, ok := err.(notAllowedError)
	return ok
}

// post sends the signed result; nil when the receiver answered 2xx.
func (w *Worker) post(ctx context.Context, cb Callback) error {
	o := w.opts.Callbacks
	if err := CallbackAllowed(o.AllowedHosts, cb.URL); err != nil {
		return notAllowedError{err} // the allow-list changed since it was submitted
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cb.URL, bytes.NewReader(cb.Result.Body))
	if err != nil {
		return notAllowedError{err}
	}
	ct := cb.Result.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("User-Agent", "ebb-async-callback")
	req.Header.Set(HeaderID, cb.ID)
	req.Header.Set(HeaderStatus, strconv.Itoa(cb.Result.Status))
	req.Header.Set(HeaderSignature, Sign(o.Secret, w.opts.Clock.Now(), cb.ID, cb.Result.Status, cb.Result.Body))
	if cb.Result.HeaderLength > 0 {
		req.Header.Set("Inference-Header-Content-Length", strconv.FormatInt(cb.Result.HeaderLength, 10))
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the receiver answered %s", resp.Status)
	}
	return nil
}
