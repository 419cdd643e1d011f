package traffic

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestBinsCoverEveryMicrosecondOnce(t *testing.T) {
	// Bins are contiguous and ordered: consecutive latencies land in the
	// same or the next bin, and the last latency in the last bin.
	prev := binOf(0)
	if prev != 0 {
		t.Fatalf("binOf(0) = %d, want 0", prev)
	}
	for _, start := range []uint64{0, 1 << 10, 1 << 20, maxMicros - 1<<12} {
		prev = binOf(start)
		for us := start + 1; us < start+1<<12 && us < maxMicros; us++ {
			b := binOf(us)
			if b != prev && b != prev+1 {
				t.Fatalf("binOf(%d) = %d after %d", us, b, prev)
			}
			prev = b
		}
	}
	if got := binOf(maxMicros - 1); got != histBins-1 {
		t.Errorf("binOf(max) = %d, want %d", got, histBins-1)
	}
	if got := binOf(math.MaxUint64); got != histBins-1 {
		t.Errorf("binOf(MaxUint64) = %d, want %d (clamped)", got, histBins-1)
	}
	for i := range histBins {
		mid := binMiddle(i)
		if got := binOf(uint64(mid)); got != i {
			t.Errorf("binOf(binMiddle(%d) = %v) = %d", i, mid, got)
		}
	}
}

// exactQuantile returns the nearest-rank q-quantile of sorted.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestSnapshotQuantilesWithinErrorBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := []struct {
		name string
		draw func() time.Duration
	}{
		{"lognormal around 20ms", func() time.Duration {
			return time.Duration(math.Exp(rng.NormFloat64()*0.8) * float64(20*time.Millisecond))
		}},
		{"uniform 0 to 100µs", func() time.Duration { return time.Duration(rng.Int64N(int64(100 * time.Microsecond))) }},
		{"bimodal 5ms and 2s", func() time.Duration {
			if rng.IntN(50) == 0 {
				return 2*time.Second + time.Duration(rng.Int64N(int64(time.Second)))
			}
			return 5*time.Millisecond + time.Duration(rng.Int64N(int64(time.Millisecond)))
		}},
		{"one request", func() time.Duration { return 42 * time.Millisecond }},
	}
	for _, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			m := NewMeter(0, 0)
			n := 5000
			if d.name == "one request" {
				n = 1
			}
			var samples []time.Duration
			for i := range n {
				lat := d.draw()
				samples = append(samples, lat)
				m.Observe(t0.Add(time.Duration(i)*time.Millisecond), lat, false)
			}
			slices.Sort(samples)
			got := m.Snapshot(t0, t0.Add(10*time.Second))
			if got.Requests != int64(n) {
				t.Fatalf("Requests = %d, want %d", got.Requests, n)
			}
			for _, q := range []struct {
				name string
				q    float64
				got  time.Duration
			}{{"p50", 0.5, got.P50}, {"p99", 0.99, got.P99}} {
				want := exactQuantile(samples, q.q)
				bound := max(float64(want)/32, 500) // 1/32 or 0.5µs
				if diff := math.Abs(float64(q.got - want)); diff > bound {
					t.Errorf("%s = %v, exact %v: off by %v, more than the bound %v", q.name, q.got, want, time.Duration(diff), time.Duration(bound))
				}
			}
		})
	}
}

func TestSnapshotCountsAndInterval(t *testing.T) {
	m := NewMeter(time.Minute, time.Second)
	// One request a second for 90 seconds, every tenth failing.
	for i := range 90 {
		m.Observe(t0.Add(time.Duration(i)*time.Second+time.Millisecond), 10*time.Millisecond, i%10 == 0)
	}
	end := t0.Add(89 * time.Second)
	tests := []struct {
		name        string
		since, now  time.Time
		requests    int64
		errors      int64
		wantQuantle bool
	}{
		{"last 10 seconds", end.Add(-9 * time.Second), end, 10, 1, true},
		{"since is rounded down to its second", end.Add(-9*time.Second + 500*time.Millisecond), end, 10, 1, true},
		{"longer than the span is cut to the span", t0, end, 60, 6, true},
		{"older than the span", t0, t0.Add(10 * time.Second), 0, 0, false},
		{"since after now", end, end.Add(-time.Second), 0, 0, false},
		{"in the future", end.Add(time.Hour), end.Add(2 * time.Hour), 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := m.Snapshot(tc.since, tc.now)
			want := Measurement{Requests: tc.requests, Errors: tc.errors}
			if tc.requests > 0 {
				want.ErrorRate = float64(tc.errors) / float64(tc.requests)
				want.P50 = got.P50
				want.P99 = got.P99
				if got.P50 < 9*time.Millisecond || got.P50 > 11*time.Millisecond {
					t.Errorf("P50 = %v, want about 10ms", got.P50)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Snapshot (-want +got):\n%s", diff)
			}
		})
	}
}

func TestObserveReusesWrappedBuckets(t *testing.T) {
	m := NewMeter(10*time.Second, time.Second)
	// A slow request at second 0 wraps away by second 10.
	m.Observe(t0, 5*time.Second, true)
	for i := 1; i <= 20; i++ {
		m.Observe(t0.Add(time.Duration(i)*time.Second), time.Millisecond, false)
	}
	got := m.Snapshot(t0.Add(11*time.Second), t0.Add(20*time.Second))
	if got.Requests != 10 || got.Errors != 0 || got.P99 > 2*time.Millisecond {
		t.Errorf("Snapshot after wrap = %+v, want 10 requests, no error, p99 about 1ms", got)
	}
	// A request older than what its bucket now holds is ignored.
	m.Observe(t0.Add(5*time.Second), time.Hour, true)
	if got := m.Snapshot(t0, t0.Add(20*time.Second)); got.Errors != 0 {
		t.Errorf("a request older than the span was counted: %+v", got)
	}
}

func TestObserveIsSafeForConcurrentUse(t *testing.T) {
	m := NewMeter(0, 0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				m.Observe(t0.Add(time.Duration(i)*time.Millisecond), time.Duration(g+1)*time.Millisecond, i%100 == 0)
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			m.Snapshot(t0, t0.Add(time.Second))
		}
	})
	wg.Wait()
	got := m.Snapshot(t0, t0.Add(time.Second))
	if got.Requests != 8000 || got.Errors != 80 {
		t.Errorf("got %d requests and %d errors, want 8000 and 80", got.Requests, got.Errors)
	}
}

func TestMeasurementJSON(t *testing.T) {
	m := Measurement{Requests: 35, Errors: 7, ErrorRate: 0.2, P50: 12500 * time.Microsecond, P99: 40 * time.Millisecond}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"requests":35,"errors":7,"errorRate":0.2,"p50":"12.5ms","p99":"40ms"}`
	if string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
	var back Measurement
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if err := json.Unmarshal([]byte(`{"p99":"fast"}`), &back); err == nil {
		t.Error("Unmarshal accepted p99 \"fast\"")
	}
}

func BenchmarkObserve(b *testing.B) {
	m := NewMeter(0, 0)
	now := t0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// A new second every 1000 requests, as under 1000 requests/s.
		m.Observe(now.Add(time.Duration(i)*time.Millisecond), time.Duration(i%5000)*time.Microsecond, i%100 == 0)
	}
}

func BenchmarkObserveParallel(b *testing.B) {
	m := NewMeter(0, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Observe(t0.Add(time.Duration(i)*time.Millisecond), time.Duration(i%5000)*time.Microsecond, false)
			i++
		}
	})
}

func BenchmarkSnapshot15Minutes(b *testing.B) {
	m := NewMeter(0, 0)
	for i := range 900 * 50 {
		m.Observe(t0.Add(time.Duration(i)*20*time.Millisecond), time.Duration(1+i%200)*time.Millisecond, false)
	}
	end := t0.Add(15 * time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		m.Snapshot(t0, end)
	}
}
