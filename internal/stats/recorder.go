// Package stats measures request load for the autoscaler. A Recorder counts
// requests on the gateway's hot path and turns them into periodic Samples of
// time-weighted concurrency; a Window keeps recent Samples and averages them
// over the autoscaler's stable and panic windows.
//
// Nothing in this package reads the clock: every method takes the time it
// should act at, so tests and replays drive it with explicit times.
package stats

import (
	"sync"
	"time"
)

// Sample is the load a Recorder saw over one interval ending at At.
type Sample struct {
	// At is the end of the interval.
	At time.Time
	// Concurrency is the time-weighted average number of requests in flight
	// during the interval.
	Concurrency float64
	// Requests counts requests that began during the interval.
	Requests int
}

// Active reports whether the sample saw any load.
func (s Sample) Active() bool { return s.Requests > 0 || s.Concurrency > 0 }

// Recorder counts the requests of one deployment. Its zero value is ready to
// use and it is safe for concurrent use. Begin and End are meant for the
// request path: each takes a short mutex and does a few arithmetic steps.
//
// Times passed to a Recorder should not go backwards; a time earlier than
// one already seen is treated as that later time.
type Recorder struct {
	mu sync.Mutex
	// inFlight is the number of requests begun and not yet ended.
	inFlight int
	// last is the time of the latest event (Begin, End or Sample); the
	// integral is accumulated up to it.
	last time.Time
	// start is the beginning of the current sample interval.
	start time.Time
	// area is the integral of inFlight over [start, last], in
	// request-seconds.
	area float64
	// arrivals counts Begin calls since start.
	arrivals int
}

// Begin records that a request arrived at now. Every Begin must be matched
// by one End. The gateway begins a request once its body is in (a body
// trickling in is no load for the autoscaler); requests held while a
// deployment is cold count from then.
func (r *Recorder) Begin(now time.Time) {
	r.mu.Lock()
	r.advanceLocked(now)
	r.inFlight++
	r.arrivals++
	r.mu.Unlock()
}

// End records that a request finished at now. An End without a matching
// Begin is ignored.
func (r *Recorder) End(now time.Time) {
	r.mu.Lock()
	r.advanceLocked(now)
	if r.inFlight > 0 {
		r.inFlight--
	}
	r.mu.Unlock()
}

// InFlight returns the number of requests begun and not yet ended.
func (r *Recorder) InFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inFlight
}

// Sample returns the load since the previous Sample (or since the first
// event, for the first call) and starts a new interval at now. A request in
// flight across several intervals counts in each. When the interval is empty
// (now is not after its start) Concurrency is the current in-flight count.
func (r *Recorder) Sample(now time.Time) Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advanceLocked(now)
	s := Sample{At: r.last, Requests: r.arrivals}
	if elapsed := r.last.Sub(r.start).Seconds(); elapsed > 0 {
		s.Concurrency = r.area / elapsed
	} else {
		s.Concurrency = float64(r.inFlight)
	}
	r.start = r.last
	r.area = 0
	r.arrivals = 0
	return s
}

// advanceLocked accumulates the in-flight integral up to now.
func (r *Recorder) advanceLocked(now time.Time) {
	if r.last.IsZero() {
		r.last, r.start = now, now
		return
	}
	if !now.After(r.last) {
		return
	}
	r.area += float64(r.inFlight) * now.Sub(r.last).Seconds()
	r.last = now
}
