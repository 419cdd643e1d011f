package traffic

import (
	"errors"
	"fmt"
	"time"
)

// ErrRolloutOver is wrapped by the errors of Pause, Resume, Abort and
// PromoteNow when the rollout has already ended; the API answers 409.
var ErrRolloutOver = errors.New("rollout is over")

// overError says that op cannot apply to s, which has ended.
func overError(op string, s State) error {
	return fmt.Errorf("cannot %s: %w (%s: %s); start a new rollout to move traffic again", op, ErrRolloutOver, s.Phase, s.Reason)
}

// Pause stops the judging of a Progressing rollout: the canary keeps its
// weight and Decide waits until Resume. Pausing a paused rollout changes
// nothing.
func Pause(s State, reason string) (State, error) {
	switch {
	case s.Phase == Paused:
		return s, nil
	case s.Phase.Final():
		return s, overError("pause", s)
	}
	s.Phase, s.Reason = Paused, "paused: "+reasonOr(reason, "by a user")
	return s, nil
}

// Resume continues a paused rollout at its step, whose interval starts
// again at now: what the canary did while paused (perhaps while its
// problem was looked into) is not judged. Resuming a Progressing rollout
// changes nothing.
func Resume(now time.Time, s State) (State, error) {
	switch {
	case s.Phase == Progressing:
		return s, nil
	case s.Phase.Final():
		return s, overError("resume", s)
	}
	s.Phase, s.StepStarted, s.Reason = Progressing, now, fmt.Sprintf("resumed at step %d (%d%%)", s.Step+1, s.Weight)
	return s, nil
}

// Abort ends a rollout by hand: all traffic goes back to the primary.
func Abort(s State, reason string) (State, error) {
	if s.Phase.Final() {
		return s, overError("abort", s)
	}
	s.Phase, s.Weight, s.Reason = Aborted, 0, "aborted: "+reasonOr(reason, "by a user")
	return s, nil
}

// PromoteNow ends a rollout by hand with the canary promoted, skipping the
// steps left: p gives the index of the final step. Promoting a rollout that
// already succeeded changes nothing.
func PromoteNow(s State, p Policy, reason string) (State, error) {
	switch {
	case s.Phase == Succeeded:
		return s, nil
	case s.Phase.Final():
		return s, overError("promote", s)
	}
	s.Reason = fmt.Sprintf("promoted %s at %d%%, skipping the analysis of the steps left", reasonOr(reason, "by a user"), s.Weight)
	s.Phase, s.Step, s.Weight = Succeeded, len(p.Steps)-1, 100
	return s, nil
}

func reasonOr(reason, otherwise string) string {
	if reason == "" {
		return otherwise
	}
	return reason
}
