package traffic

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Policy)
		want   []string // one part per problem; none for a valid policy
	}{
		{"defaults", func(*Policy) {}, nil},
		{"two steps", func(p *Policy) { p.Steps = []int{10, 100} }, nil},
		{"no error allowed", func(p *Policy) { p.MaxErrorRate = 0 }, nil},
		{"no steps", func(p *Policy) { p.Steps = nil }, []string{"steps: give the canary's weights"}},
		{"only 100", func(p *Policy) { p.Steps = []int{100} }, []string{"at least one weight below 100"}},
		{"not ascending", func(p *Policy) { p.Steps = []int{5, 50, 25, 100} }, []string{"25 after 50 is not ascending"}},
		{"repeated", func(p *Policy) { p.Steps = []int{5, 5, 100} }, []string{"5 after 5 is not ascending"}},
		{"zero weight", func(p *Policy) { p.Steps = []int{0, 50, 100} }, []string{"weight 0 is outside 1..100"}},
		{"not ending at 100", func(p *Policy) { p.Steps = []int{5, 25, 50} }, []string{"the last weight is 50 but must be 100"}},
		{"above 100", func(p *Policy) { p.Steps = []int{5, 150} }, []string{"weight 150 is outside 1..100", "last weight is 150"}},
		{"zero interval", func(p *Policy) { p.Interval = 0 }, []string{"interval: 0s must be greater than zero"}},
		{"error rate as percent", func(p *Policy) { p.MaxErrorRate = 5 }, []string{"max error rate: 5 is outside 0..1; give a fraction, e.g. 0.01 for 1%"}},
		{"zero ratio", func(p *Policy) { p.MaxP99Ratio = 0 }, []string{"max p99 ratio: 0 must be a number greater than 0"}},
		{"no min requests", func(p *Policy) { p.MinRequests = 0 }, []string{"min requests: 0 must be at least 1"}},
		{"all wrong", func(p *Policy) { *p = Policy{} }, []string{"steps:", "interval:", "max p99 ratio:", "min requests:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultPolicy()
			tc.change(&p)
			err := p.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("Validate() gave %d problems, want %d: %v", len(lines), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func m(requests, errors int64, p99 time.Duration) Measurement {
	r := Measurement{Requests: requests, Errors: errors, P50: p99 / 2, P99: p99}
	if requests > 0 {
		r.ErrorRate = float64(errors) / float64(requests)
	}
	return r
}

func TestDecide(t *testing.T) {
	at := func(step int) State {
		return State{Phase: Progressing, Step: step, Weight: DefaultSteps[step], StepStarted: t0}
	}
	good, primary := m(40, 0, 110*time.Millisecond), m(700, 1, 100*time.Millisecond)
	over := t0.Add(time.Minute)
	tests := []struct {
		name            string
		now             time.Time
		change          func(*Policy)
		state           State
		canary, primary Measurement
		action          Action
		reason          string
		step, weight    int
	}{
		{"paused", over, nil, State{Phase: Paused, Weight: 5, StepStarted: t0}, good, primary,
			Wait, "paused", 0, 5},
		{"succeeded", over, nil, State{Phase: Succeeded, Step: 3, Weight: 100}, good, primary,
			Wait, "rollout is over (Succeeded)", 3, 100},
		{"rolled back", over, nil, State{Phase: RolledBack}, good, primary,
			Wait, "rollout is over (RolledBack)", 0, 0},
		{"invalid policy", over, func(p *Policy) { p.Interval = 0 }, at(0), good, primary,
			Wait, "policy is invalid: interval: 0s must be greater than zero, e.g. 1m", 0, 5},
		{"step outside the policy", over, nil, State{Phase: Progressing, Step: 3, Weight: 100}, good, primary,
			Wait, "step index 3 is not a canary step of the policy (steps 5,25,50,100)", 3, 100},
		{"interval not over", t0.Add(30 * time.Second), nil, at(0), good, primary,
			Wait, "interval not over: 30s of 1m0s left", 0, 5},
		{"error breach rolls back before the interval is over", t0.Add(20 * time.Second), nil, at(0), m(35, 7, 0), primary,
			Rollback, "canary error rate 20.0% > max 1.0% over 35 requests", 0, 0},
		{"unclear error breach waits for the interval", t0.Add(20 * time.Second), nil, at(0), m(95, 1, 0), primary,
			Wait, "interval not over: 40s of 1m0s left", 0, 5},
		{"the same breach rolls back when the interval is over", over, nil, at(0), m(95, 1, time.Millisecond), primary,
			Rollback, "canary error rate 1.1% > max 1.0% over 95 requests", 0, 0},
		{"error breach on too few requests waits", t0.Add(20 * time.Second), nil, at(0), m(10, 5, 0), primary,
			Wait, "interval not over: 40s of 1m0s left", 0, 5},
		{"too few requests after the interval waits", over, nil, at(0), m(7, 0, time.Millisecond), primary,
			Wait, "only 7 of 20 requests to the canary in this step", 0, 5},
		{"no traffic waits", t0.Add(time.Hour), nil, at(0), Measurement{}, Measurement{},
			Wait, "only 0 of 20 requests to the canary in this step", 0, 5},
		{"no primary traffic waits", over, nil, at(2), good, m(3, 0, time.Millisecond),
			Wait, "only 3 of 20 requests to the primary in this step; its p99 is needed to judge the canary's", 2, 50},
		{"error rate read from the counts", over, nil, at(0), Measurement{Requests: 40, Errors: 4, P99: time.Millisecond}, primary,
			Rollback, "canary error rate 10.0% > max 1.0% over 40 requests", 0, 0},
		{"p99 breach", over, nil, at(0), m(35, 0, 180*time.Millisecond), primary,
			Rollback, "canary p99 180ms > 1.5 × primary p99 100ms (1.80×) over 35 and 700 requests", 0, 0},
		{"p99 breach of a primary at zero", over, nil, at(0), m(35, 0, time.Microsecond), m(700, 0, 0),
			Rollback, "canary p99 1µs > 1.5 × primary p99 0s over 35 and 700 requests", 0, 0},
		{"close error rates are told apart", over, func(p *Policy) { p.MaxErrorRate = 0.02 }, at(0), m(10000, 203, time.Millisecond), primary,
			Rollback, "canary error rate 2.03% > max 2.00% over 10000 requests", 0, 0},
		{"any error breaches a max of 0", t0.Add(time.Second), func(p *Policy) { p.MaxErrorRate = 0 }, at(0), m(100, 1, time.Millisecond), primary,
			Rollback, "canary error rate 1.0% > max 0.0% over 100 requests", 0, 0},
		{"bounds are inclusive", over, nil, at(0), m(100, 1, 150*time.Millisecond), primary,
			Advance, "step 1 (5%) passed: error rate 1.0% ≤ 1.0%, p99 150ms ≤ 1.5 × primary 100ms over 100 requests", 1, 25},
		{"pass advances", over, nil, at(0), good, primary,
			Advance, "step 1 (5%) passed: error rate 0.0% ≤ 1.0%, p99 110ms ≤ 1.5 × primary 100ms over 40 requests", 1, 25},
		{"pass before 100 promotes", over, nil, at(2), good, primary,
			Promote, "step 3 (50%) passed: error rate 0.0% ≤ 1.0%, p99 110ms ≤ 1.5 × primary 100ms over 40 requests; canary promoted", 3, 100},
		{"minimum of one request", over, func(p *Policy) { p.MinRequests = 1 }, at(1), m(1, 0, time.Millisecond), m(1, 0, time.Millisecond),
			Advance, "step 2 (25%) passed: error rate 0.0% ≤ 1.0%, p99 1ms ≤ 1.5 × primary 1ms over 1 requests", 2, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultPolicy()
			if tc.change != nil {
				tc.change(&p)
			}
			want := Decision{Action: tc.action, Reason: tc.reason, Step: tc.step, Weight: tc.weight}
			if tc.action != Wait {
				want.Result = &StepResult{
					Step: tc.state.Step, Weight: tc.state.Weight, Started: t0, Ended: tc.now,
					Outcome: tc.action, Reason: tc.reason, Canary: tc.canary, Primary: tc.primary,
				}
			}
			got := Decide(tc.now, p, tc.state, tc.canary, tc.primary)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApply(t *testing.T) {
	p := DefaultPolicy()
	start, err := Start(t0, p)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(State{Phase: Progressing, Weight: 5, StepStarted: t0, Reason: "started at step 1 of 4 (5%)"}, start); diff != "" {
		t.Errorf("Start (-want +got):\n%s", diff)
	}
	now := t0.Add(time.Minute)
	good, primary := m(40, 0, 110*time.Millisecond), m(700, 1, 100*time.Millisecond)
	adv := Decide(now, p, start, good, primary)
	s := Apply(now, start, adv)
	want := State{Phase: Progressing, Step: 1, Weight: 25, StepStarted: now, Reason: adv.Reason, History: []StepResult{*adv.Result}}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("Apply(Advance) (-want +got):\n%s", diff)
	}

	later := now.Add(10 * time.Second)
	wait := Decide(later, p, s, good, primary)
	if diff := cmp.Diff(State{Phase: Progressing, Step: 1, Weight: 25, StepStarted: now, Reason: "interval not over: 50s of 1m0s left", History: s.History}, Apply(later, s, wait)); diff != "" {
		t.Errorf("Apply(Wait) (-want +got):\n%s", diff)
	}

	back := Decide(later, p, s, m(40, 10, time.Millisecond), primary)
	rolled := Apply(later, s, back)
	if rolled.Phase != RolledBack || rolled.Weight != 0 || len(rolled.History) != 2 || rolled.Reason != back.Reason {
		t.Errorf("Apply(Rollback) = %+v, want RolledBack at weight 0 with two results", rolled)
	}
	if len(s.History) != 1 {
		t.Errorf("Apply changed the history of the state it was given: %d results", len(s.History))
	}
	// A rollout paused between Decide and Apply stays paused.
	paused, err := Pause(s, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(paused, Apply(later, paused, back)); diff != "" {
		t.Errorf("Apply to a paused rollout changed it (-want +got):\n%s", diff)
	}

	promote := Decide(later.Add(time.Minute), p, State{Phase: Progressing, Step: 2, Weight: 50, StepStarted: later}, good, primary)
	done := Apply(later.Add(time.Minute), State{Phase: Progressing, Step: 2, Weight: 50, StepStarted: later}, promote)
	if done.Phase != Succeeded || done.Weight != 100 || done.Step != 3 {
		t.Errorf("Apply(Promote) = %+v, want Succeeded at step 3, weight 100", done)
	}
}

// TestStateSurvivesJSON checks that a stored state reads back the same, as
// a restart of `ebb up` or of the operator needs.
func TestStateSurvivesJSON(t *testing.T) {
	p := DefaultPolicy()
	s, err := Start(t0, p)
	if err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Minute)
	s = Apply(now, s, Decide(now, p, s, m(40, 0, 12500*time.Microsecond), m(700, 1, 11*time.Millisecond)))
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	for _, field := range []string{`"phase":"Progressing"`, `"weight":25`, `"reason":"step 1 (5%) passed`, `"outcome":"Advance"`, `"p99":"12.5ms"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("JSON %s lacks %s", b, field)
		}
	}
}
