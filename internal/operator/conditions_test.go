package operator

import (
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/traffic"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// canary is a rollout of m to diabetes:3 in phase, at weight, step (an
// index of steps 5, 25, 50, 100), started at t0.
func canary(phase traffic.Phase, weight, step int, reason string) *rollout.Status {
	s := &rollout.Status{ID: "m-canary-1", Deployment: "m", From: "diabetes@champion", To: "diabetes:3", Active: !phase.Final(), CreatedAt: t0, UpdatedAt: t0}
	s.Policy.Steps = []int{5, 25, 50, 100}
	s.State = traffic.State{Phase: phase, Weight: weight, Step: step, Reason: reason}
	return s
}

func TestDesiredStatusRollout(t *testing.T) {
	ended := metav1.Condition{Type: ConditionRollout, Status: metav1.ConditionFalse, Reason: "Succeeded", Message: "canary diabetes:2: promoted", LastTransitionTime: metav1.NewTime(t0.Add(-time.Hour))}
	tests := []struct {
		name    string
		created time.Time // the ModelDeployment's creation
		had     *metav1.Condition
		rollout *rollout.Status
		want    *metav1.Condition // nil: none
	}{
		{name: "no rollout"},
		{name: "none reported yet keeps the condition", had: &ended, want: &ended},
		{
			name: "progressing", rollout: canary(traffic.Progressing, 25, 1, "only 3 of 50 requests to the canary in this step"),
			want: &metav1.Condition{Status: metav1.ConditionTrue, Reason: "Progressing", Message: "canary diabetes:3 at 25% (step 2 of 4)"},
		},
		{
			name: "progressing after an earlier rollout", had: &ended, rollout: canary(traffic.Progressing, 5, 0, "started at step 1 of 4 (5%)"),
			want: &metav1.Condition{Status: metav1.ConditionTrue, Reason: "Progressing", Message: "canary diabetes:3 at 5% (step 1 of 4)"},
		},
		{
			name: "paused", rollout: canary(traffic.Paused, 25, 1, "paused: alice"),
			want: &metav1.Condition{Status: metav1.ConditionTrue, Reason: "Paused", Message: "canary diabetes:3 at 25% (step 2 of 4); paused: alice"},
		},
		{
			name: "succeeded", rollout: canary(traffic.Succeeded, 100, 3, "step 3 (50%) passed: error rate 0.0% ≤ 1.0%; canary promoted"),
			want: &metav1.Condition{Status: metav1.ConditionFalse, Reason: "Succeeded", Message: "canary diabetes:3: step 3 (50%) passed: error rate 0.0% ≤ 1.0%; canary promoted"},
		},
		{
			name: "rolled back", rollout: canary(traffic.RolledBack, 0, 0, "canary error rate 20.0% > max 1.0% over 300 requests"),
			want: &metav1.Condition{Status: metav1.ConditionFalse, Reason: "RolledBack", Message: "canary diabetes:3: canary error rate 20.0% > max 1.0% over 300 requests"},
		},
		{
			name: "aborted", rollout: canary(traffic.Aborted, 0, 1, "aborted: bob"),
			want: &metav1.Condition{Status: metav1.ConditionFalse, Reason: "Aborted", Message: "canary diabetes:3: aborted: bob"},
		},
		{
			name: "a rollout of a deleted deployment of the same name", created: t0.Add(time.Minute), rollout: canary(traffic.Aborted, 0, 1, "the deployment was deleted"),
		},
		{
			name: "unknown phase keeps the condition", had: &ended, rollout: canary("Sideways", 0, 1, ""), want: &ended,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "m", Generation: 2, CreationTimestamp: metav1.NewTime(tt.created)}}
			if tt.had != nil {
				md.Status.Conditions = []metav1.Condition{*tt.had}
			}
			st := desiredStatus(md, observation{seen: true, generation: 2, rollout: tt.rollout}, t0.Add(time.Second))
			got := findCondition(st.Conditions, ConditionRollout)
			switch {
			case tt.want == nil && got != nil:
				t.Fatalf("Rollout condition %+v; want none", *got)
			case tt.want == nil:
				return
			case got == nil:
				t.Fatalf("no Rollout condition; want %+v", *tt.want)
			}
			if got.Status != tt.want.Status || got.Reason != tt.want.Reason || got.Message != tt.want.Message {
				t.Errorf("Rollout condition %s %s %q; want %s %s %q", got.Status, got.Reason, got.Message, tt.want.Status, tt.want.Reason, tt.want.Message)
			}
		})
	}
}

// TestRolloutConditionTransitions follows one rollout: the transition time
// moves when it ends, not when it pauses.
func TestRolloutConditionTransitions(t *testing.T) {
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "m", Generation: 1}}
	steps := []struct {
		rollout *rollout.Status
		status  metav1.ConditionStatus
		since   time.Duration // after t0
	}{
		{canary(traffic.Progressing, 5, 0, ""), metav1.ConditionTrue, 0},
		{canary(traffic.Progressing, 25, 1, ""), metav1.ConditionTrue, 0},
		{canary(traffic.Paused, 25, 1, "paused: alice"), metav1.ConditionTrue, 0},
		{canary(traffic.RolledBack, 0, 1, "canary error rate 20.0% > max 1.0%"), metav1.ConditionFalse, 3 * time.Minute},
		{nil, metav1.ConditionFalse, 3 * time.Minute}, // a new leader, before its first pass
	}
	for i, s := range steps {
		now := t0.Add(time.Duration(i) * time.Minute)
		md.Status = desiredStatus(md, observation{seen: true, generation: 1, rollout: s.rollout}, now)
		c := findCondition(md.Status.Conditions, ConditionRollout)
		if c == nil || c.Status != s.status || !c.LastTransitionTime.Time.Equal(t0.Add(s.since)) {
			t.Errorf("step %d: Rollout condition %+v; want %s since t0+%v", i, c, s.status, s.since)
		}
	}
}

// compared is a shadow's summary: n compared, agreed of them, errs shadow
// errors.
func compared(n, agreed, errs int64) traffic.Summary {
	s := traffic.Summary{Compared: n, Agreed: agreed, ShadowErrors: errs}
	if n > 0 {
		s.Agreement = float64(agreed) / float64(n)
	}
	return s
}

func TestDesiredStatusShadow(t *testing.T) {
	mirroring := metav1.Condition{Type: ConditionShadow, Status: metav1.ConditionTrue, Reason: ReasonMirroring, Message: "mirroring", LastTransitionTime: metav1.NewTime(t0)}
	now := t0.Add(time.Hour)
	tests := []struct {
		name   string
		shadow *serving.Shadow
		had    *metav1.Condition
		view   shadowView
		want   *metav1.Condition // nil: none
	}{
		{name: "no shadow"},
		{name: "shadow removed", had: &mirroring},
		{
			name: "not reported yet", shadow: &serving.Shadow{Model: "diabetes:4", Percent: 25},
			want: &metav1.Condition{Status: metav1.ConditionTrue, Reason: ReasonMirroring, Message: "mirroring 25% of requests to diabetes:4; verdict pending: no gateway reported it yet"},
		},
		{
			name: "too few judged", shadow: &serving.Shadow{Model: "diabetes:4"}, had: &mirroring, view: shadowView{sum: compared(40, 40, 0), reported: true},
			want: &metav1.Condition{Status: metav1.ConditionTrue, Reason: ReasonMirroring, Message: "mirroring 100% of requests to diabetes:4; compared 40, agreement 100.0%; verdict pending: judged 40 of 100 requests"},
		},
		{
			name: "passing", shadow: &serving.Shadow{Model: "diabetes:4"}, view: shadowView{sum: compared(200, 199, 0), reported: true},
			want: &metav1.Condition{Status: metav1.ConditionTrue, Reason: ReasonMirroring, Message: "mirroring 100% of requests to diabetes:4; compared 200, agreement 99.5%; verdict pass: agreement 99.5% ≥ 99.0% over 200 requests"},
		},
		{
			name: "failing", shadow: &serving.Shadow{Model: "diabetes:4"}, view: shadowView{sum: compared(200, 150, 0), reported: true},
			want: &metav1.Condition{Status: metav1.ConditionTrue, Reason: ReasonMirroring, Message: "verdict fail: agreement 75.0% < 99.0% over 200 requests"},
		},
		{
			name: "its requests judged", shadow: &serving.Shadow{Model: "diabetes:4", Requests: 100}, had: &mirroring, view: shadowView{sum: compared(95, 95, 5), reported: true},
			want: &metav1.Condition{Status: metav1.ConditionFalse, Reason: ReasonDone, Message: "done mirroring to diabetes:4: 100 requests judged; compared 95, agreement 100.0%, 5 shadow errors; verdict fail: agreement 95.0% < 99.0% over 100 requests"},
		},
		{
			name: "its end passed", shadow: &serving.Shadow{Model: "diabetes:4", Until: now.Add(-time.Second).Format(time.RFC3339)}, view: shadowView{sum: compared(3, 3, 0), reported: true},
			want: &metav1.Condition{Status: metav1.ConditionFalse, Reason: ReasonDone, Message: "done mirroring to diabetes:4: its end, 2026-01-02T04:04:04Z, passed; compared 3"},
		},
		{
			name: "its end to come", shadow: &serving.Shadow{Model: "diabetes:4", Until: now.Add(time.Second).Format(time.RFC3339)}, view: shadowView{sum: compared(3, 3, 0), reported: true},
			want: &metav1.Condition{Status: metav1.ConditionTrue, Reason: ReasonMirroring, Message: "mirroring 100% of requests to diabetes:4; compared 3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "m", Generation: 1}}
			md.Spec.Shadow = tt.shadow
			if tt.had != nil {
				md.Status.Conditions = []metav1.Condition{*tt.had}
			}
			st := desiredStatus(md, observation{seen: true, generation: 1, shadow: tt.view}, now)
			got := findCondition(st.Conditions, ConditionShadow)
			switch {
			case tt.want == nil && got != nil:
				t.Fatalf("Shadow condition %+v; want none", *got)
			case tt.want == nil:
				return
			case got == nil:
				t.Fatalf("no Shadow condition; want %+v", *tt.want)
			}
			if got.Status != tt.want.Status || got.Reason != tt.want.Reason || !strings.Contains(got.Message, tt.want.Message) {
				t.Errorf("Shadow condition %s %s %q; want %s %s with %q", got.Status, got.Reason, got.Message, tt.want.Status, tt.want.Reason, tt.want.Message)
			}
			if tt.had != nil && got.Status == tt.had.Status && !got.LastTransitionTime.Equal(&tt.had.LastTransitionTime) {
				t.Errorf("transition time moved to %v with the status unchanged", got.LastTransitionTime)
			}
		})
	}
}

// TestShadowStatusWrites has a shadow compare 10 requests a second for
// two minutes, the status computed every second as the status writer
// does: the status changes when a gateway first reports, when the first
// verdict comes, when the requests are all judged, and otherwise at most
// once every shadowFiguresEvery.
func TestShadowStatusWrites(t *testing.T) {
	sh := &serving.Shadow{Model: "diabetes:4", Requests: 1000}
	md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "m", Generation: 1}}
	md.Spec.Shadow = sh
	figures := newShadowFigures(shadowFiguresEvery)
	writes, done := 0, time.Duration(0)
	var reasons []string
	for s := range 120 {
		now := t0.Add(time.Duration(s) * time.Second)
		var n int64
		if s >= 5 { // the first report comes after 5s
			n = min(int64(s-4)*10, sh.Requests)
		}
		view := figures.show("m", sh, compared(n, n, 0), s >= 5, now)
		st := desiredStatus(md, observation{seen: true, generation: 1, shadow: view}, now)
		if sameJSON(md.Status, st) {
			continue
		}
		writes++
		md.Status = st
		c := findCondition(st.Conditions, ConditionShadow)
		if len(reasons) == 0 || reasons[len(reasons)-1] != c.Reason {
			reasons = append(reasons, c.Reason)
		}
		if c.Reason == ReasonDone && done == 0 {
			done = now.Sub(t0)
		}
	}
	// The first status, the first report (5s), the first verdict (100
	// judged, 14s), a refresh every 10s between that and 1000 judged (8),
	// 1000 judged (104s), and none after: 12, where every figure changed
	// every second.
	if writes > 12 {
		t.Errorf("%d status writes in 120s; want at most 12", writes)
	}
	if want := 104 * time.Second; done != want {
		t.Errorf("Done at t0+%v; want at once, t0+%v", done, want)
	}
	if got := strings.Join(reasons, ","); got != "Mirroring,Done" {
		t.Errorf("reasons %s; want Mirroring,Done", got)
	}
	if c := findCondition(md.Status.Conditions, ConditionShadow); !strings.Contains(c.Message, "compared 1000") || !strings.Contains(c.Message, "verdict pass") {
		t.Errorf("final message %q lacks the final figures", c.Message)
	}
	// The shadow removed: so is the condition, and the figures held.
	md.Spec.Shadow = nil
	figures.show("m", nil, traffic.Summary{}, false, t0.Add(121*time.Second))
	if st := desiredStatus(md, observation{seen: true, generation: 1}, t0.Add(121*time.Second)); findCondition(st.Conditions, ConditionShadow) != nil {
		t.Errorf("Shadow condition left after spec.shadow was removed")
	}
	if len(figures.held) != 0 {
		t.Errorf("figures of a removed shadow held: %v", figures.held)
	}
}

func TestRolloutStates(t *testing.T) {
	at := func(id string, phase traffic.Phase, created, updated time.Duration) rollout.Status {
		s := rollout.Status{ID: id, CreatedAt: t0.Add(created), UpdatedAt: t0.Add(updated)}
		s.Phase = phase
		s.History = []traffic.StepResult{{Step: 0}}
		return s
	}
	tests := []struct {
		name string
		sets []rollout.Status
		want string // ID and phase kept
	}{
		{"one", []rollout.Status{at("a", traffic.Progressing, 0, 0)}, "a Progressing"},
		{"a change", []rollout.Status{at("a", traffic.Progressing, 0, 0), at("a", traffic.Paused, 0, time.Second)}, "a Paused"},
		{"the same again", []rollout.Status{at("a", traffic.Paused, 0, time.Second), at("a", traffic.Paused, 0, time.Second)}, "a Paused"},
		{"a stale report", []rollout.Status{at("a", traffic.Paused, 0, 2*time.Second), at("a", traffic.Progressing, 0, time.Second)}, "a Paused"},
		{"a stale report after the end", []rollout.Status{at("a", traffic.Aborted, 0, time.Second), at("a", traffic.Progressing, 0, time.Second)}, "a Aborted"},
		{"a new rollout", []rollout.Status{at("a", traffic.Succeeded, 0, time.Second), at("b", traffic.Progressing, time.Minute, time.Minute)}, "b Progressing"},
		{"an old rollout's late report", []rollout.Status{at("b", traffic.Progressing, time.Minute, time.Minute), at("a", traffic.Succeeded, 0, time.Second)}, "b Progressing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRolloutStates()
			for _, s := range tt.sets {
				r.Set("m", s)
			}
			got, ok := r.Get("m")
			if !ok || got.ID+" "+string(got.Phase) != tt.want {
				t.Errorf("kept %s %s (%v); want %s", got.ID, got.Phase, ok, tt.want)
			}
			if got.History != nil {
				t.Errorf("history kept")
			}
			if _, ok := r.Get("other"); ok {
				t.Errorf("a deployment never reported has a rollout")
			}
		})
	}
}
