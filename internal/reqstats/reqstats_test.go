package reqstats

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeSource serves the Totals a test sets.
type fakeSource struct {
	tot map[string]Totals
	err error
}

func (f *fakeSource) Totals() (map[string]Totals, error) {
	cp := map[string]Totals{}
	for k, v := range f.tot {
		cp[k] = v
	}
	return cp, f.err
}

func ptr(v float64) *float64 { return &v }

var bounds = []float64{0.01, 0.1, 1}

func TestSampleRateErrorsAndPercentiles(t *testing.T) {
	src := &fakeSource{tot: map[string]Totals{"a": {Bounds: bounds, Counts: []uint64{0, 0, 0}}}}
	s := New(src, Options{Interval: time.Second, Keep: 4})
	t0 := time.Unix(1000, 0)
	s.Sample(t0) // baseline
	s.Sample(t0.Add(time.Second))
	// 100 requests in 2 s, 10 of them 5xx; 50 under 10 ms, 40 more under
	// 100 ms, 10 more under 1 s.
	src.tot["a"] = Totals{Requests: 100, Errors: 10, Bounds: bounds, Counts: []uint64{50, 90, 100}, Observed: 100}
	s.Sample(t0.Add(3 * time.Second))

	got := s.Series("a")
	want := []Sample{
		{Time: t0.Add(time.Second)},
		{Time: t0.Add(3 * time.Second), Requests: 100, Errors: 10, Rate: 50, ErrorRate: 0.1,
			P50: ptr(0.01), P90: ptr(0.1), P99: ptr(0.1 + 0.9*9/10)},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("Series (-want +got):\n%s", diff)
	}
	if got := s.Series("unknown"); len(got) != 2 || got[1].Requests != 0 {
		t.Errorf("Series of a deployment without requests = %+v, want 2 zero samples", got)
	}
}

func TestRingIsBoundedAndIdleDeploymentsAreForgotten(t *testing.T) {
	src := &fakeSource{tot: map[string]Totals{}}
	s := New(src, Options{Interval: time.Second, Keep: 3, MaxDeployments: 2})
	t0 := time.Unix(0, 0)
	s.Sample(t0)
	for i := 1; i <= 10; i++ {
		src.tot["a"] = Totals{Requests: uint64(i)}
		s.Sample(t0.Add(time.Duration(i) * time.Second))
	}
	got := s.Series("a")
	if len(got) != 3 {
		t.Fatalf("Series has %d samples, want Keep=3", len(got))
	}
	if got[0].Time != t0.Add(8*time.Second) || got[2].Requests != 1 {
		t.Errorf("Series = %+v, want the last 3 seconds with 1 request each", got)
	}
	// b and c arrive: at MaxDeployments 2, the longest idle goes.
	src.tot["b"] = Totals{Requests: 1}
	s.Sample(t0.Add(11 * time.Second))
	src.tot["c"] = Totals{Requests: 1}
	s.Sample(t0.Add(12 * time.Second))
	s.mu.Lock()
	n := len(s.deps)
	_, hasA := s.deps["a"]
	s.mu.Unlock()
	if n > 2 || hasA {
		t.Errorf("after b and c: %d deployments kept (a kept: %v), want at most 2 without a", n, hasA)
	}
	// Idle for Keep samples: forgotten.
	for i := 13; i <= 16; i++ {
		s.Sample(t0.Add(time.Duration(i) * time.Second))
	}
	s.mu.Lock()
	n = len(s.deps)
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("%d deployments kept after a whole ring without requests, want 0", n)
	}
}

func TestCounterResetAndSourceError(t *testing.T) {
	src := &fakeSource{tot: map[string]Totals{"a": {Requests: 50}}}
	var errs int
	s := New(src, Options{Interval: time.Second, OnError: func(error) { errs++ }})
	t0 := time.Unix(0, 0)
	s.Sample(t0)
	src.tot["a"] = Totals{Requests: 7} // restarted
	s.Sample(t0.Add(time.Second))
	src.err = errors.New("boom")
	s.Sample(t0.Add(2 * time.Second))
	got := s.Series("a")
	if len(got) != 1 || got[0].Requests != 7 {
		t.Errorf("Series after a reset = %+v, want one sample of 7 requests", got)
	}
	if errs != 1 {
		t.Errorf("OnError called %d times, want 1", errs)
	}
}

func TestGathered(t *testing.T) {
	reg := prometheus.NewRegistry()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: RequestsMetric, Help: "h"}, []string{"deployment", "code", "version"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: LatencyMetric, Help: "h", Buckets: bounds}, []string{"deployment", "version"})
	reg.MustRegister(req, lat)
	req.WithLabelValues("a", "200", "1").Add(8)
	req.WithLabelValues("a", "200", "2").Add(1)
	req.WithLabelValues("a", "503", "1").Add(2)
	req.WithLabelValues("a", "429", "").Add(3)
	lat.WithLabelValues("a", "1").Observe(0.005)
	lat.WithLabelValues("a", "2").Observe(0.5)
	got, err := Gathered{Gatherer: reg}.Totals()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Totals{"a": {Requests: 14, Errors: 2, Bounds: bounds, Counts: []uint64{1, 1, 2}, Observed: 2}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Totals (-want +got):\n%s", diff)
	}
}
