package traffic

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestManualTransitions(t *testing.T) {
	p := DefaultPolicy()
	progressing := State{Phase: Progressing, Step: 1, Weight: 25, StepStarted: t0, Reason: "interval not over"}
	paused := State{Phase: Paused, Step: 1, Weight: 25, StepStarted: t0, Reason: "paused: by a user"}
	ended := State{Phase: RolledBack, Weight: 0, Reason: "canary error rate 20.0% > max 1.0% over 35 requests"}
	succeeded := State{Phase: Succeeded, Step: 3, Weight: 100, Reason: "promoted"}
	later := t0.Add(5 * time.Minute)
	tests := []struct {
		name    string
		do      func() (State, error)
		want    State
		wantErr bool
	}{
		{"pause", func() (State, error) { return Pause(progressing, "") }, paused, false},
		{"pause with a reason", func() (State, error) { return Pause(progressing, "looking into latency") },
			State{Phase: Paused, Step: 1, Weight: 25, StepStarted: t0, Reason: "paused: looking into latency"}, false},
		{"pause twice", func() (State, error) { return Pause(paused, "again") }, paused, false},
		{"pause an ended rollout", func() (State, error) { return Pause(ended, "") }, ended, true},
		{"resume restarts the step's interval", func() (State, error) { return Resume(later, paused) },
			State{Phase: Progressing, Step: 1, Weight: 25, StepStarted: later, Reason: "resumed at step 2 (25%)"}, false},
		{"resume a progressing rollout", func() (State, error) { return Resume(later, progressing) }, progressing, false},
		{"resume an ended rollout", func() (State, error) { return Resume(later, ended) }, ended, true},
		{"abort", func() (State, error) { return Abort(paused, "") },
			State{Phase: Aborted, Step: 1, Weight: 0, StepStarted: t0, Reason: "aborted: by a user"}, false},
		{"abort an ended rollout", func() (State, error) { return Abort(succeeded, "") }, succeeded, true},
		{"promote", func() (State, error) { return PromoteNow(progressing, p, "") },
			State{Phase: Succeeded, Step: 3, Weight: 100, StepStarted: t0, Reason: "promoted by a user at 25%, skipping the analysis of the steps left"}, false},
		{"promote twice", func() (State, error) { return PromoteNow(succeeded, p, "") }, succeeded, false},
		{"promote a rolled back rollout", func() (State, error) { return PromoteNow(ended, p, "") }, ended, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.do()
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrRolloutOver) {
				t.Errorf("error %v does not wrap ErrRolloutOver", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
		})
	}
	_, err := Pause(ended, "")
	want := "cannot pause: rollout is over (RolledBack: canary error rate 20.0% > max 1.0% over 35 requests); start a new rollout to move traffic again"
	if err == nil || err.Error() != want {
		t.Errorf("Pause(ended) error = %v, want %q", err, want)
	}
}
