package stats

import (
	"sort"
	"sync"
	"time"
)

// Window keeps the recent Samples of one deployment, those no older than its
// maximum age measured from the newest sample. It is safe for concurrent use.
type Window struct {
	maxAge time.Duration

	mu sync.Mutex
	// samples are ordered by at, oldest first.
	samples []sample
	// lastActive is the newest At of an active sample ever added; it
	// survives pruning.
	lastActive time.Time
}

// sample is a Sample as a Window keeps it, without a pointer (a
// time.Time holds one, its location): the garbage collector then skips
// the windows, one per deployment, thousands in a big instance.
type sample struct {
	at          int64 // Sample.At, Unix nanoseconds
	concurrency float64
}

// NewWindow returns an empty Window that keeps samples for maxAge. A maxAge
// of zero or less keeps only the newest sample.
func NewWindow(maxAge time.Duration) *Window {
	return &Window{maxAge: maxAge}
}

// SetMaxAge changes how long samples are kept; older ones go with the next
// Add.
func (w *Window) SetMaxAge(maxAge time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maxAge = maxAge
}

// Add inserts s, keeping samples ordered by time, and drops samples older
// than the maximum age. A sample with the same At as one already held
// replaces it.
func (w *Window) Add(s Sample) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.Active() && s.At.After(w.lastActive) {
		w.lastActive = s.At
	}
	at := s.At.UnixNano()
	k := sample{at: at, concurrency: s.Concurrency}
	i := sort.Search(len(w.samples), func(i int) bool { return w.samples[i].at >= at })
	switch {
	case i < len(w.samples) && w.samples[i].at == at:
		w.samples[i] = k
	case i == len(w.samples):
		w.samples = append(w.samples, k)
	default:
		w.samples = append(w.samples, sample{})
		copy(w.samples[i+1:], w.samples[i:])
		w.samples[i] = k
	}
	w.pruneLocked()
}

// pruneLocked drops samples older than maxAge before the newest one.
func (w *Window) pruneLocked() {
	cut := w.samples[len(w.samples)-1].at - int64(w.maxAge)
	n := 0
	for n < len(w.samples)-1 && w.samples[n].at <= cut {
		n++
	}
	if n > 0 {
		// Shift in place so the backing array is reused and memory stays
		// bounded by the number of samples in maxAge.
		w.samples = append(w.samples[:0], w.samples[n:]...)
	}
}

// Average returns the mean Concurrency of the samples whose At lies in
// (now-d, now], and false when there is none. Samples are weighted equally,
// so they should be taken at a steady interval.
func (w *Window) Average(now time.Time, d time.Duration) (avg float64, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	to, from := now.UnixNano(), now.Add(-d).UnixNano()
	var sum float64
	var n int
	for i := len(w.samples) - 1; i >= 0; i-- {
		at := w.samples[i].at
		if at > to {
			continue
		}
		if at <= from {
			break
		}
		sum += w.samples[i].concurrency
		n++
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

// LastActive returns the newest At of any sample added with Requests > 0 or
// Concurrency > 0, even one since dropped for age; zero if there was none.
func (w *Window) LastActive() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastActive
}

// Len returns the number of samples held.
func (w *Window) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.samples)
}
