package replicacmd

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ebb-ml/ebb/internal/artifact"
	"github.com/ebb-ml/ebb/internal/serving/core"
)

// Fetch retries.
//
// A replica that cannot fetch its model exits, and the control loop counts
// that as a failed start: three in a row fail the deployment, and the
// requests held for it get 503 at once. The loop restarts a failed replica
// within a second, so without retries here an artifact store that is down
// for a few seconds — S3 restarting, a network blip — fails every request
// waiting on a cold start. So a fetch that fails for a reason that passes by
// itself (the store unreachable, a connection cut, a timeout, an S3 5xx,
// 429 or 408) is retried with backoff for --fetch-retry-for, by default as
// long as ebb up holds a request (--hold-timeout's default). A fetch that
// cannot succeed by waiting — the artifact missing, its bytes corrupt,
// access denied, a bad URI — fails at once, as before (artifact.Transient
// tells them apart; an s3:// fetch's process passes on which it was, see
// package fetcher).

// defaultFetchRetryFor is --fetch-retry-for's default.
const defaultFetchRetryFor = time.Minute

// Bounds of the wait between fetch attempts.
const (
	fetchBackoffMin = 250 * time.Millisecond
	fetchBackoffMax = 2 * time.Second
)

// fetchBackoff returns the wait after the n-th failed attempt (from 1):
// fetchBackoffMin, doubling up to fetchBackoffMax.
func fetchBackoff(n int) time.Duration {
	d := fetchBackoffMin << min(max(n-1, 0), 16)
	if d > fetchBackoffMax || d <= 0 {
		return fetchBackoffMax
	}
	return d
}

// fetchRetrier retries a fetch while its errors are transient, within a
// time budget. now and sleep are the clock; nil means the real one.
type fetchRetrier struct {
	budget time.Duration
	log    *slog.Logger
	now    func() time.Time
	// sleep waits d, or returns ctx's error when ctx ends first.
	sleep func(ctx context.Context, d time.Duration) error
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryFetch runs attempt until it succeeds, fails for good, or the next
// try would start after budget.
func retryFetch(ctx context.Context, log *slog.Logger, uri string, budget time.Duration, attempt func() (fetched, error)) (fetched, error) {
	return fetchRetrier{budget: budget, log: log}.do(ctx, uri, attempt)
}

func (r fetchRetrier) do(ctx context.Context, uri string, attempt func() (fetched, error)) (fetched, error) {
	now, sleep := r.now, r.sleep
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	log := r.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	began := now()
	for n := 1; ; n++ {
		got, err := attempt()
		if err == nil && n > 1 && got.info != nil {
			// The cold start waited for the retries too.
			got.info.Took = core.D(now().Sub(began))
		}
		if err == nil || ctx.Err() != nil || !artifact.Transient(err) {
			return got, err
		}
		wait := fetchBackoff(n)
		spent := now().Sub(began)
		if spent+wait > r.budget {
			if n == 1 {
				return fetched{}, err
			}
			return fetched{}, fmt.Errorf("%w (tried %d times in %s: the artifact store is unreachable or failing; check it, or give --fetch-retry-for more time)",
				err, n, spent.Round(time.Millisecond))
		}
		log.Warn("model fetch failed; retrying", "model", uri, "attempt", n, "retryIn", wait.String(), "error", err.Error())
		if serr := sleep(ctx, wait); serr != nil {
			return fetched{}, fmt.Errorf("%w (retries cut short: %v)", err, serr)
		}
	}
}
