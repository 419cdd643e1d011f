package operator

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeTime is a settable clock for Demand.
type fakeTime struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeTime) Now() time.Time  { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fakeTime) Set(t time.Time) { f.mu.Lock(); f.now = t; f.mu.Unlock() }

func TestDemand(t *testing.T) {
	type step struct {
		at     float64 // seconds after t0
		report *DemandReport
		held   *WakeRequest // for deployment "m"
	}
	type want struct {
		inFlight int
		sample   stats.Sample
	}
	rep := func(gw string, inFlight int, conc float64, reqs int) *DemandReport {
		return &DemandReport{Gateway: gw, Deployments: map[string]GatewayDemand{"m": {InFlight: inFlight, Concurrency: conc, Requests: reqs}}}
	}
	tests := []struct {
		name  string
		steps []step
		at    float64 // when the loop samples
		want  want
	}{
		{
			name: "nothing reported",
			at:   1,
			want: want{sample: stats.Sample{At: t0.Add(time.Second)}},
		},
		{
			name:  "gateways sum",
			steps: []step{{at: 0.5, report: rep("a", 2, 1.5, 10)}, {at: 0.6, report: rep("b", 1, 0.5, 4)}},
			at:    1,
			want:  want{inFlight: 3, sample: stats.Sample{At: t0.Add(time.Second), Concurrency: 2, Requests: 14}},
		},
		{
			name:  "reports of one gateway average their concurrency and add their requests",
			steps: []step{{at: 0.2, report: rep("a", 1, 1, 3)}, {at: 1.2, report: rep("a", 5, 3, 7)}},
			at:    1.5,
			want:  want{inFlight: 5, sample: stats.Sample{At: t0.Add(1500 * time.Millisecond), Concurrency: 2, Requests: 10}},
		},
		{
			name:  "a report expires",
			steps: []step{{at: 0, report: rep("a", 4, 4, 4)}, {at: 5, report: rep("b", 1, 1, 1)}},
			at:    6,
			want:  want{inFlight: 1, sample: stats.Sample{At: t0.Add(6 * time.Second), Concurrency: 1, Requests: 1}},
		},
		{
			name: "a deployment left out is idle at that gateway",
			steps: []step{
				{at: 0, report: rep("a", 4, 4, 4)},
				{at: 0.5, report: &DemandReport{Gateway: "a", Deployments: map[string]GatewayDemand{"other": {InFlight: 1}}}},
			},
			at:   1,
			want: want{inFlight: 0, sample: stats.Sample{At: t0.Add(time.Second), Concurrency: 4, Requests: 4}},
		},
		{
			name:  "a wake-up counts its held requests at once",
			steps: []step{{at: 0.1, held: &WakeRequest{Gateway: "a", InFlight: 3}}},
			at:    0.2,
			want:  want{inFlight: 3, sample: stats.Sample{At: t0.Add(200 * time.Millisecond)}},
		},
		{
			name:  "a wake-up without a count counts one request",
			steps: []step{{at: 0.1, held: &WakeRequest{}}},
			at:    0.2,
			want:  want{inFlight: 1, sample: stats.Sample{At: t0.Add(200 * time.Millisecond)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeTime{now: t0}
			d := NewDemand(5*time.Second, clk.Now)
			for _, s := range tt.steps {
				clk.Set(t0.Add(time.Duration(s.at * float64(time.Second))))
				if s.report != nil {
					d.Report(*s.report)
				}
				if s.held != nil {
					d.Held("m", s.held.Gateway, s.held.InFlight)
				}
			}
			now := t0.Add(time.Duration(tt.at * float64(time.Second)))
			clk.Set(now)
			got := want{inFlight: d.InFlight("m"), sample: d.Sample("m", now)}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDemandSampleResets(t *testing.T) {
	clk := &fakeTime{now: t0}
	d := NewDemand(5*time.Second, clk.Now)
	d.Report(DemandReport{Gateway: "a", Deployments: map[string]GatewayDemand{"m": {InFlight: 2, Concurrency: 2, Requests: 5}}})
	first := d.Sample("m", t0)
	second := d.Sample("m", t0.Add(time.Second))
	want := []stats.Sample{{At: t0, Concurrency: 2, Requests: 5}, {At: t0.Add(time.Second), Concurrency: 2}}
	if diff := cmp.Diff(want, []stats.Sample{first, second}); diff != "" {
		t.Errorf("a second sample without a report keeps the latest concurrency and counts no request again (-want +got):\n%s", diff)
	}
}

type wakes struct {
	mu    sync.Mutex
	names []string
}

func (w *wakes) Wake(name string) { w.mu.Lock(); w.names = append(w.names, name); w.mu.Unlock() }

func TestDemandHandler(t *testing.T) {
	d := NewDemand(5*time.Second, nil)
	w := &wakes{}
	srv := httptest.NewServer(d.Handler(w))
	defer srv.Close()
	tests := []struct {
		name, path, body string
		code             int
	}{
		{"report", DemandPath, `{"gateway":"g1","deployments":{"m":{"inFlight":2,"concurrency":1.5,"requests":3}}}`, http.StatusOK},
		{"report without gateway", DemandPath, `{"deployments":{}}`, http.StatusBadRequest},
		{"report not JSON", DemandPath, `{`, http.StatusBadRequest},
		{"report with meters", DemandPath, `{"gateway":"g2","deployments":{},"meters":{"m.canary":[{"t":1772366400,"n":2,"e":1,"h":[4,2]}]}}`, http.StatusOK},
		{"report with an invalid meter", DemandPath, `{"gateway":"g2","deployments":{},"meters":{"m":[{"t":1772366400,"n":2,"h":[4,1]}]}}`, http.StatusBadRequest},
		{"wake", WakePath + "cold", `{"gateway":"g1","inFlight":4}`, http.StatusNoContent},
		{"wake without body", WakePath + "bare", ``, http.StatusNoContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+tt.path, "application/json", bytes.NewBufferString(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Errorf("POST %s %s: status %d, want %d", tt.path, tt.body, resp.StatusCode, tt.code)
			}
		})
	}
	got := map[string]int{"m": d.InFlight("m"), "cold": d.InFlight("cold"), "bare": d.InFlight("bare")}
	if diff := cmp.Diff(map[string]int{"m": 2, "cold": 4, "bare": 1}, got); diff != "" {
		t.Errorf("in flight (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"cold", "bare"}, w.names); diff != "" {
		t.Errorf("wakes (-want +got):\n%s", diff)
	}
	sec := time.Unix(1772366400, 0)
	if got := d.Meters().Measure("m.canary", sec, sec); got.Requests != 2 || got.Errors != 1 {
		t.Errorf("meters of m.canary measure %+v; want the report's 2 requests, 1 error", got)
	}
	if got := d.Meters().Measure("m", sec, sec); got.Requests != 0 {
		t.Errorf("the refused report's meter of m was merged: %+v", got)
	}
}
