package operator

import (
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/traffic"
)

// bucket is a bucket of n requests of latency bin 10 at second s after t0,
// errs of them failed.
func bucket(s int64, n, errs uint64) traffic.Bucket {
	return traffic.Bucket{Start: t0.Unix() + s, Requests: n, Errors: errs, Hist: []uint32{10, uint32(n)}}
}

func TestMetersMergeEachGatewaysBucketsOnce(t *testing.T) {
	clk := &fakeTime{now: t0}
	m := NewMeters(clk.Now)
	steps := []struct {
		gateway string
		buckets []traffic.Bucket
		want    int64 // requests measured of "m.canary" over the first minute
	}{
		{"a", []traffic.Bucket{bucket(0, 3, 1), bucket(1, 2, 0)}, 5},
		{"b", []traffic.Bucket{bucket(1, 4, 0)}, 9},                                    // another gateway's second 1 adds
		{"a", []traffic.Bucket{bucket(0, 3, 1), bucket(1, 2, 0), bucket(2, 1, 0)}, 10}, // a resend: only second 2 is new
		{"a", []traffic.Bucket{bucket(1, 2, 0)}, 10},                                   // all merged before
		{"b", []traffic.Bucket{bucket(1, 4, 0), bucket(5, 1, 1)}, 11},
	}
	for i, s := range steps {
		if err := m.Merge(s.gateway, map[string][]traffic.Bucket{"m.canary": s.buckets}); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := m.Measure("m.canary", t0, t0.Add(time.Minute)); got.Requests != s.want {
			t.Errorf("step %d: measured %d requests; want %d", i, got.Requests, s.want)
		}
	}
	if got := m.Measure("m.canary", t0, t0.Add(time.Minute)); got.Errors != 2 {
		t.Errorf("measured %d errors; want 2", got.Errors)
	}
	if got := m.Measure("m", t0, t0.Add(time.Minute)); got != (traffic.Measurement{}) {
		t.Errorf("a key never reported measures %+v; want no data", got)
	}
	// A key no report carries for the span is forgotten, and with it the
	// gateways' marks: a gateway that comes back is merged afresh.
	clk.Set(t0.Add(traffic.DefaultSpan + time.Second))
	if err := m.Merge("c", map[string][]traffic.Bucket{"m": {bucket(900, 1, 0)}}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	_, kept := m.keys["m.canary"]
	m.mu.Unlock()
	if kept {
		t.Error("m.canary, silent for the whole span, is still kept")
	}
}

func TestCheckMeters(t *testing.T) {
	tests := []struct {
		name   string
		meters map[string][]traffic.Bucket
		want   string
	}{
		{name: "none"},
		{name: "valid", meters: map[string][]traffic.Bucket{"m": {bucket(0, 1, 0), bucket(1, 2, 1)}}},
		{name: "invalid bucket", meters: map[string][]traffic.Bucket{"m": {{Start: t0.Unix(), Requests: 2, Hist: []uint32{10, 1}}}}, want: `meters of "m": meter bucket`},
		{name: "out of order", meters: map[string][]traffic.Bucket{"m": {bucket(2, 1, 0), bucket(1, 1, 0)}}, want: "oldest first"},
		{name: "repeated", meters: map[string][]traffic.Bucket{"m": {bucket(1, 1, 0), bucket(1, 1, 0)}}, want: "each once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckMeters(tt.meters)
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("CheckMeters = %v; want %q", err, tt.want)
			}
		})
	}
}
