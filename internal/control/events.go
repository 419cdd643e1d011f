package control

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// maxEvents bounds the events kept per deployment; older ones are dropped.
const maxEvents = 100

// eventLog keeps each deployment's recent events, oldest first, at most
// maxEvents of them: what `ebb describe` shows. The loop goroutine records;
// API handlers read. Its zero value is ready to use.
type eventLog struct {
	// mu guards rings and sink.
	mu    sync.Mutex
	rings map[string]*eventRing
	sink  func(deployment string, ev serving.Event)
}

// eventRing is a fixed-size ring of events.
type eventRing struct {
	buf   []serving.Event // len ≤ maxEvents
	start int             // index of the oldest event once buf is full
}

func (r *eventRing) last() *serving.Event {
	if len(r.buf) == 0 {
		return nil
	}
	if len(r.buf) < maxEvents {
		return &r.buf[len(r.buf)-1]
	}
	return &r.buf[(r.start+maxEvents-1)%maxEvents]
}

func (r *eventRing) add(ev serving.Event) {
	if len(r.buf) < maxEvents {
		r.buf = append(r.buf, ev)
		return
	}
	r.buf[r.start] = ev
	r.start = (r.start + 1) % maxEvents
}

func (r *eventRing) list() []serving.Event {
	out := make([]serving.Event, 0, len(r.buf))
	out = append(out, r.buf[r.start:]...)
	return append(out, r.buf[:r.start]...)
}

// record appends ev to deployment's events, folding it into the latest
// event when that one has the same type, reason and message (Count goes
// up, Time moves on), and hands it to the sink.
func (l *eventLog) record(deployment string, ev serving.Event) {
	l.mu.Lock()
	if l.rings == nil {
		l.rings = map[string]*eventRing{}
	}
	r := l.rings[deployment]
	if r == nil {
		r = &eventRing{}
		l.rings[deployment] = r
	}
	if last := r.last(); last != nil && last.Type == ev.Type && last.Reason == ev.Reason && last.Message == ev.Message {
		last.Count = max(last.Count, 1) + 1
		last.Time = ev.Time
		ev = *last
	} else {
		r.add(ev)
	}
	sink := l.sink
	l.mu.Unlock()
	if sink != nil {
		sink(deployment, ev)
	}
}

func (l *eventLog) list(deployment string) []serving.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.rings[deployment]; r != nil {
		return r.list()
	}
	return []serving.Event{}
}

func (l *eventLog) forget(deployment string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.rings, deployment)
}

// Events returns the deployment's recent events, oldest first (at most 100;
// empty, not an error, for a deployment the loop has not seen). It is safe
// for concurrent use; the error is always nil, for the API's Events
// interface.
func (c *Controller) Events(_ context.Context, deployment string) ([]serving.Event, error) {
	return c.history.list(deployment), nil
}

// OnEvent sets fn to be told every event the loop records, such as to
// post it as a Kubernetes Event. It runs on the loop goroutine and must
// not block. Call it before Run.
func (c *Controller) OnEvent(fn func(deployment string, ev serving.Event)) {
	c.history.mu.Lock()
	defer c.history.mu.Unlock()
	c.history.sink = fn
}

// record records one event of a deployment, stamped with the loop's clock.
// An event of a traffic split's track is the deployment's, its message
// prefixed with the track ("track v4: ").
func (c *Controller) record(deployment, typ, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if parent := serving.ParentOf(deployment); parent != deployment {
		msg = "track " + deployment[len(parent)+len(serving.TrackSep):] + ": " + msg
		deployment = parent
	}
	c.history.record(deployment, serving.Event{
		Time:    c.opts.Clock.Now().UTC(),
		Type:    typ,
		Reason:  reason,
		Message: msg,
	})
}

// The hooks the loop calls where it decides; each records one event.

func (c *Controller) scaledEvent(deployment string, from, to int32, reason string) {
	why := serving.ReasonScaledUp
	if to < from {
		why = serving.ReasonScaledDown
	}
	c.record(deployment, serving.EventNormal, why, "desired replicas %d → %d: %s", from, to, reason)
}

func (c *Controller) startedEvent(deployment, id, endpoint string) {
	c.record(deployment, serving.EventNormal, serving.ReasonReplicaStarted, "replica %s started, serving at %s", id, endpoint)
}

func (c *Controller) readyEvent(deployment string, r *replicaRec) {
	if r.recovered {
		c.record(deployment, serving.EventNormal, serving.ReasonReplicaReady, "replica %s recovered after a restart of ebb", r.h.Spec.ID)
		return
	}
	c.record(deployment, serving.EventNormal, serving.ReasonReplicaReady, "replica %s ready: cold start %s", r.h.Spec.ID, coldStartText(r.phases))
}

func (c *Controller) stoppingEvent(deployment string, r *replicaRec) {
	msg := "stopping replica " + r.h.Spec.ID
	if r.message != "" {
		msg += ": " + r.message
	}
	c.record(deployment, serving.EventNormal, serving.ReasonReplicaStopping, "%s", msg)
}

func (c *Controller) failedEvent(deployment, msg string, backoff time.Duration) {
	c.record(deployment, serving.EventWarning, serving.ReasonReplicaFailed, "%s; next start in %s", msg, backoff)
}

func (c *Controller) exitedEvent(deployment, id string, code int, err error) {
	msg := fmt.Sprintf("replica %s exited unexpectedly (code %d)", id, code)
	if err != nil {
		msg += ": " + err.Error()
	}
	c.record(deployment, serving.EventWarning, serving.ReasonReplicaExited, "%s", msg)
}

func (c *Controller) rolledEvent(deployment, from, to string) {
	c.record(deployment, serving.EventNormal, serving.ReasonRolled, "rolling replicas %s", rollText(from, to))
}

func (c *Controller) resolveFailedEvent(deployment, model string, err error) {
	c.record(deployment, serving.EventWarning, serving.ReasonResolveFailed, "cannot resolve model %s: %v", model, err)
}

// coldStartText summarises phases as "12ms (process_started 2ms,
// model_loaded 9ms, ready 1ms)".
func coldStartText(phases []serving.Phase) string {
	if len(phases) == 0 {
		return "not measured"
	}
	var total time.Duration
	parts := make([]string, len(phases))
	for i, p := range phases {
		total += p.Duration.Duration
		parts[i] = p.Name + " " + roundDuration(p.Duration.Duration).String()
	}
	return fmt.Sprintf("%s (%s)", roundDuration(total), strings.Join(parts, ", "))
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < 10*time.Second:
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

// RecordEvent records an event of deployment that happened outside the
// loop, such as a rollout's step: `ebb describe` shows it, and in a
// cluster it becomes a Kubernetes Event. Safe for concurrent use.
func (c *Controller) RecordEvent(deployment, typ, reason, message string) {
	c.record(deployment, typ, reason, "%s", message)
}
