package operator

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/traffic"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestShadowIdentity(t *testing.T) {
	base := serving.Shadow{Model: "m:2"}
	tests := []struct {
		name string
		edit func(*serving.Shadow)
		same bool
	}{
		{"itself", func(*serving.Shadow) {}, true},
		{"defaults spelt out", func(s *serving.Shadow) {
			s.Percent, s.MaxConcurrency = serving.DefaultShadowPercent, serving.DefaultShadowMaxConcurrency
			s.Tolerance = &serving.Tolerance{Abs: serving.DefaultTolerance.Abs, Rel: serving.DefaultTolerance.Rel}
		}, true},
		{"another model", func(s *serving.Shadow) { s.Model = "m:3" }, false},
		{"another share", func(s *serving.Shadow) { s.Percent = 10 }, false},
		{"another tolerance", func(s *serving.Shadow) { s.Tolerance = &serving.Tolerance{Abs: 0.1} }, false},
		{"another limit", func(s *serving.Shadow) { s.MaxConcurrency = 8 }, false},
		{"a request count", func(s *serving.Shadow) { s.Requests = 100 }, false},
		{"an end", func(s *serving.Shadow) { s.Until = "2026-03-01T12:00:00Z" }, false},
		{"started again", func(s *serving.Shadow) { s.Started = "2026-03-01T12:00:00.5Z" }, false},
	}
	want := (&base).ID()
	if want == "" || (*serving.Shadow)(nil).ID() != "" {
		t.Fatalf("ID = %q, of none %q; want an ID and none", want, (*serving.Shadow)(nil).ID())
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sh := base
			tc.edit(&sh)
			if got := (&sh).ID(); (got == want) != tc.same {
				t.Errorf("ID = %q, of the base %q; want the same: %v", got, want, tc.same)
			}
		})
	}
	// One end in two time zones is one end.
	a, b := base, base
	a.Until, b.Until = "2026-03-01T12:00:00Z", "2026-03-01T13:00:00+01:00"
	if (&a).ID() != (&b).ID() {
		t.Error("the same end in another zone is another shadow")
	}
}

// tally is a shadow tally of compared requests, agreed of them.
func tally(compared, agreed int64) traffic.TallySnapshot {
	return traffic.TallySnapshot{Compared: compared, Agreed: agreed, PrimaryLatency: time.Duration(compared) * time.Millisecond,
		ShadowLatency: time.Duration(2*compared) * time.Millisecond}
}

// TestShadowsSumTheCurrentShadowsGateways reports the tallies of two
// gateways, one still of an earlier shadow, and checks what the operator
// sums as each step's reports arrive.
func TestShadowsSumTheCurrentShadowsGateways(t *testing.T) {
	clk := &fakeTime{now: t0}
	s := NewShadows(clk.Now)
	current := &serving.Shadow{Model: "m:2", Percent: 50}
	earlier := &serving.Shadow{Model: "m:2"}
	id, old := current.ID(), earlier.ID()
	steps := []struct {
		at      time.Duration
		gateway string
		report  map[string]ShadowReport
		want    traffic.TallySnapshot // summed, of m's current shadow
		ok      bool
	}{
		{0, "", nil, traffic.TallySnapshot{}, false}, // nothing reported
		{0, "gw-a", map[string]ShadowReport{"m": {ID: old, Tally: tally(40, 40)}}, traffic.TallySnapshot{}, false},
		{time.Second, "gw-b", map[string]ShadowReport{"m": {ID: id, Tally: tally(10, 9)}}, tally(10, 9), true},
		// gw-a moves to the current shadow: its earlier tally no longer
		// counts, its new one does.
		{2 * time.Second, "gw-a", map[string]ShadowReport{"m": {ID: id, Tally: tally(5, 5)}}, tally(15, 14), true},
		// A report replaces the gateway's previous one (tallies are
		// cumulative), and another deployment's shadow is apart.
		{3 * time.Second, "gw-b", map[string]ShadowReport{"m": {ID: id, Tally: tally(30, 20)}, "other": {ID: id, Tally: tally(7, 7)}}, tally(35, 25), true},
		// A gateway silent for the span is forgotten.
		{traffic.DefaultSpan + 2*time.Second + time.Millisecond, "gw-b", map[string]ShadowReport{"m": {ID: id, Tally: tally(31, 21)}}, tally(31, 21), true},
	}
	for i, st := range steps {
		clk.Set(t0.Add(st.at))
		if st.report != nil {
			if err := s.Report(st.gateway, st.report); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		got, ok := s.Summary("m", current)
		if diff := cmp.Diff(st.want.Summary(), got, cmpopts.EquateApprox(0, 1e-12)); diff != "" || ok != st.ok {
			t.Errorf("step %d: Summary ok %v, want %v; (-want +got):\n%s", i, ok, st.ok, diff)
		}
	}
	if got, ok := s.Summary("m", earlier); ok || got.Compared != 0 {
		t.Errorf("summary of the earlier shadow = %+v, %v; want none: no gateway reports it any more", got, ok)
	}
	if _, ok := s.Summary("m", nil); ok {
		t.Error("a deployment without a shadow has a summary")
	}
}

func TestShadowSourceReadsTheCurrentSpec(t *testing.T) {
	s := NewShadows(nil)
	sh := &serving.Shadow{Model: "m:2"}
	specs := map[string]*serving.Shadow{"m": sh}
	src := ShadowSource{Shadows: s, Spec: func(name string) *serving.Shadow { return specs[name] }}
	if err := s.Report("gw-a", map[string]ShadowReport{"m": {ID: sh.ID(), Tally: tally(4, 3)}, "gone": {ID: sh.ID(), Tally: tally(1, 1)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Report("gw-b", map[string]ShadowReport{"m": {ID: sh.ID(), Tally: tally(6, 6)}}); err != nil {
		t.Fatal(err)
	}
	sum, id, ok := src.ShadowSummary("m")
	if !ok || id != sh.ID() || sum.Compared != 10 || sum.Agreed != 9 || sum.LatencyRatio != 2 {
		t.Errorf("ShadowSummary(m) = %+v, %q, %v; want 10 compared, 9 agreed, ratio 2, of the current shadow %q", sum, id, ok, sh.ID())
	}
	if _, _, ok := src.ShadowSummary("gone"); ok {
		t.Error("a deployment whose shadow ended (or that is gone) still has a summary")
	}
	specs["m"] = &serving.Shadow{Model: "m:3"}
	if sum, id, ok := src.ShadowSummary("m"); ok || id != specs["m"].ID() || sum.Compared != 0 {
		t.Errorf("ShadowSummary(m) of a new shadow no gateway reported = %+v, %q, %v; want none, of m:3", sum, id, ok)
	}
}

func TestCheckShadows(t *testing.T) {
	tests := []struct {
		name    string
		shadows map[string]ShadowReport
		want    string
	}{
		{name: "none"},
		{name: "valid", shadows: map[string]ShadowReport{"m": {ID: "abc", Tally: tally(3, 2)}}},
		{name: "no id", shadows: map[string]ShadowReport{"m": {Tally: tally(3, 2)}}, want: `shadow of "m" has no id`},
		{name: "invalid tally", shadows: map[string]ShadowReport{"m": {ID: "abc", Tally: tally(2, 3)}}, want: `shadow of "m": shadow tally: 3 agreed of 2 compared`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckShadows(tt.shadows)
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("CheckShadows = %v; want %q", err, tt.want)
			}
			s := NewShadows(nil)
			if err := s.Report("gw", tt.shadows); (err == nil) != (tt.want == "") {
				t.Errorf("Report = %v; want %q", err, tt.want)
			}
			if tt.want != "" && len(s.deps) != 0 {
				t.Errorf("Report kept an invalid report: %v", s.deps)
			}
		})
	}
}

// TestDemandHandlerTakesShadows posts reports with shadows to the
// operator's demand API.
func TestDemandHandlerTakesShadows(t *testing.T) {
	d := NewDemand(5*time.Second, nil)
	srv := httptest.NewServer(d.Handler(&wakes{}))
	defer srv.Close()
	sh := &serving.Shadow{Model: "m:2"}
	id := sh.ID()
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{"gateway":"g1","deployments":{},"shadows":{"m":{"id":"` + id + `","tally":{"compared":4,"agreed":3,"primaryLatencyNs":4000,"shadowLatencyNs":6000}}}}`, http.StatusOK},
		{`{"gateway":"g2","deployments":{},"shadows":{"m":{"id":"` + id + `","tally":{"compared":1,"agreed":1}}}}`, http.StatusOK},
		{`{"gateway":"g3","deployments":{},"shadows":{"m":{"id":"` + id + `","tally":{"compared":1,"agreed":2}}}}`, http.StatusBadRequest},
	} {
		resp, err := http.Post(srv.URL+DemandPath, "application/json", bytes.NewBufferString(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("POST %s: status %d, want %d", tc.body, resp.StatusCode, tc.code)
		}
	}
	sum, ok := d.Shadows().Summary("m", sh)
	if !ok || sum.Compared != 5 || sum.Agreed != 4 || sum.LatencyRatio != 1.5 {
		t.Errorf("summary of m's shadow = %+v, %v; want the 2 valid reports' 5 compared, 4 agreed, ratio 1.5", sum, ok)
	}
}

func TestWithShadowReplicas(t *testing.T) {
	primary := serving.Status{Replicas: 1, ReadyReplicas: 1, ReplicaStatuses: []serving.ReplicaStatus{{ID: "m-a", State: serving.ReplicaReady}}}
	shadow := serving.Status{Replicas: 1, ReplicaStatuses: []serving.ReplicaStatus{{ID: "m.shadow-b", State: serving.ReplicaStarting, Track: serving.ShadowTag}}}
	got := withShadowReplicas(primary, shadow)
	want := serving.Status{Replicas: 1, ReadyReplicas: 1, ReplicaStatuses: []serving.ReplicaStatus{
		{ID: "m-a", State: serving.ReplicaReady}, {ID: "m.shadow-b", State: serving.ReplicaStarting, Track: serving.ShadowTag}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if len(primary.ReplicaStatuses) != 1 {
		t.Error("withShadowReplicas changed the status it was given")
	}
	if diff := cmp.Diff(want, withShadowReplicas(got, shadow)); diff != "" {
		t.Errorf("a replica listed already is listed twice (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(primary, withShadowReplicas(primary, serving.Status{})); diff != "" {
		t.Errorf("without a shadow (-want +got):\n%s", diff)
	}
}
