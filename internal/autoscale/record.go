package autoscale

import (
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Record is one decision of the autoscaler with everything it was made
// from: the scaling policy in force (a schedule's window already applied
// to its bounds), the pin, the metrics observed and the state of the
// previous decision. Replay makes the same decision from it, so "why did
// it scale?" has an answer that can be checked.
type Record struct {
	// Time is when the decision was taken.
	Time time.Time `json:"time"`
	// Scaling is the policy the decision used: the spec's, with a
	// schedule window's bounds in place of its own.
	Scaling serving.Scaling `json:"scaling"`
	// Pinned is spec.replicas, when the owner pinned the count.
	Pinned *int32 `json:"pinned,omitempty"`
	// Window says which schedule window bounded the decision; empty for
	// none.
	Window  string  `json:"window,omitempty"`
	Metrics Metrics `json:"metrics"`
	// Before is the state of the previous decision.
	Before State `json:"before"`
	// Desired, Panic and Reason are the decision.
	Desired int32  `json:"desired"`
	Panic   bool   `json:"panic,omitempty"`
	Reason  string `json:"reason"`
	// Repeats counts the decisions after this one, until Until, that
	// came out the same (desired, panic and reason) and were folded into
	// it; their own inputs are not kept.
	Repeats int       `json:"repeats,omitempty"`
	Until   time.Time `json:"until,omitzero"`
}

// NewRecord returns the record of decision dec, taken at now under
// scaling (pinned, when set) from m and the previous state before.
func NewRecord(now time.Time, scaling serving.Scaling, pinned *int32, window string, m Metrics, before State, dec Decision) Record {
	r := Record{Time: now, Scaling: scaling, Window: window, Metrics: m, Before: before, Desired: dec.Desired, Panic: dec.Panic, Reason: dec.Reason}
	if pinned != nil {
		n := *pinned
		r.Pinned = &n
	}
	return r
}

// Replay takes r's decision again from its inputs, as Scale does.
func Replay(r Record) Decision {
	spec := serving.Spec{Scaling: r.Scaling, Replicas: r.Pinned}
	return Scale(r.Time, &spec, r.Metrics, r.Before)
}

// Replays reports whether Replay makes r's decision again: its desired
// count, panic and reason (less a schedule window's note, which the
// control loop adds).
func (r Record) Replays() bool {
	d := Replay(r)
	return d.Desired == r.Desired && d.Panic == r.Panic && d.Reason == r.Reason
}

// DefaultHistory is how many records a History keeps by default.
const DefaultHistory = 512

// History keeps a deployment's latest decisions, oldest dropped first.
// A decision that comes out as the one before it (same desired count,
// panic and reason) is folded into it (Record.Repeats), so a steady
// deployment keeps its history of changes. It is safe for concurrent use.
type History struct {
	// mu guards the fields below.
	mu   sync.Mutex
	max  int
	ring []Record
	next int // where the next record goes once ring is full
}

// NewHistory returns a History of at most n records (DefaultHistory when
// n <= 0).
func NewHistory(n int) *History {
	if n <= 0 {
		n = DefaultHistory
	}
	return &History{max: n}
}

// Add records r.
func (h *History) Add(r Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if last := h.lastLocked(); last != nil && last.Desired == r.Desired && last.Panic == r.Panic && last.Reason == r.Reason {
		last.Repeats++
		last.Until = r.Time
		return
	}
	if len(h.ring) < h.max {
		h.ring = append(h.ring, r)
		return
	}
	h.ring[h.next] = r
	h.next = (h.next + 1) % h.max
}

func (h *History) lastLocked() *Record {
	switch {
	case len(h.ring) == 0:
		return nil
	case len(h.ring) < h.max:
		return &h.ring[len(h.ring)-1]
	}
	return &h.ring[(h.next+h.max-1)%h.max]
}

// Records returns the records kept, oldest first.
func (h *History) Records() []Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Record, 0, len(h.ring))
	if len(h.ring) < h.max {
		return append(out, h.ring...)
	}
	out = append(out, h.ring[h.next:]...)
	return append(out, h.ring[:h.next]...)
}
