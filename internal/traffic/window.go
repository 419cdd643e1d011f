package traffic

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"time"
)

// Defaults of NewMeter.
const (
	// DefaultSpan is how far back a Meter remembers: long enough for a
	// canary interval of up to 15 minutes.
	DefaultSpan = 15 * time.Minute
	// DefaultResolution is the width of one time bucket. Snapshot rounds
	// its start down to a bucket, so it may count up to this much more than
	// asked for.
	DefaultResolution = time.Second
)

// The latency histogram is log-linear, as in HdrHistogram: latencies are
// counted in whole microseconds; those under 32 µs each have a bin of their
// own, and every power of two above is split into 16 bins of equal width.
// A bin's width is thus at most 1/16 of its lower edge, and a quantile
// reported as the middle of its bin is within 1/32 (3.125%) of the exact
// quantile, or within 0.5 µs under 32 µs. Latencies of 2^32 µs (about 71
// minutes) or more are counted in the last bin.
const (
	subBits    = 4 // 16 bins per power of two
	maxMicros  = 1 << 32
	histBins   = (32-subBits-1)<<subBits + 2<<subBits // 464
	binsPerOct = 1 << subBits
)

// binOf returns the histogram bin of a latency of us microseconds.
func binOf(us uint64) int {
	if us >= maxMicros {
		us = maxMicros - 1
	}
	e := bits.Len64(us) - (subBits + 1)
	if e < 0 {
		e = 0
	}
	return e<<subBits + int(us>>e)
}

// binMiddle returns the middle of bin i in microseconds.
func binMiddle(i int) float64 {
	if i < 2*binsPerOct {
		return float64(i) + 0.5
	}
	e := i>>subBits - 1
	low := uint64(i&(binsPerOct-1)+binsPerOct) << e
	return float64(low) + float64(uint64(1)<<e)/2
}

// Measurement is what a version did over an interval: what the canary
// analysis judges and what a rollout's status shows for each step.
type Measurement struct {
	// Requests is the number of requests that completed.
	Requests int64
	// Errors is how many of them failed (5xx and engine errors).
	Errors int64
	// ErrorRate is Errors / Requests, 0 when there was no request.
	ErrorRate float64
	// P50 and P99 are latency quantiles (nearest rank), within 3.2% of
	// the exact ones; 0 when there was no request.
	P50, P99 time.Duration
}

// measurementJSON is Measurement as JSON writes it, with the quantiles as
// Go durations ("12.5ms") so that people can read them.
type measurementJSON struct {
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	ErrorRate float64 `json:"errorRate"`
	P50       string  `json:"p50"`
	P99       string  `json:"p99"`
}

// MarshalJSON writes m with p50 and p99 as duration strings.
func (m Measurement) MarshalJSON() ([]byte, error) {
	return json.Marshal(measurementJSON{m.Requests, m.Errors, m.ErrorRate, m.P50.String(), m.P99.String()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (m *Measurement) UnmarshalJSON(b []byte) error {
	var j measurementJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*m = Measurement{Requests: j.Requests, Errors: j.Errors, ErrorRate: j.ErrorRate}
	for _, q := range []struct {
		name string
		s    string
		d    *time.Duration
	}{{"p50", j.P50, &m.P50}, {"p99", j.P99, &m.P99}} {
		if q.s == "" {
			continue
		}
		d, err := time.ParseDuration(q.s)
		if err != nil {
			return fmt.Errorf("measurement %s: %q is not a duration such as \"12.5ms\"", q.name, q.s)
		}
		*q.d = d
	}
	return nil
}

// Meter counts the requests of one version and their latencies, in time
// buckets over a bounded span, for Snapshot to summarise over any recent
// interval. It is safe for concurrent use. Memory is bounded: about 40
// bytes per bucket, plus 1.9 KiB for each bucket that saw a request
// (allocated once, then reused as the buckets wrap): at most 1.7 MB for the
// default 15 minutes in 1-second buckets under steady traffic, nearly
// nothing for an idle version.
type Meter struct {
	res int64 // bucket width in nanoseconds

	mu sync.Mutex
	// buckets is a ring: the bucket of time slot t is buckets[t % len].
	buckets []bucket
}

// bucket holds the requests of one time slot.
type bucket struct {
	slot     int64 // the time slot counted; buckets[i] is reused when slot moves on
	requests uint64
	errors   uint64
	lo, hi   uint16 // the range of hist's bins in use, for Snapshot to sum
	hist     *[histBins]uint32
}

// NewMeter returns a Meter that remembers span in buckets of resolution;
// zero or less picks DefaultSpan and DefaultResolution.
func NewMeter(span, resolution time.Duration) *Meter {
	if span <= 0 {
		span = DefaultSpan
	}
	if resolution <= 0 {
		resolution = DefaultResolution
	}
	n := int((span + resolution - 1) / resolution)
	m := &Meter{res: int64(resolution), buckets: make([]bucket, n)}
	for i := range m.buckets {
		m.buckets[i].slot = math.MinInt64
	}
	return m
}

// slot returns the time slot of t.
func (m *Meter) slot(t time.Time) int64 {
	ns := t.UnixNano()
	s := ns / m.res
	if ns < 0 && ns%m.res != 0 {
		s-- // round toward minus infinity
	}
	return s
}

// index returns the ring index of slot s.
func (m *Meter) index(s int64) int {
	i := s % int64(len(m.buckets))
	if i < 0 {
		i += int64(len(m.buckets))
	}
	return int(i)
}

// Observe counts one request that completed at now, took latency, and
// failed or not. It is cheap enough for every request: one short critical
// section and no allocation (but the first time a bucket is used). A
// request older than the span the Meter remembers is ignored.
func (m *Meter) Observe(now time.Time, latency time.Duration, failed bool) {
	s := m.slot(now)
	var us uint64
	if latency > 0 {
		us = uint64(latency / time.Microsecond)
	}
	bin := uint16(binOf(us))
	m.mu.Lock()
	b := &m.buckets[m.index(s)]
	if b.slot != s {
		if b.slot > s {
			m.mu.Unlock() // the bucket holds newer requests: this one is too old
			return
		}
		b.reset(s)
	}
	if b.hist == nil {
		b.hist = new([histBins]uint32)
	}
	b.requests++
	if failed {
		b.errors++
	}
	b.hist[bin]++
	if b.requests == 1 || bin < b.lo {
		b.lo = bin
	}
	if b.requests == 1 || bin > b.hi {
		b.hi = bin
	}
	m.mu.Unlock()
}

// reset empties b for slot s, keeping its histogram's memory.
func (b *bucket) reset(s int64) {
	if b.hist != nil && b.requests > 0 {
		clear(b.hist[b.lo : b.hi+1])
	}
	b.slot, b.requests, b.errors, b.lo, b.hi = s, 0, 0, 0, 0
}

// Snapshot summarises the requests that completed in [since, now]. since is
// rounded down to the Meter's resolution, and an interval longer than the
// Meter's span is cut to the span that ends at now. An empty interval
// (since after now, or no request in it) gives a zero Measurement, which
// callers must read as "no data", never as "no errors".
func (m *Meter) Snapshot(since, now time.Time) Measurement {
	if since.After(now) {
		return Measurement{}
	}
	from, to := m.slot(since), m.slot(now)
	if n := int64(len(m.buckets)); to-from >= n {
		from = to - n + 1
	}
	var hist [histBins]uint64
	var requests, errors uint64
	for s := from; s <= to; s++ {
		// One bucket at a time, so that Observe waits for at most one.
		m.mu.Lock()
		b := &m.buckets[m.index(s)]
		if b.slot == s && b.requests > 0 {
			requests += b.requests
			errors += b.errors
			for i := b.lo; i <= b.hi; i++ {
				hist[i] += uint64(b.hist[i])
			}
		}
		m.mu.Unlock()
	}
	if requests == 0 {
		return Measurement{}
	}
	return Measurement{
		Requests:  int64(requests),
		Errors:    int64(errors),
		ErrorRate: float64(errors) / float64(requests),
		P50:       quantile(&hist, requests, 0.50),
		P99:       quantile(&hist, requests, 0.99),
	}
}

// quantile returns the q-quantile (nearest rank) of the n latencies counted
// in hist: the middle of the bin that holds the ceil(q×n)-th smallest.
func quantile(hist *[histBins]uint64, n uint64, q float64) time.Duration {
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range hist {
		seen += c
		if seen >= rank {
			return time.Duration(binMiddle(i) * float64(time.Microsecond))
		}
	}
	return time.Duration(binMiddle(histBins-1) * float64(time.Microsecond))
}
