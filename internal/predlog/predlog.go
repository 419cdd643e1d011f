// Package predlog logs a sampled share of each deployment's predictions
// (inputs, outputs, model version, tenant, trace id) to files and S3, for
// training-serving skew analysis and label joins, without ever slowing or
// growing the request path.
//
// Logger.Log never blocks. It decides first whether the request is
// sampled: per deployment, a ratio (SetSampling), decided by a hash of the
// request id, so a replay of the same requests samples the same ones. An
// unsampled Log costs a map lookup and no allocation. A sampled record is
// copied (one allocation for its two payloads) into a queue bounded twice:
// by Options.MaxRecords and by Options.MaxBytes, both counting the records
// queued and those the sink is writing, so memory stays under MaxBytes of
// payload plus a fixed MaxRecords of headers whatever the sink does. A
// record that does not fit is dropped and counted in
// ebb_predlog_records_dropped_total{reason="queue_full"} (too_large for a
// record over Options.MaxRecordBytes on its own): under backpressure the
// log loses records, never the service its memory (kserve#6167 grew to
// OOM).
//
// Run drains the queue into a Sink from one goroutine until its context
// ends, then writes what is left and closes the sink. FileSink writes
// rotated JSONL or Parquet parts, each renamed into place when complete;
// Uploader sends complete parts to S3, and PruneParts bounds the parts
// kept when nothing uploads them. Tee hands the same records to several
// sinks (the file log and, beside it, the drift monitor). Nothing here
// starts a goroutine by itself.
//
// Payloads are the raw bytes the caller already has (the OIP v2 request
// and response bodies), not decoded tensors: decoding would cost the
// request path, the bytes are exactly what the model saw and answered,
// and readers (pandas, DuckDB, Spark) parse JSON columns themselves.
package predlog

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"k8s.io/utils/clock"
)

// Record is one prediction.
type Record struct {
	Time         time.Time
	Deployment   string
	ModelVersion string
	Tenant       string
	TraceID      string
	RequestID    string
	// Inputs and Outputs are the request and response bodies as the
	// caller has them (OIP v2 JSON, or whatever the route speaks).
	Inputs  []byte
	Outputs []byte
	// Status is the response's HTTP status.
	Status  int
	Latency time.Duration
}

// recordOverhead approximates a queued record's fixed memory.
const recordOverhead = 160

// Size is the memory a queued record accounts for: its payloads, its
// strings and a fixed overhead.
func (r *Record) Size() int {
	return recordOverhead + len(r.Inputs) + len(r.Outputs) + len(r.Deployment) + len(r.ModelVersion) +
		len(r.Tenant) + len(r.TraceID) + len(r.RequestID)
}

// Sink stores records. Logger.Run calls it from one goroutine.
type Sink interface {
	// Write stores recs in order. The records belong to the sink only
	// until Write returns.
	Write(recs []Record) error
	// Tick is called every Options.TickInterval, so a sink can close a
	// part by age while no record arrives.
	Tick(now time.Time) error
	// Close flushes and closes the sink; Run calls it last.
	Close() error
}

// Options bound a Logger; zero values take the defaults.
type Options struct {
	// MaxRecords is the most records queued or being written; default
	// 10000.
	MaxRecords int
	// MaxBytes is the most Record.Size bytes queued or being written;
	// default 64 MiB.
	MaxBytes int64
	// MaxRecordBytes is the largest record kept; default 1 MiB.
	MaxRecordBytes int
	// DefaultRatio is the sampling ratio of a deployment SetSampling does
	// not name; default 0 (not logged).
	DefaultRatio float64
	// TickInterval is how often Run calls Sink.Tick; default 1s.
	TickInterval time.Duration
	// Clock drives Run's ticks; default the real clock.
	Clock clock.WithTicker
	// Metrics, when set, counts written, dropped and bytes.
	Metrics *Metrics
	// Log receives sink errors; default slog.Default().
	Log *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.MaxRecords <= 0 {
		o.MaxRecords = 10000
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 20
	}
	if o.MaxRecordBytes <= 0 {
		o.MaxRecordBytes = 1 << 20
	}
	if o.TickInterval <= 0 {
		o.TickInterval = time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o
}

// Logger queues sampled records for a Sink. Log is safe for concurrent
// use; Run must run (once) for records to reach the sink.
type Logger struct {
	opts   Options
	sink   Sink
	ratios atomic.Pointer[map[string]float64]
	wake   chan struct{}
	closed atomic.Bool

	// Admission: records and bytes queued or being written.
	records atomic.Int64
	bytes   atomic.Int64

	// mu guards queue.
	mu    sync.Mutex
	queue []Record
}

// New returns a Logger that writes to sink. It starts nothing; call Run.
func New(sink Sink, opts Options) *Logger {
	opts = opts.withDefaults()
	return &Logger{opts: opts, sink: sink, wake: make(chan struct{}, 1)}
}

// SetSampling replaces the per-deployment sampling ratios (each in
// [0, 1]; a deployment not named takes Options.DefaultRatio). The map is
// copied.
func (l *Logger) SetSampling(ratios map[string]float64) {
	m := make(map[string]float64, len(ratios))
	for k, v := range ratios {
		m[k] = min(max(v, 0), 1)
	}
	l.ratios.Store(&m)
}

// Sampled reports whether Log would keep a record of deployment's request
// requestID, so a caller can skip gathering what an unsampled record
// needs. The decision is a hash of requestID against the ratio: the same
// id always gets the same answer at the same ratio. An empty requestID is
// decided at random.
func (l *Logger) Sampled(deployment, requestID string) bool {
	ratio := l.opts.DefaultRatio
	if m := l.ratios.Load(); m != nil {
		if r, ok := (*m)[deployment]; ok {
			ratio = r
		}
	}
	switch {
	case ratio <= 0:
		return false
	case ratio >= 1:
		return true
	}
	var h uint64
	if requestID == "" {
		h = rand.Uint64()
	} else {
		h = xxhash.Sum64String(requestID)
	}
	// h/2^64 < ratio, without overflow: compare the top 53 bits.
	return float64(h>>11) < ratio*(1<<53)
}

// Log queues rec if its request is sampled and it fits, and returns at
// once either way. It copies rec's Inputs and Outputs, so the caller may
// reuse them when Log returns; its strings must not change afterwards (Go
// strings made the usual way never do).
func (l *Logger) Log(rec Record) {
	if !l.Sampled(rec.Deployment, rec.RequestID) {
		return
	}
	if l.closed.Load() {
		l.opts.Metrics.dropped(rec.Deployment, ReasonClosed)
		return
	}
	size := rec.Size()
	if size > l.opts.MaxRecordBytes {
		l.opts.Metrics.dropped(rec.Deployment, ReasonTooLarge)
		return
	}
	if !reserve(&l.records, 1, int64(l.opts.MaxRecords)) {
		l.opts.Metrics.dropped(rec.Deployment, ReasonQueueFull)
		return
	}
	if !reserve(&l.bytes, int64(size), l.opts.MaxBytes) {
		l.records.Add(-1)
		l.opts.Metrics.dropped(rec.Deployment, ReasonQueueFull)
		return
	}
	if l.closed.Load() { // Run ended after the check above
		l.records.Add(-1)
		l.bytes.Add(-int64(size))
		l.opts.Metrics.dropped(rec.Deployment, ReasonClosed)
		return
	}
	buf := make([]byte, len(rec.Inputs)+len(rec.Outputs))
	k := copy(buf, rec.Inputs)
	copy(buf[k:], rec.Outputs)
	rec.Inputs, rec.Outputs = buf[:k:k], buf[k:]
	l.mu.Lock()
	l.queue = append(l.queue, rec)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// reserve adds n to c unless that would pass limit.
func reserve(c *atomic.Int64, n, limit int64) bool {
	for {
		v := c.Load()
		if v+n > limit {
			return false
		}
		if c.CompareAndSwap(v, v+n) {
			return true
		}
	}
}

// Queued returns the records and bytes queued or being written.
func (l *Logger) Queued() (records int, bytes int64) {
	return int(l.records.Load()), l.bytes.Load()
}

// Run drains the queue into the sink until ctx ends; then it refuses new
// records (counted as dropped, reason closed), writes what is queued,
// closes the sink and returns the close error. A failed write drops its
// records (reason sink_error) and is logged; Run goes on.
func (l *Logger) Run(ctx context.Context) error {
	t := l.opts.Clock.NewTicker(l.opts.TickInterval)
	defer t.Stop()
	var spare []Record
	for {
		select {
		case <-ctx.Done():
			l.closed.Store(true)
			// A Log that got in before closed was set has reserved its
			// place: wait for its record too.
			for l.drain(&spare) || l.records.Load() > 0 {
				runtime.Gosched()
			}
			return l.sink.Close()
		case <-l.wake:
			l.drain(&spare)
		case now := <-t.C():
			if err := l.sink.Tick(now); err != nil {
				l.opts.Log.Warn("prediction log: rotating a part failed", "error", err)
			}
		}
	}
}

// drain writes the queue to the sink and reports whether it held any
// record. spare is the slice the queue swaps with, so steady state does
// not allocate.
func (l *Logger) drain(spare *[]Record) bool {
	l.mu.Lock()
	batch := l.queue
	l.queue = (*spare)[:0]
	l.mu.Unlock()
	if len(batch) == 0 {
		*spare = batch
		return false
	}
	var size int64
	for i := range batch {
		size += int64(batch[i].Size())
	}
	err := l.sink.Write(batch)
	if err != nil {
		l.opts.Log.Warn("prediction log: writing records failed; they are dropped", "records", len(batch), "error", err)
	}
	for i := range batch {
		if err != nil {
			l.opts.Metrics.dropped(batch[i].Deployment, ReasonSinkError)
		} else {
			l.opts.Metrics.written(batch[i].Deployment, batch[i].Size())
		}
	}
	clear(batch) // let the payloads go
	l.records.Add(-int64(len(batch)))
	l.bytes.Add(-size)
	*spare = batch
	return true
}
