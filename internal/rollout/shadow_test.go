package rollout

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// fakeShadows stands in for the gateways' shadow tallies: one summary per
// deployment, reported for a model.
type fakeShadows struct {
	mu    sync.Mutex
	sums  map[string]traffic.Summary
	model map[string]string
	// spec reads a deployment's current spec.shadow.
	spec func(deployment string) *serving.Shadow
}

func (s *fakeShadows) report(deployment, model string, sum traffic.Summary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sums == nil {
		s.sums, s.model = map[string]traffic.Summary{}, map[string]string{}
	}
	s.sums[deployment], s.model[deployment] = sum, model
}

// ShadowSummary reports the summary as the current shadow's (its ID) when
// it was reported for the current shadow's model, as an earlier one's
// otherwise.
func (s *fakeShadows) ShadowSummary(deployment string) (traffic.Summary, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sum, ok := s.sums[deployment]
	if s.spec != nil {
		if sh := s.spec(deployment); sh != nil && sh.Model == s.model[deployment] {
			return sum, sh.ID(), ok
		}
	}
	return sum, "earlier:" + s.model[deployment], ok
}

// agreeing is a tally of n compared requests of which agreed agreed.
func agreeing(n, agreed int64) traffic.Summary {
	s := traffic.Summary{Compared: n, Agreed: agreed, LatencyRatio: 1.1}
	if n > 0 {
		s.Agreement = float64(agreed) / float64(n)
	}
	return s
}

func TestStartShadow(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "m:1")
	f.reg.inputs = map[string]Signature{
		"m:1": {{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 10}}},
		"m:2": {{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 10}}},
		"m:3": {{Name: "input", Datatype: oip.FP64, Shape: []int64{-1, 10}}},
	}
	chat := serving.Deployment{Name: "chat", Spec: serving.Spec{Engine: "http", URL: "http://127.0.0.1:9", Protocol: serving.ProtocolOpenAI}}
	chat.Spec.Default()
	if _, err := f.st.CreateDeployment(ctx, chat); err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name       string
		deployment string
		req        ShadowRequest
		want       error
		msg        string
	}{
		{"no target", "m", ShadowRequest{}, ErrInvalid, "--to"},
		{"incompatible inputs", "m", ShadowRequest{To: "m:3"}, ErrInvalid, `requests the primary answers would fail on the shadow: input "input" is FP64, not FP32`},
		{"percent", "m", ShadowRequest{To: "m:2", Percent: 150}, ErrInvalid, "spec.shadow.percent"},
		{"concurrency", "m", ShadowRequest{To: "m:2", MaxConcurrency: 1000}, ErrInvalid, "spec.shadow.maxConcurrency"},
		{"tolerance", "m", ShadowRequest{To: "m:2", Tolerance: &serving.Tolerance{Abs: -1}}, ErrInvalid, "spec.shadow.tolerance.abs"},
		{"short duration", "m", ShadowRequest{To: "m:2", Duration: serving.D(time.Millisecond)}, ErrInvalid, "1s or more"},
		{"openai", "chat", ShadowRequest{To: "/models/x"}, ErrInvalid, "OpenAI"},
		{"no deployment", "nope", ShadowRequest{To: "m:2"}, store.ErrNotFound, "nope"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.m.StartShadow(ctx, tt.deployment, tt.req, "alice")
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("StartShadow = %v; want %v with %q", err, tt.want, tt.msg)
			}
		})
	}
	if d := f.deployment(); d.Spec.Shadow != nil {
		t.Fatalf("refused starts left spec.shadow %+v", d.Spec.Shadow)
	}

	tol := &serving.Tolerance{Abs: 0.01, Rel: 0.01}
	st, err := f.m.StartShadow(ctx, "m", ShadowRequest{To: "m:2", Percent: 20, Duration: serving.D(30 * time.Minute), Tolerance: tol, MaxConcurrency: 8}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := serving.Shadow{Model: "m:2", Percent: 20, Tolerance: tol, MaxConcurrency: 8, Until: "2026-12-02T10:30:00Z"}
	if got := f.deployment().Spec.Shadow; got == nil || got.Model != want.Model || got.Percent != want.Percent || *got.Tolerance != *tol ||
		got.MaxConcurrency != want.MaxConcurrency || got.Until != want.Until || got.Requests != 0 {
		t.Fatalf("spec.shadow = %+v; want %+v", got, want)
	}
	if !st.Active || st.Reported || st.Verdict.Outcome != traffic.Pending || st.Until != want.Until || st.Percent != 20 || st.Criteria.MinRequests != 100 {
		t.Errorf("status after start = %+v", st)
	}
	if len(f.notified) == 0 || !strings.Contains(strings.Join(f.events, "\n"), "ShadowStarted: mirroring 20% of requests to m:2, by alice") {
		t.Errorf("notified %v, events %q", f.notified, f.events)
	}

	// A second start replaces the shadow: a new one, counted afresh.
	f.shadows.report("m", "m:2", agreeing(500, 500))
	st, err = f.m.StartShadow(ctx, "m", ShadowRequest{To: "m:2", Requests: 50}, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.deployment().Spec.Shadow; got.Requests != 50 || got.Until != "" || got.Percent != 0 || got.Tolerance != nil {
		t.Errorf("replaced spec.shadow = %+v; want requests 50 and the defaults", got)
	}
	if st.Compared != 0 || st.Reported || st.Criteria.MinRequests != 50 {
		t.Errorf("status of the replacement = %+v; want nothing counted yet, judged over its 50 requests", st)
	}
	if !strings.Contains(strings.Join(f.events, "\n"), "replacing the shadow of m:2, by bob") {
		t.Errorf("events %q lack the replacement", f.events)
	}

	// A rollout takes over from the shadow; no shadow starts while it is
	// active.
	if _, err := f.m.Start(ctx, "m", Request{To: "m:2"}); err != nil {
		t.Fatal(err)
	}
	if d := f.deployment(); d.Spec.Shadow != nil || len(d.Spec.Traffic) != 2 {
		t.Errorf("after a rollout started: shadow %+v, traffic %+v; want the canary's split and no shadow", d.Spec.Shadow, d.Spec.Traffic)
	}
	if !strings.Contains(strings.Join(f.events, "\n"), "ShadowStopped: shadow of m:2 ended: the canary of m:2 takes over") {
		t.Errorf("events %q lack the shadow's end", f.events)
	}
	if _, err := f.m.StartShadow(ctx, "m", ShadowRequest{To: "m:2"}, "alice"); !errors.Is(err, ErrActive) || !strings.Contains(err.Error(), "ebb rollout abort m") {
		t.Errorf("StartShadow during a rollout = %v; want ErrActive saying how to end it", err)
	}
}

func TestShadowStatus(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		spec     serving.Shadow
		report   string // the model a gateway reports; "" for none
		sum      traffic.Summary
		after    time.Duration // the clock moves on this long
		criteria ShadowCriteria
		nilSrc   bool // no Shadows source at all (a cluster before it is wired)

		wantActive  bool
		wantOutcome traffic.Outcome
		wantReason  string
		wantMin     int
	}{
		{name: "no source", spec: serving.Shadow{Model: "m:2"}, nilSrc: true,
			wantActive: true, wantOutcome: traffic.Pending, wantReason: "no gateway reported", wantMin: 100},
		{name: "not reported", spec: serving.Shadow{Model: "m:2"},
			wantActive: true, wantOutcome: traffic.Pending, wantReason: "no gateway reported", wantMin: 100},
		{name: "previous shadow", spec: serving.Shadow{Model: "m:3"}, report: "m:2", sum: agreeing(500, 500),
			wantActive: true, wantOutcome: traffic.Pending, wantReason: "previous shadow", wantMin: 100},
		{name: "too few", spec: serving.Shadow{Model: "m:2"}, report: "m:2", sum: agreeing(40, 40),
			wantActive: true, wantOutcome: traffic.Pending, wantReason: "judged 40 of 100", wantMin: 100},
		{name: "pass", spec: serving.Shadow{Model: "m:2"}, report: "m:2", sum: agreeing(200, 199),
			wantActive: true, wantOutcome: traffic.Pass, wantReason: "≥ 99.0%", wantMin: 100},
		{name: "fail", spec: serving.Shadow{Model: "m:2"}, report: "m:2", sum: agreeing(200, 150),
			wantActive: true, wantOutcome: traffic.Fail, wantReason: "agreement 75.0% < 99.0% over 200", wantMin: 100},
		{name: "criteria asked", spec: serving.Shadow{Model: "m:2"}, report: "m:2", sum: agreeing(200, 150), criteria: ShadowCriteria{MinAgreement: 0.7, MinRequests: 150},
			wantActive: true, wantOutcome: traffic.Pass, wantReason: "over 200", wantMin: 150},
		{name: "requests of the spec", spec: serving.Shadow{Model: "m:2", Requests: 300}, report: "m:2", sum: agreeing(200, 200),
			wantActive: true, wantOutcome: traffic.Pending, wantReason: "judged 200 of 300", wantMin: 300},
		{name: "requests reached", spec: serving.Shadow{Model: "m:2", Requests: 300}, report: "m:2", sum: agreeing(300, 300),
			wantActive: false, wantOutcome: traffic.Pass, wantMin: 300},
		{name: "until passed", spec: serving.Shadow{Model: "m:2", Until: "2026-12-02T10:30:00Z"}, report: "m:2", sum: agreeing(100, 100), after: 31 * time.Minute,
			wantActive: false, wantOutcome: traffic.Pass, wantMin: 100},
		{name: "until ahead", spec: serving.Shadow{Model: "m:2", Until: "2026-12-02T10:30:00Z"}, report: "m:2", sum: agreeing(100, 100), after: 29 * time.Minute,
			wantActive: true, wantOutcome: traffic.Pass, wantMin: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "m:1")
			sh := tt.spec
			if _, err := f.st.UpdateDeployment(ctx, "m", func(d *serving.Deployment) error { d.Spec.Shadow = &sh; return nil }); err != nil {
				t.Fatal(err)
			}
			if tt.report != "" {
				f.shadows.report("m", tt.report, tt.sum)
			}
			if tt.nilSrc {
				f.m = New(f.st, f.st, f.meters, Options{Clock: f.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			}
			f.clock.Step(tt.after)
			st, err := f.m.ShadowStatus(ctx, "m", tt.criteria)
			if err != nil {
				t.Fatal(err)
			}
			if st.Active != tt.wantActive || st.Verdict.Outcome != tt.wantOutcome || !strings.Contains(st.Verdict.Reason, tt.wantReason) || st.Criteria.MinRequests != tt.wantMin {
				t.Fatalf("status = active %v, verdict %+v, criteria %+v; want active %v, %s with %q, min requests %d",
					st.Active, st.Verdict, st.Criteria, tt.wantActive, tt.wantOutcome, tt.wantReason, tt.wantMin)
			}
			if reported := tt.report == tt.spec.Model; st.Reported != reported || (reported && st.Compared != tt.sum.Compared) {
				t.Errorf("reported %v, compared %d; want %v, %d", st.Reported, st.Compared, reported, tt.sum.Compared)
			}
		})
	}
}

func TestShadowStatusRefused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "m:1")
	for _, tt := range []struct {
		name       string
		deployment string
		criteria   ShadowCriteria
		want       error
		msg        string
	}{
		{"none", "m", ShadowCriteria{}, ErrNoShadow, "ebb shadow start m --to MODEL"},
		{"no deployment", "nope", ShadowCriteria{}, store.ErrNotFound, "nope"},
		{"agreement", "m", ShadowCriteria{MinAgreement: 99}, ErrInvalid, "outside 0..1"},
		{"requests", "m", ShadowCriteria{MinRequests: -1}, ErrInvalid, "min requests -1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.m.ShadowStatus(ctx, tt.deployment, tt.criteria)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("ShadowStatus = %v; want %v with %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestStopShadow(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "/models/m.json")
	if _, err := f.m.StopShadow(ctx, "m", "alice"); !errors.Is(err, ErrNoShadow) {
		t.Fatalf("StopShadow without a shadow = %v; want ErrNoShadow", err)
	}
	if _, err := f.m.StartShadow(ctx, "m", ShadowRequest{To: "/models/m-v2.json"}, "alice"); err != nil {
		t.Fatal(err)
	}
	f.shadows.report("m", "/models/m-v2.json", agreeing(120, 60))
	f.notified = nil
	st, err := f.m.StopShadow(ctx, "m", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if st.Active || st.Compared != 120 || st.Verdict.Outcome != traffic.Fail {
		t.Errorf("final status = active %v, compared %d, verdict %+v; want inactive, 120, fail", st.Active, st.Compared, st.Verdict)
	}
	if d := f.deployment(); d.Spec.Shadow != nil {
		t.Errorf("spec.shadow = %+v after stop; want none", d.Spec.Shadow)
	}
	if len(f.notified) != 1 || !strings.Contains(strings.Join(f.events, "\n"), "ShadowStopped: shadow of /models/m-v2.json stopped after 120 compared requests; verdict fail") {
		t.Errorf("notified %v, events %q", f.notified, f.events)
	}
	if _, err := f.m.StopShadow(ctx, "m", "alice"); !errors.Is(err, ErrNoShadow) {
		t.Errorf("second StopShadow = %v; want ErrNoShadow", err)
	}
}

func TestRolloutRequiresShadow(t *testing.T) {
	ctx := context.Background()
	gate := &ShadowCriteria{MinAgreement: 0.99, MinRequests: 200}
	tests := []struct {
		name   string
		shadow string // the shadow's model; "" for none
		report traffic.Summary
		to     string
		gate   *ShadowCriteria
		want   error
		msg    string
	}{
		{name: "no shadow", to: "m:2", gate: gate, want: ErrShadowUnmet, msg: "ebb shadow start m --to m:2"},
		{name: "other version", shadow: "m:3", report: agreeing(500, 500), to: "m:2", gate: gate, want: ErrShadowUnmet, msg: "shadows m:3, not m:2"},
		{name: "pending", shadow: "m:2", report: agreeing(150, 150), to: "m:2", gate: gate, want: ErrShadowUnmet, msg: "pending: judged 150 of 200"},
		{name: "failing", shadow: "m:2", report: agreeing(300, 280), to: "m:2", gate: gate, want: ErrShadowUnmet, msg: "fail: agreement 93.3% < 99.0%"},
		{name: "bad criteria", shadow: "m:2", report: agreeing(300, 300), to: "m:2", gate: &ShadowCriteria{MinAgreement: 2}, want: ErrInvalid, msg: "outside 0..1"},
		{name: "passing", shadow: "m:2", report: agreeing(300, 299), to: "m:2", gate: gate},
		{name: "defaults", shadow: "m:2", report: agreeing(100, 100), to: "m:2", gate: &ShadowCriteria{}},
		{name: "alias of the version", shadow: "m@challenger", report: agreeing(300, 300), to: "m:2", gate: gate},
		{name: "no gate", shadow: "m:3", report: agreeing(10, 0), to: "m:2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "m:1")
			f.versions(3)
			if _, err := f.svc.MoveAlias(ctx, "m", "challenger", 2, registry.AnyVersion, "alice"); err != nil {
				t.Fatal(err)
			}
			if tt.shadow != "" {
				if _, err := f.m.StartShadow(ctx, "m", ShadowRequest{To: tt.shadow}, "alice"); err != nil {
					t.Fatal(err)
				}
				f.shadows.report("m", tt.shadow, tt.report)
			}
			_, err := f.m.Start(ctx, "m", Request{To: tt.to, RequireShadow: tt.gate})
			if tt.want != nil {
				if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("Start = %v; want %v with %q", err, tt.want, tt.msg)
				}
				if d := f.deployment(); d.Spec.Traffic != nil || (tt.shadow != "") != (d.Spec.Shadow != nil) {
					t.Errorf("a refused start changed the deployment: traffic %+v, shadow %+v", d.Spec.Traffic, d.Spec.Shadow)
				}
				return
			}
			if err != nil {
				t.Fatalf("Start = %v; want it started", err)
			}
			if d := f.deployment(); d.Spec.Shadow != nil || len(d.Spec.Traffic) != 2 {
				t.Errorf("started: shadow %+v, traffic %+v; want the canary's split and no shadow", d.Spec.Shadow, d.Spec.Traffic)
			}
		})
	}
}
