package operator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/reqstats"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var reqBounds = []float64{0.1, 1}

// tot is a deployment's counters: requests, errors, and how many took at
// most 0.1 s and at most 1 s (all were timed).
func tot(requests, errors, fast, slow uint64) reqstats.Totals {
	return reqstats.Totals{Requests: requests, Errors: errors, Bounds: reqBounds, Counts: []uint64{fast, slow}, Observed: requests}
}

func TestRequestTotals(t *testing.T) {
	type step struct {
		at       time.Duration // after t0
		gateway  string
		epoch    int64
		full     bool
		deps     map[string]reqstats.Totals
		wantFull bool
	}
	tests := []struct {
		name  string
		steps []step
		at    time.Duration // when Totals is read
		want  map[string]reqstats.Totals
	}{
		{
			name: "what a gateway counted before its first report is a baseline",
			steps: []step{
				{gateway: "a", epoch: 1, deps: map[string]reqstats.Totals{"m": tot(10, 1, 10, 10)}, wantFull: true},
				{at: time.Second, gateway: "a", epoch: 1, deps: map[string]reqstats.Totals{"m": tot(15, 2, 13, 15)}, wantFull: true},
			},
			at:   time.Second,
			want: map[string]reqstats.Totals{"m": tot(5, 1, 3, 5)},
		},
		{
			name: "a deployment first reported after a full report counts whole",
			steps: []step{
				{gateway: "a", epoch: 1, full: true, deps: map[string]reqstats.Totals{"old": tot(7, 0, 7, 7)}},
				{at: time.Second, gateway: "a", epoch: 1, deps: map[string]reqstats.Totals{"new": tot(3, 0, 2, 3)}},
			},
			at:   time.Second,
			want: map[string]reqstats.Totals{"new": tot(3, 0, 2, 3)},
		},
		{
			name: "until a full report, a deployment first reported is a baseline",
			steps: []step{
				{gateway: "a", epoch: 1, deps: map[string]reqstats.Totals{}, wantFull: true},
				{at: time.Second, gateway: "a", epoch: 1, deps: map[string]reqstats.Totals{"m": tot(9, 0, 9, 9)}, wantFull: true},
				{at: 2 * time.Second, gateway: "a", epoch: 1, full: true, deps: map[string]reqstats.Totals{"m": tot(10, 0, 10, 10), "n": tot(4, 0, 4, 4)}},
				{at: 3 * time.Second, gateway: "a", epoch: 1, deps: map[string]reqstats.Totals{"n": tot(6, 0, 6, 6)}},
			},
			at:   3 * time.Second,
			want: map[string]reqstats.Totals{"m": tot(1, 0, 1, 1), "n": tot(2, 0, 2, 2)},
		},
		{
			name: "gateways add up",
			steps: []step{
				{gateway: "a", epoch: 1, full: true},
				{gateway: "b", epoch: 7, full: true},
				{at: time.Second, gateway: "a", epoch: 1, deps: map[string]reqstats.Totals{"m": tot(4, 1, 2, 4)}},
				{at: time.Second, gateway: "b", epoch: 7, deps: map[string]reqstats.Totals{"m": tot(6, 0, 6, 6), "n": tot(1, 1, 0, 1)}},
			},
			at:   time.Second,
			want: map[string]reqstats.Totals{"m": tot(10, 1, 8, 10), "n": tot(1, 1, 0, 1)},
		},
		{
			name: "a gateway that restarts (a new epoch) counts from zero",
			steps: []step{
				{gateway: "a", epoch: 1, full: true, deps: map[string]reqstats.Totals{"m": tot(100, 0, 100, 100)}},
				{at: time.Second, gateway: "a", epoch: 1, full: true, deps: map[string]reqstats.Totals{"m": tot(110, 0, 110, 110)}},
				{at: 2 * time.Second, gateway: "a", epoch: 2, full: true, deps: map[string]reqstats.Totals{"m": tot(3, 3, 0, 3)}},
			},
			at:   2 * time.Second,
			want: map[string]reqstats.Totals{"m": tot(13, 3, 10, 13)},
		},
		{
			name: "counters that went down began again at zero",
			steps: []step{
				{gateway: "a", epoch: 1, full: true, deps: map[string]reqstats.Totals{"m": tot(100, 0, 100, 100)}},
				{at: time.Second, gateway: "a", epoch: 1, deps: map[string]reqstats.Totals{"m": tot(2, 0, 1, 2)}},
			},
			at:   time.Second,
			want: map[string]reqstats.Totals{"m": tot(2, 0, 1, 2)},
		},
		{
			name: "a gateway that goes away keeps what it counted in the sums",
			steps: []step{
				{gateway: "a", epoch: 1, full: true},
				{gateway: "b", epoch: 1, full: true},
				{at: time.Second, gateway: "a", epoch: 1, deps: map[string]reqstats.Totals{"m": tot(5, 0, 5, 5)}},
				{at: 10 * time.Minute, gateway: "b", epoch: 1, deps: map[string]reqstats.Totals{"m": tot(7, 0, 7, 7)}},
			},
			at:   10 * time.Minute,
			want: map[string]reqstats.Totals{"m": tot(12, 0, 12, 12)},
		},
		{
			name: "a gateway silent past the forget time starts over from a baseline",
			steps: []step{
				{gateway: "a", epoch: 1, full: true},
				{at: time.Second, gateway: "a", epoch: 1, deps: map[string]reqstats.Totals{"m": tot(5, 0, 5, 5)}},
				{at: 20 * time.Minute, gateway: "a", epoch: 1, deps: map[string]reqstats.Totals{"m": tot(9, 0, 9, 9)}, wantFull: true},
			},
			at:   20 * time.Minute,
			want: map[string]reqstats.Totals{},
		},
		{
			name: "latencies of a histogram of other bounds are left out",
			steps: []step{
				{gateway: "a", epoch: 1, full: true},
				{gateway: "b", epoch: 1, full: true},
				{at: time.Second, gateway: "a", epoch: 1, deps: map[string]reqstats.Totals{"m": tot(4, 0, 4, 4)}},
				{at: time.Second, gateway: "b", epoch: 1, deps: map[string]reqstats.Totals{"m": {Requests: 3, Bounds: []float64{5}, Counts: []uint64{3}, Observed: 3}}},
			},
			at:   time.Second,
			want: map[string]reqstats.Totals{"m": {Requests: 7, Bounds: reqBounds, Counts: []uint64{4, 4}, Observed: 4}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeTime{now: t0}
			rt := NewRequestTotals(0, clk.Now)
			for i, s := range tt.steps {
				clk.Set(t0.Add(s.at))
				r := &RequestReport{Epoch: s.epoch, Full: s.full, Deployments: s.deps}
				if err := CheckRequests(r); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got := rt.Report(s.gateway, r); got != s.wantFull {
					t.Errorf("step %d: Report wants a full report = %v, want %v", i, got, s.wantFull)
				}
			}
			clk.Set(t0.Add(tt.at))
			got, err := rt.Totals()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Totals (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRequestTotalsFeedTheSampler checks the operator's request
// statistics from end to end: reports through the demand API, summed,
// sampled into a Series, with a gateway that restarts in between.
func TestRequestTotalsFeedTheSampler(t *testing.T) {
	clk := &fakeTime{now: t0}
	d := NewDemand(5*time.Second, clk.Now)
	srv := httptest.NewServer(d.Handler(nopWaker{}))
	defer srv.Close()
	s := reqstats.New(d.Requests(), reqstats.Options{Interval: 5 * time.Second, Keep: 4, Now: clk.Now})

	post := func(body string) DemandAnswer {
		t.Helper()
		resp, err := http.Post(srv.URL+DemandPath, "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d", body, resp.StatusCode)
		}
		var a DemandAnswer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	if a := post(`{"gateway":"a","requests":{"epoch":1,"deployments":{"m":{"requests":50,"bounds":[0.1,1],"counts":[50,50],"observed":50}}}}`); !a.WantRequests {
		t.Error("the first report of a gateway that is not full: no request for a full one")
	}
	if a := post(`{"gateway":"a","requests":{"epoch":1,"full":true,"deployments":{"m":{"requests":50,"bounds":[0.1,1],"counts":[50,50],"observed":50}}}}`); a.WantRequests {
		t.Error("a full report: the operator asks for another")
	}
	s.Sample(t0) // the baseline
	clk.Set(t0.Add(5 * time.Second))
	post(`{"gateway":"a","requests":{"epoch":1,"deployments":{"m":{"requests":60,"errors":5,"bounds":[0.1,1],"counts":[55,60],"observed":60}}}}`)
	s.Sample(clk.Now())
	clk.Set(t0.Add(10 * time.Second))
	// a restarted: its counters began at zero.
	post(`{"gateway":"a","requests":{"epoch":2,"full":true,"deployments":{"m":{"requests":20,"bounds":[0.1,1],"counts":[20,20],"observed":20}}}}`)
	s.Sample(clk.Now())

	p := func(v float64) *float64 { return &v }
	want := []reqstats.Sample{
		{Time: t0.Add(5 * time.Second), Requests: 10, Errors: 5, Rate: 2, ErrorRate: 0.5, P50: p(0.1), P90: p(0.1 + 0.9*4/5), P99: p(0.1 + 0.9*4.9/5)},
		{Time: t0.Add(10 * time.Second), Requests: 20, Rate: 4, P50: p(0.05), P90: p(0.09), P99: p(0.099)},
	}
	if diff := cmp.Diff(want, s.Series("m"), cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("Series (-want +got):\n%s", diff)
	}

	resp, err := http.Post(srv.URL+DemandPath, "application/json", bytes.NewBufferString(`{"gateway":"a","requests":{"epoch":1,"deployments":{"m":{"requests":1,"bounds":[1,0.1],"counts":[1,1]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a report with bounds out of order: %d, want 400", resp.StatusCode)
	}
}

type nopWaker struct{}

func (nopWaker) Wake(string) {}
