package control

// Crash loops.
//
// A replica that fails to start, or dies within earlyCrash of becoming
// ready, is a failed start. One failed start does not fail the deployment:
// the cause may be passing (a replica killed, the artifact store down for a
// moment), so the loop restarts the replica after a backoff and the requests
// waiting for the deployment stay held. The deployment is failed — its route
// carries the failure, so held and new requests fail fast, and status.failure
// says why — only once CrashLimit starts have failed in a row within
// CrashWindow (crashLooping decides). A replica that has stayed ready for
// earlyCrash ends the run of failures; a new model (generation) starts a
// fresh one. A failed deployment keeps restarting at the backoff, which grows
// with the run, and is served again as soon as a replica becomes ready.

import (
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Defaults for Options.CrashLimit and Options.CrashWindow.
const (
	DefaultCrashLimit  = 3
	DefaultCrashWindow = 10 * time.Minute
)

// crashLooping reports whether a deployment whose consecutive failed starts
// happened at failures (oldest first) is failed at now: at least limit of
// them within window before now. It also returns how many counted.
func crashLooping(failures []time.Time, now time.Time, limit int, window time.Duration) (bool, int) {
	n := 0
	for _, at := range failures {
		if !at.After(now) && now.Sub(at) <= window {
			n++
		}
	}
	return n >= limit, n
}

// failed records a failed start, decides whether the deployment is failed,
// and backs off before the next start.
func (c *Controller) failed(d *deployment, msg string) {
	now := c.opts.Clock.Now()
	if d.hasStable(now) {
		d.clearFailures() // the run ended: a replica serves steadily
	}
	d.failures++
	d.failTimes = append(d.failTimes, now)
	if over := len(d.failTimes) - max(c.opts.CrashLimit, 1); over > 0 {
		d.failTimes = d.failTimes[over:] // only the last CrashLimit matter
	}
	d.lastFailure = msg
	if loop, n := crashLooping(d.failTimes, now, c.opts.CrashLimit, c.opts.CrashWindow); loop {
		d.failure = fmt.Sprintf("%d starts failed in a row; the last: %s", n, msg)
	}
	backoff := c.opts.MinBackoff << min(d.failures-1, 16)
	if backoff > c.opts.MaxBackoff || backoff <= 0 {
		backoff = c.opts.MaxBackoff
	}
	d.nextStart = now.Add(backoff)
	c.failedEvent(d.name, msg, backoff)
	c.publish(d)
}

// crashed handles the unexpected exit of r, which had become ready or was
// recovered: an early one is a failed start, a later one ends the run of
// failures.
func (c *Controller) crashed(d *deployment, r *replicaRec, ex replica.Exit) {
	up := time.Duration(-1)
	if !r.readyAt.IsZero() {
		up = c.opts.Clock.Since(r.readyAt)
	}
	if up >= earlyCrash {
		d.clearFailures()
		return
	}
	msg := "replica exited unexpectedly"
	if up >= 0 {
		msg += fmt.Sprintf(" %s after it was ready", up.Round(time.Millisecond))
	}
	if ex.Err != nil {
		msg += " (" + ex.Err.Error() + ")"
	}
	c.failed(d, msg)
}

// hasStable reports whether a replica of d has served for earlyCrash.
func (d *deployment) hasStable(now time.Time) bool {
	for _, r := range d.replicas {
		if r.state == serving.ReplicaReady && !r.stopping && !r.readyAt.IsZero() && now.Sub(r.readyAt) >= earlyCrash {
			return true
		}
	}
	return false
}

// clearFailures ends a run of failed starts.
func (d *deployment) clearFailures() {
	d.failures, d.failTimes, d.lastFailure = 0, nil, ""
}

// restartingReason is the status reason of a deployment that has no ready
// replica and restarts after failures that have not failed it (yet).
func (d *deployment) restartingReason(o Options) string {
	if d.failure != "" || d.lastFailure == "" {
		return ""
	}
	return fmt.Sprintf("restarting after %d failed start(s) in a row, holding requests until %d fail within %s; the last: %s",
		d.failures, o.CrashLimit, o.CrashWindow, d.lastFailure)
}
