// Package reqstats keeps a short, bounded history of what each
// deployment's requests did: request rate, errors and latency percentiles,
// one Sample every Interval, taken as the difference between two reads of
// cumulative counters (a Source, such as the gateway's Prometheus
// metrics). It answers "what did this deployment serve in the last few
// minutes" for the web dashboard without a Prometheus server.
//
// Memory is bounded: the Sampler keeps Keep samples for each deployment
// that saw a request within the last Keep intervals, and no more than
// MaxDeployments of those (the longest idle is dropped first); an idle
// deployment costs only its last counters. A Series fills the intervals
// without requests with zero-rate samples, so that a chart's time axis is
// whole.
//
// Percentiles come from histogram buckets by linear interpolation within
// the bucket, as Prometheus' histogram_quantile does: they are as coarse
// as the buckets.
package reqstats

import (
	"context"
	"math"
	"sync"
	"time"
)

// Totals are one deployment's cumulative counters since its Source began:
// answered requests, those answered with a 5xx, and a cumulative latency
// histogram (Counts[i] requests took at most Bounds[i] seconds; Observed
// counts every request timed, those above the last bound included). In a
// cluster each gateway sends its own with its demand reports
// (operator.RequestReport).
type Totals struct {
	Requests uint64    `json:"requests"`
	Errors   uint64    `json:"errors,omitempty"`
	Bounds   []float64 `json:"bounds,omitempty"`
	Counts   []uint64  `json:"counts,omitempty"`
	Observed uint64    `json:"observed,omitempty"`
}

// Source reads every deployment's Totals.
type Source interface {
	Totals() (map[string]Totals, error)
}

// Sample is what one deployment's requests did over the Interval that
// ended at Time. The percentiles are nil when no request was timed in it.
type Sample struct {
	Time      time.Time `json:"time"`
	Requests  uint64    `json:"requests"`
	Errors    uint64    `json:"errors"`
	Rate      float64   `json:"rate"`      // requests per second
	ErrorRate float64   `json:"errorRate"` // Errors / Requests; 0 without requests
	P50       *float64  `json:"p50Seconds"`
	P90       *float64  `json:"p90Seconds"`
	P99       *float64  `json:"p99Seconds"`
}

// Defaults of Options.
const (
	DefaultInterval       = 5 * time.Second
	DefaultKeep           = 180 // 15 minutes at DefaultInterval
	DefaultMaxDeployments = 1000
)

// Options tune a Sampler; zero fields take the defaults.
type Options struct {
	Interval       time.Duration
	Keep           int
	MaxDeployments int
	// Now is the clock Run samples with; default time.Now.
	Now func() time.Time
	// OnError is told when the Source fails; default: ignored (the
	// sample is skipped).
	OnError func(error)
}

// Sampler keeps the recent Samples of every deployment. It is safe for
// concurrent use; Run takes the samples.
type Sampler struct {
	src  Source
	opts Options

	// mu guards everything below.
	mu    sync.Mutex
	seq   uint64      // samples taken; the latest has seq-1
	ticks []time.Time // ring: the time of sample s is ticks[s % Keep]
	prev  map[string]Totals
	deps  map[string]*ring
}

// ring holds one deployment's samples: slot s % Keep holds sample s when
// seqs[s % Keep] == s+1 (0: never written).
type ring struct {
	seqs    []uint64
	samples []Sample
	last    uint64 // seq of its latest sample with requests
}

// New returns a Sampler over src; call Run to sample.
func New(src Source, opts Options) *Sampler {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	if opts.MaxDeployments <= 0 {
		opts.MaxDeployments = DefaultMaxDeployments
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Sampler{src: src, opts: opts, ticks: make([]time.Time, opts.Keep), deps: map[string]*ring{}}
}

// Interval is how often the Sampler samples.
func (s *Sampler) Interval() time.Duration { return s.opts.Interval }

// Run samples every Interval until ctx ends.
func (s *Sampler) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	s.Sample(s.opts.Now()) // the first read is the baseline
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.Sample(s.opts.Now())
		}
	}
}

// Sample reads the Source and records, for every deployment whose
// counters moved since the previous read, what they did in between, as
// of now. The first read only sets the baseline.
func (s *Sampler) Sample(now time.Time) {
	tot, err := s.src.Totals()
	if err != nil {
		if s.opts.OnError != nil {
			s.opts.OnError(err)
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.prev == nil
	prev := s.prev
	s.prev = tot
	if first {
		return
	}
	var elapsed time.Duration
	if s.seq > 0 {
		elapsed = now.Sub(s.ticks[(s.seq-1)%uint64(s.opts.Keep)])
	}
	if elapsed <= 0 {
		elapsed = s.opts.Interval
	}
	seq := s.seq
	s.seq++
	s.ticks[seq%uint64(s.opts.Keep)] = now
	for name, cur := range tot {
		smp, ok := diff(prev[name], cur)
		if !ok {
			continue
		}
		smp.Time = now
		smp.Rate = float64(smp.Requests) / elapsed.Seconds()
		s.ringLocked(name, seq).put(seq, smp, s.opts.Keep)
	}
	// Forget deployments idle for a whole ring, and those the Source no
	// longer has.
	for name, r := range s.deps {
		if _, ok := tot[name]; !ok || seq-r.last >= uint64(s.opts.Keep) {
			delete(s.deps, name)
		}
	}
}

// ringLocked returns name's ring, making one (and dropping the longest
// idle deployment's when at MaxDeployments).
func (s *Sampler) ringLocked(name string, seq uint64) *ring {
	if r := s.deps[name]; r != nil {
		return r
	}
	if len(s.deps) >= s.opts.MaxDeployments {
		oldest, at := "", uint64(math.MaxUint64)
		for n, r := range s.deps {
			if r.last < at || (r.last == at && n < oldest) {
				oldest, at = n, r.last
			}
		}
		delete(s.deps, oldest)
	}
	r := &ring{seqs: make([]uint64, s.opts.Keep), samples: make([]Sample, s.opts.Keep), last: seq}
	s.deps[name] = r
	return r
}

func (r *ring) put(seq uint64, smp Sample, keep int) {
	i := seq % uint64(keep)
	r.seqs[i], r.samples[i], r.last = seq+1, smp, seq
}

// Series returns deployment's samples of the last Keep intervals, oldest
// first; an interval without requests is a zero sample. It is empty
// before the second read of the Source.
func (s *Sampler) Series(deployment string) []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := uint64(s.opts.Keep)
	from := uint64(0)
	if s.seq > keep {
		from = s.seq - keep
	}
	r := s.deps[deployment]
	out := make([]Sample, 0, s.seq-from)
	for seq := from; seq < s.seq; seq++ {
		i := seq % keep
		if r != nil && r.seqs[i] == seq+1 {
			out = append(out, r.samples[i])
			continue
		}
		out = append(out, Sample{Time: s.ticks[i]})
	}
	return out
}

// diff is what happened between two reads of one deployment's Totals; ok
// is false when nothing did. A counter that went down was reset (its
// source restarted): the new value is all that happened since.
func diff(a, b Totals) (Sample, bool) {
	if b.Requests < a.Requests || b.Observed < a.Observed || len(a.Counts) != len(b.Counts) {
		a = Totals{Counts: make([]uint64, len(b.Counts))}
	}
	smp := Sample{Requests: b.Requests - a.Requests, Errors: sub(b.Errors, a.Errors)}
	if smp.Requests == 0 && b.Observed == a.Observed {
		return Sample{}, false
	}
	if smp.Requests > 0 {
		smp.ErrorRate = float64(smp.Errors) / float64(smp.Requests)
	}
	if n := b.Observed - a.Observed; n > 0 {
		counts := make([]uint64, len(b.Counts))
		for i := range counts {
			counts[i] = sub(b.Counts[i], a.Counts[i])
		}
		smp.P50 = quantile(0.50, b.Bounds, counts, n)
		smp.P90 = quantile(0.90, b.Bounds, counts, n)
		smp.P99 = quantile(0.99, b.Bounds, counts, n)
	}
	return smp, true
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// quantile is the q-quantile of n observations in a cumulative histogram
// (counts[i] observations at most bounds[i]), interpolated linearly within
// its bucket from the bucket's lower bound (0 for the first); above the
// last bound it is the last bound.
func quantile(q float64, bounds []float64, counts []uint64, n uint64) *float64 {
	if n == 0 {
		return nil
	}
	rank := q * float64(n)
	lower, below := 0.0, uint64(0)
	for i, b := range bounds {
		c := counts[i]
		if float64(c) >= rank && c > below {
			v := lower + (b-lower)*(rank-float64(below))/float64(c-below)
			return &v
		}
		lower, below = b, c
	}
	if len(bounds) == 0 {
		return nil
	}
	v := bounds[len(bounds)-1]
	return &v
}
