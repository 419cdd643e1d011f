package stats

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func TestRecorderSample(t *testing.T) {
	// event is a Begin (+1) or End (-1) at a time in seconds from t0.
	type event struct {
		sec   float64
		delta int
	}
	tests := []struct {
		name     string
		events   []event
		samples  []float64 // times of the Sample calls after t0, the first at 0
		want     []Sample
		inFlight int
	}{
		{
			name:    "idle",
			samples: []float64{0, 1, 2},
			want:    []Sample{{At: at(0)}, {At: at(1)}, {At: at(2)}},
		},
		{
			name:    "one request for half a second",
			events:  []event{{0.25, +1}, {0.75, -1}},
			samples: []float64{0, 1, 2},
			want: []Sample{
				{At: at(0)},
				{At: at(1), Concurrency: 0.5, Requests: 1},
				{At: at(2)},
			},
		},
		{
			name:    "request in flight across three samples counts in each",
			events:  []event{{0.5, +1}, {2.5, -1}},
			samples: []float64{0, 1, 2, 3},
			want: []Sample{
				{At: at(0)},
				{At: at(1), Concurrency: 0.5, Requests: 1},
				{At: at(2), Concurrency: 1},
				{At: at(3), Concurrency: 0.5},
			},
		},
		{
			name:     "overlapping requests",
			events:   []event{{0, +1}, {0, +1}, {0.5, +1}, {1, -1}},
			samples:  []float64{0, 1, 2},
			want:     []Sample{{At: at(0), Concurrency: 2, Requests: 2}, {At: at(1), Concurrency: 2.5, Requests: 1}, {At: at(2), Concurrency: 2}},
			inFlight: 2,
		},
		{
			name:     "uneven sample intervals",
			events:   []event{{0, +1}},
			samples:  []float64{0, 0.5, 3},
			want:     []Sample{{At: at(0), Concurrency: 1, Requests: 1}, {At: at(0.5), Concurrency: 1}, {At: at(3), Concurrency: 1}},
			inFlight: 1,
		},
		{
			name:   "unmatched End is ignored",
			events: []event{{0.5, -1}, {0.5, +1}},
			samples: []float64{
				0, 1,
			},
			want:     []Sample{{At: at(0)}, {At: at(1), Concurrency: 0.5, Requests: 1}},
			inFlight: 1,
		},
		{
			name:     "first sample covers the time since the first event",
			events:   []event{{-2, +1}, {-1, +1}},
			samples:  []float64{0},
			want:     []Sample{{At: at(0), Concurrency: 1.5, Requests: 2}},
			inFlight: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Recorder
			var got []Sample
			ev := tt.events
			for _, s := range tt.samples {
				for len(ev) > 0 && ev[0].sec <= s {
					if ev[0].delta > 0 {
						r.Begin(at(ev[0].sec))
					} else {
						r.End(at(ev[0].sec))
					}
					ev = ev[1:]
				}
				got = append(got, r.Sample(at(s)))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("samples (-want +got):\n%s", diff)
			}
			if r.InFlight() != tt.inFlight {
				t.Errorf("InFlight() = %d, want %d", r.InFlight(), tt.inFlight)
			}
		})
	}
}

func TestRecorderTimeGoingBackwards(t *testing.T) {
	var r Recorder
	r.Sample(at(0))
	r.Begin(at(1))
	r.End(at(0.5)) // earlier than the Begin: treated as at(1)
	got := r.Sample(at(2))
	want := Sample{At: at(2), Concurrency: 0, Requests: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sample (-want +got):\n%s", diff)
	}
}

func TestRecorderConcurrent(t *testing.T) {
	var r Recorder
	var wg sync.WaitGroup
	const workers, each = 8, 1000
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				now := at(float64(w*each + i))
				r.Begin(now)
				r.End(now)
			}
		}()
	}
	wg.Wait()
	if got := r.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d after matched Begin/End, want 0", got)
	}
	if got := r.Sample(at(workers * each)).Requests; got != workers*each {
		t.Errorf("Requests = %d, want %d", got, workers*each)
	}
}

func TestWindowAverage(t *testing.T) {
	w := NewWindow(10 * time.Second)
	for i := 1; i <= 20; i++ {
		w.Add(Sample{At: at(float64(i)), Concurrency: float64(i)})
	}
	tests := []struct {
		name   string
		now    float64
		d      time.Duration
		want   float64
		wantOK bool
	}{
		{"last sample only", 20, time.Second, 20, true},
		{"last three", 20, 3 * time.Second, 19, true},
		{"excludes the lower bound", 20, 2 * time.Second, 19.5, true},
		{"ignores samples after now", 18, 2 * time.Second, 17.5, true},
		{"between samples", 19.5, time.Second, 19, true},
		{"all kept samples", 20, time.Hour, 15.5, true}, // 11..20; 10 is exactly maxAge old
		{"nothing in range", 30, 5 * time.Second, 0, false},
		{"before pruned range", 5, 5 * time.Second, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := w.Average(at(tt.now), tt.d)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Average(%v, %v) = %v, %v; want %v, %v", tt.now, tt.d, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestWindowBoundedAndOrdered(t *testing.T) {
	w := NewWindow(5 * time.Second)
	for i := range 3600 {
		w.Add(Sample{At: at(float64(i))})
	}
	// Samples at 3595 < t <= 3599 survive: the one exactly maxAge old goes.
	if got := w.Len(); got != 5 {
		t.Errorf("Len() = %d after an hour of samples with maxAge 5s, want 5", got)
	}

	w = NewWindow(time.Minute)
	w.Add(Sample{At: at(3), Concurrency: 3})
	w.Add(Sample{At: at(1), Concurrency: 1})
	w.Add(Sample{At: at(2), Concurrency: 2})
	w.Add(Sample{At: at(2), Concurrency: 4}) // replaces
	var got []float64
	for s := 1; s <= 3; s++ {
		avg, _ := w.Average(at(float64(s)), time.Second)
		got = append(got, avg)
	}
	if diff := cmp.Diff([]float64{1, 4, 3}, got); diff != "" {
		t.Errorf("per-second averages after out-of-order adds (-want +got):\n%s", diff)
	}
	if w.Len() != 3 {
		t.Errorf("Len() = %d, want 3", w.Len())
	}
}

func TestWindowLastActive(t *testing.T) {
	w := NewWindow(3 * time.Second)
	if got := w.LastActive(); !got.IsZero() {
		t.Errorf("LastActive() of empty window = %v, want zero", got)
	}
	w.Add(Sample{At: at(1)})
	if got := w.LastActive(); !got.IsZero() {
		t.Errorf("LastActive() after idle sample = %v, want zero", got)
	}
	w.Add(Sample{At: at(2), Requests: 1})
	w.Add(Sample{At: at(3), Concurrency: 0.25})
	for i := 4; i < 20; i++ {
		w.Add(Sample{At: at(float64(i))})
	}
	// The active samples have aged out of the window but are remembered.
	if got := w.LastActive(); !got.Equal(at(3)) {
		t.Errorf("LastActive() = %v, want %v", got, at(3))
	}
	w.Add(Sample{At: at(2.5), Requests: 1}) // late, older than lastActive
	if got := w.LastActive(); !got.Equal(at(3)) {
		t.Errorf("LastActive() after older active sample = %v, want %v", got, at(3))
	}
}
