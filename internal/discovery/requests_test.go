package discovery

import (
	"maps"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/operator"
	"github.com/ebb-ml/ebb/internal/reqstats"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// countersSource is a reqstats.Source a test sets.
type countersSource map[string]reqstats.Totals

func (s countersSource) Totals() (map[string]reqstats.Totals, error) { return maps.Clone(s), nil }

func counts(requests uint64) reqstats.Totals {
	return reqstats.Totals{Requests: requests, Bounds: []float64{1}, Counts: []uint64{requests}, Observed: requests}
}

// TestReporterSendsRequestCounters checks what a report carries of the
// gateway's request counters: all those with requests first, then those
// that moved since the last report the operator answered, and all again
// when the operator asks.
func TestReporterSendsRequestCounters(t *testing.T) {
	src := countersSource{"a": counts(3), "idle": {}}
	t0 := time.Unix(1772366400, 0)
	r := &Reporter{Gateway: "gw", Source: recorders{}, Requests: src}
	type step struct {
		set      map[string]reqstats.Totals // counters before the report
		answered bool                       // the operator answered it
		want     bool                       // it asked for a full report
		report   *operator.RequestReport
	}
	epoch := t0.Add(time.Second).UnixNano()
	steps := []step{
		{answered: true, report: &operator.RequestReport{Epoch: epoch, Full: true, Deployments: map[string]reqstats.Totals{"a": counts(3)}}},
		{answered: true, report: &operator.RequestReport{Epoch: epoch, Deployments: map[string]reqstats.Totals{}}},
		{set: map[string]reqstats.Totals{"b": counts(1)}, report: &operator.RequestReport{Epoch: epoch, Deployments: map[string]reqstats.Totals{"b": counts(1)}}},
		// The last report failed: what moved since the one answered goes again.
		{set: map[string]reqstats.Totals{"a": counts(4)}, answered: true, want: true,
			report: &operator.RequestReport{Epoch: epoch, Deployments: map[string]reqstats.Totals{"a": counts(4), "b": counts(1)}}},
		// A new leader asked for all of them.
		{answered: true, report: &operator.RequestReport{Epoch: epoch, Full: true, Deployments: map[string]reqstats.Totals{"a": counts(4), "b": counts(1)}}},
		{set: map[string]reqstats.Totals{"b": counts(2)}, report: &operator.RequestReport{Epoch: epoch, Deployments: map[string]reqstats.Totals{"b": counts(2)}}},
	}
	for i, s := range steps {
		maps.Copy(src, s.set)
		rep := r.Report(t0.Add(time.Duration(i+1) * time.Second))
		if diff := cmp.Diff(s.report, rep.Requests, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("step %d: requests (-want +got):\n%s", i, diff)
		}
		if s.answered {
			r.Acknowledge()
			r.reqs.answered(s.want)
		}
	}
	if rep := (&Reporter{Gateway: "gw", Source: recorders{}}).Report(t0); rep.Requests != nil {
		t.Errorf("a gateway without request counters sent %+v", rep.Requests)
	}
}

// TestRequestCountersReachTheOperator runs two gateways' reports through
// the operator's demand API, one of them before and after the operator
// forgot it (a new leader), and checks the operator's sums.
func TestRequestCountersReachTheOperator(t *testing.T) {
	demand := operator.NewDemand(5*time.Second, nil)
	srv := httptest.NewServer(demand.Handler(&wakeLog{seen: make(chan struct{}, 1)}))
	defer srv.Close()
	client := NewClient(srv.URL, nil)
	srcA, srcB := countersSource{"m": counts(5)}, countersSource{}
	a := &Reporter{Gateway: "gw-a", Source: recorders{}, Requests: srcA, Client: client}
	b := &Reporter{Gateway: "gw-b", Source: recorders{}, Requests: srcB, Client: client}
	send := func(r *Reporter) {
		t.Helper()
		ans, err := r.Client.Report(t.Context(), r.Report(time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		r.Acknowledge()
		r.reqs.answered(ans.WantRequests)
	}
	send(a) // the first, full: a baseline
	send(b)
	srcA["m"], srcB["m"], srcB["n"] = counts(8), counts(2), counts(1)
	send(a)
	send(b)
	got, _ := demand.Requests().Totals()
	want := map[string]reqstats.Totals{"m": counts(5), "n": counts(1)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the operator's sums (-want +got):\n%s", diff)
	}

	// A new leader knows neither gateway: it asks for full reports, then
	// counts from there.
	demand = operator.NewDemand(5*time.Second, nil)
	srv2 := httptest.NewServer(demand.Handler(&wakeLog{seen: make(chan struct{}, 1)}))
	defer srv2.Close()
	a.Client = NewClient(srv2.URL, nil)
	srcA["m"] = counts(10)
	send(a) // what moved: a baseline, and a full report is wanted
	srcA["k"] = counts(4)
	send(a) // full: k is a baseline too
	srcA["m"], srcA["k"], srcA["j"] = counts(11), counts(6), counts(2)
	send(a)
	got, _ = demand.Requests().Totals()
	want = map[string]reqstats.Totals{"m": counts(1), "k": counts(2), "j": counts(2)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the new leader's sums (-want +got):\n%s", diff)
	}
}
