package traffic

import (
	"fmt"
	"time"
)

// A Meter's buckets travel: the gateways of a cluster each meter the
// requests they serve, export the buckets that completed since their last
// report (Export), and the operator adds them into one Meter per version
// (Merge), whose Snapshot then summarises what all the gateways saw.
// Histograms add exactly, so a Meter that merged the exports of several
// gateways measures what one Meter that saw every request would.

// Bucket is one completed time bucket of a Meter, as Export gives it and
// Merge takes it; it is JSON on the wire (a demand report).
type Bucket struct {
	// Start is when the bucket began, in unix seconds (rounded down for
	// a Meter whose resolution is finer than a second).
	Start int64 `json:"t"`
	// Requests is how many requests completed in the bucket, and Errors
	// how many of them failed.
	Requests uint64 `json:"n"`
	Errors   uint64 `json:"e,omitempty"`
	// Hist is the latency histogram: pairs of a bin and its count, for
	// the bins with a count only, in ascending order of bin. Bins are
	// those of the Meter's log-linear histogram (see binOf); the layout
	// is part of the wire format and must not change without a new field.
	Hist []uint32 `json:"h,omitempty"`
}

// Check reports whether b is a bucket Export could have made: bins in
// range and ascending, counts that add up to Requests, and no more Errors
// than Requests. Merge checks every bucket; a receiver checks them before
// it acts on anything else that came with them.
func (b *Bucket) Check() error {
	if len(b.Hist)%2 != 0 {
		return fmt.Errorf("meter bucket at unix second %d: histogram has an odd number of values (%d): it must be pairs of bin and count", b.Start, len(b.Hist))
	}
	var sum uint64
	prev := -1
	for i := 0; i < len(b.Hist); i += 2 {
		bin, c := int(b.Hist[i]), b.Hist[i+1]
		switch {
		case bin >= histBins:
			return fmt.Errorf("meter bucket at unix second %d: histogram bin %d out of range (0..%d): the sender's histogram layout differs from this one's", b.Start, bin, histBins-1)
		case bin <= prev:
			return fmt.Errorf("meter bucket at unix second %d: histogram bins not in ascending order (%d after %d)", b.Start, bin, prev)
		case c == 0:
			return fmt.Errorf("meter bucket at unix second %d: histogram bin %d has a count of 0: leave empty bins out", b.Start, bin)
		}
		prev = bin
		sum += uint64(c)
	}
	if sum != b.Requests {
		return fmt.Errorf("meter bucket at unix second %d: %d requests but the histogram counts %d", b.Start, b.Requests, sum)
	}
	if b.Errors > b.Requests {
		return fmt.Errorf("meter bucket at unix second %d: %d errors out of %d requests", b.Start, b.Errors, b.Requests)
	}
	return nil
}

// Export returns the buckets of requests that completed from since
// (rounded down to the Meter's resolution) up to the start of now's bucket,
// oldest first, leaving out buckets without a request; and next, the start
// of now's bucket, which is where the following export continues: the
// buckets exported are complete, and no request observed at or after next
// was in them. An interval longer than the Meter's span is cut to the span
// that ends at now; since after now exports nothing and gives next =
// since's bucket, so next never moves backwards.
func (m *Meter) Export(since, now time.Time) (buckets []Bucket, next time.Time) {
	if span := time.Duration(int64(len(m.buckets)) * m.res); since.Before(now.Add(-span)) {
		since = now.Add(-span)
	}
	from, to := m.slot(since), m.slot(now)
	if from >= to {
		return nil, time.Unix(0, max(from, to)*m.res)
	}
	for s := from; s < to; s++ {
		// One bucket at a time, so that Observe waits for at most one.
		m.mu.Lock()
		if b := &m.buckets[m.index(s)]; b.slot == s && b.requests > 0 {
			buckets = append(buckets, b.export(floorDiv(s*m.res, int64(time.Second))))
		}
		m.mu.Unlock()
	}
	return buckets, time.Unix(0, to*m.res)
}

// export returns b as a Bucket that started at unix second start.
func (b *bucket) export(start int64) Bucket {
	n := 0
	for i := b.lo; i <= b.hi; i++ {
		if b.hist[i] != 0 {
			n++
		}
	}
	hist := make([]uint32, 0, 2*n)
	for i := b.lo; i <= b.hi; i++ {
		if c := b.hist[i]; c != 0 {
			hist = append(hist, uint32(i), c)
		}
	}
	return Bucket{Start: start, Requests: b.requests, Errors: b.errors, Hist: hist}
}

// Merge adds buckets (from Export, of this Meter or another) into m: each
// goes into m's bucket that holds its start, which then counts its
// requests, errors and latencies as if m had observed them. A bucket older
// than the span m remembers is ignored, as Observe ignores an old request.
// Merge checks every bucket first (Bucket.Check) and merges none when one
// is invalid.
func (m *Meter) Merge(buckets []Bucket) error {
	for i := range buckets {
		if err := buckets[i].Check(); err != nil {
			return err
		}
	}
	for i := range buckets {
		m.merge(&buckets[i])
	}
	return nil
}

// merge adds one checked bucket into m.
func (m *Meter) merge(in *Bucket) {
	if in.Requests == 0 {
		return
	}
	s := m.slot(time.Unix(in.Start, 0))
	lo, hi := uint16(in.Hist[0]), uint16(in.Hist[len(in.Hist)-2])
	m.mu.Lock()
	defer m.mu.Unlock()
	b := &m.buckets[m.index(s)]
	if b.slot != s {
		if b.slot > s {
			return // the bucket holds newer requests: these are too old
		}
		b.reset(s)
	}
	if b.hist == nil {
		b.hist = new([histBins]uint32)
	}
	if b.requests == 0 || lo < b.lo {
		b.lo = lo
	}
	if b.requests == 0 || hi > b.hi {
		b.hi = hi
	}
	b.requests += in.Requests
	b.errors += in.Errors
	for i := 0; i < len(in.Hist); i += 2 {
		b.hist[in.Hist[i]] += in.Hist[i+1]
	}
}

// floorDiv returns a/b rounded toward minus infinity (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
