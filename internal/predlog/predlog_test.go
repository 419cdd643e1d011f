package predlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// memSink keeps what it is given.
type memSink struct {
	mu      sync.Mutex
	recs    []Record
	ticks   int
	closed  bool
	failing bool
}

func (s *memSink) Write(recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing {
		return errors.New("disk full")
	}
	for _, r := range recs {
		r.Inputs = append([]byte(nil), r.Inputs...)
		r.Outputs = append([]byte(nil), r.Outputs...)
		s.recs = append(s.recs, r)
	}
	return nil
}

func (s *memSink) Tick(time.Time) error { s.mu.Lock(); s.ticks++; s.mu.Unlock(); return nil }
func (s *memSink) Close() error         { s.mu.Lock(); s.closed = true; s.mu.Unlock(); return nil }

func (s *memSink) len() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.recs) }

// blockingSink blocks every Write until release is closed.
type blockingSink struct {
	memSink
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *blockingSink) Write(recs []Record) error {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return s.memSink.Write(recs)
}

func TestSampling(t *testing.T) {
	ids := make([]string, 20000)
	for i := range ids {
		ids[i] = fmt.Sprintf("req-%d", i)
	}
	tests := []struct {
		name       string
		def        float64
		ratios     map[string]float64
		deployment string
		want       float64 // share sampled
	}{
		{"off by default", 0, nil, "d", 0},
		{"default ratio", 0.5, nil, "d", 0.5},
		{"deployment ratio", 0, map[string]float64{"d": 0.1}, "d", 0.1},
		{"deployment ratio beats default", 1, map[string]float64{"d": 0.3}, "d", 0.3},
		{"other deployment takes default", 0.2, map[string]float64{"x": 1}, "d", 0.2},
		{"all", 0, map[string]float64{"d": 1}, "d", 1},
		{"clamped", 0, map[string]float64{"d": 7}, "d", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(&memSink{}, Options{DefaultRatio: tt.def})
			b := New(&memSink{}, Options{DefaultRatio: tt.def})
			if tt.ratios != nil {
				a.SetSampling(tt.ratios)
				b.SetSampling(tt.ratios)
			}
			n := 0
			for _, id := range ids {
				sa := a.Sampled(tt.deployment, id)
				if sa != b.Sampled(tt.deployment, id) {
					t.Fatalf("request %s sampled by one logger and not the other", id)
				}
				if sa {
					n++
				}
			}
			if got := float64(n) / float64(len(ids)); got < tt.want-0.015 || got > tt.want+0.015 {
				t.Errorf("sampled %.3f; want %.3f", got, tt.want)
			}
		})
	}
	// A lower ratio samples a subset of a higher one's requests.
	lo, hi := New(&memSink{}, Options{DefaultRatio: 0.1}), New(&memSink{}, Options{DefaultRatio: 0.4})
	for _, id := range ids {
		if lo.Sampled("d", id) && !hi.Sampled("d", id) {
			t.Fatalf("%s sampled at 0.1 but not at 0.4", id)
		}
	}
}

func TestRunWritesAndCloses(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, 0)
	sink := &memSink{}
	l := New(sink, Options{DefaultRatio: 1, Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	in := []byte(`{"inputs":[]}`)
	for i := range 100 {
		l.Log(Record{Deployment: "d", RequestID: fmt.Sprint(i), Inputs: in, Outputs: []byte(`{}`)})
	}
	in[0] = 'X' // the logger copied it
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	l.Log(Record{Deployment: "d", RequestID: "late"})
	if sink.len() != 100 || !sink.closed {
		t.Fatalf("sink has %d records (closed %v); want 100, closed", sink.len(), sink.closed)
	}
	if got := string(sink.recs[99].Inputs); got != `{"inputs":[]}` {
		t.Errorf("inputs %q; the caller's later change leaked in", got)
	}
	if got := testutil.ToFloat64(m.writtenVec.WithLabelValues("d")); got != 100 {
		t.Errorf("written %v; want 100", got)
	}
	if got := testutil.ToFloat64(m.droppedVec.WithLabelValues("d", ReasonClosed)); got != 1 {
		t.Errorf("dropped closed %v; want 1", got)
	}
	if got, want := testutil.ToFloat64(m.bytesVec.WithLabelValues("d")), float64(100*(recordOverhead+len("d")+len(in)+2)); got < want {
		t.Errorf("bytes written %v; want at least %v", got, want)
	}
	if r, b := l.Queued(); r != 0 || b != 0 {
		t.Errorf("queued %d records, %d bytes after Run; want none", r, b)
	}
}

func TestSinkErrorDrops(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, 0)
	l := New(&memSink{failing: true}, Options{DefaultRatio: 1, Metrics: m, Log: slog.New(slog.DiscardHandler)})
	for range 5 {
		l.Log(Record{Deployment: "d"})
	}
	l.Log(Record{Deployment: "d", Inputs: make([]byte, 2<<20)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	for reason, want := range map[string]float64{ReasonSinkError: 5, ReasonTooLarge: 1, ReasonQueueFull: 0} {
		if got := testutil.ToFloat64(m.droppedVec.WithLabelValues("d", reason)); got != want {
			t.Errorf("dropped %s = %v; want %v", reason, got, want)
		}
	}
}

// TestBackpressure logs from several goroutines while the sink is stuck:
// Log keeps returning at once, the queue stays within its bounds, the heap
// does not grow with what is logged, and every record is either written
// or counted as dropped.
func TestBackpressure(t *testing.T) {
	const (
		maxRecords = 200
		maxBytes   = 256 << 10
		writers    = 4
		perWriter  = 25000
		payload    = 4 << 10 // 400 MiB logged in all
	)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, 0)
	sink := &blockingSink{entered: make(chan struct{}), release: make(chan struct{})}
	l := New(sink, Options{DefaultRatio: 1, MaxRecords: maxRecords, MaxBytes: maxBytes, Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	body := make([]byte, payload)
	var worst atomic.Int64 // the slowest Log, ns
	var overRecords, overBytes atomic.Bool
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				start := time.Now()
				l.Log(Record{Deployment: "d", RequestID: fmt.Sprint(w, "-", i), Inputs: body, Outputs: body[:100]})
				if d := time.Since(start).Nanoseconds(); d > worst.Load() {
					worst.Store(d)
				}
				if r, b := l.Queued(); r > maxRecords {
					overRecords.Store(true)
				} else if b > maxBytes {
					overBytes.Store(true)
				}
			}
		})
	}
	<-sink.entered // the sink holds one batch while the rest is logged
	wg.Wait()

	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 32<<20 {
		t.Errorf("heap grew %d MiB while the sink was stuck; want the queue's bound (%d KiB) and change", grew>>20, maxBytes>>10)
	}
	if overRecords.Load() || overBytes.Load() {
		t.Errorf("queue passed its bounds (records %v, bytes %v)", overRecords.Load(), overBytes.Load())
	}
	// Generous for a loaded 2-core machine: a blocked Log would take as
	// long as the test.
	if w := time.Duration(worst.Load()); w > 200*time.Millisecond {
		t.Errorf("slowest Log took %v while the sink was stuck", w)
	}

	close(sink.release)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	written := testutil.ToFloat64(m.writtenVec.WithLabelValues("d"))
	dropped := testutil.ToFloat64(m.droppedVec.WithLabelValues("d", ReasonQueueFull))
	if int(written) != sink.len() || written+dropped != writers*perWriter {
		t.Errorf("written %v (sink has %d) + dropped %v != logged %d", written, sink.len(), dropped, writers*perWriter)
	}
	if written > maxRecords*2 || dropped == 0 {
		t.Errorf("written %v, dropped %v; want most dropped while the sink was stuck", written, dropped)
	}
}

func TestMetricsLabelCap(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, 2)
	for _, d := range []string{"a", "b", "c", "d", "a"} {
		m.written(d, 10)
	}
	m.droppedN(AllDeployments, ReasonUploadBacklog, 3)
	for label, want := range map[string]float64{"a": 2, "b": 1, OtherDeployment: 2} {
		if got := testutil.ToFloat64(m.writtenVec.WithLabelValues(label)); got != want {
			t.Errorf("written{%s} = %v; want %v", label, got, want)
		}
	}
	if got := testutil.ToFloat64(m.droppedVec.WithLabelValues(AllDeployments, ReasonUploadBacklog)); got != 3 {
		t.Errorf("upload backlog drops %v; want 3", got)
	}
	if n := testutil.CollectAndCount(m.writtenVec); n != 4 {
		t.Errorf("%d written series; want 4 (a, b, (other), and (all) of the backlog drop)", n)
	}
}

func TestUnsampledLogDoesNotAllocate(t *testing.T) {
	l := New(&memSink{}, Options{})
	l.SetSampling(map[string]float64{"d": 0.5})
	in := make([]byte, 1000)
	var unsampled string
	for i := 0; unsampled == ""; i++ {
		if id := fmt.Sprint(i); !l.Sampled("d", id) {
			unsampled = id
		}
	}
	rec := Record{Deployment: "d", RequestID: unsampled, Inputs: in}
	if a := testing.AllocsPerRun(100, func() { l.Log(rec) }); a != 0 {
		t.Errorf("%v allocations per unsampled Log; want 0", a)
	}
}
