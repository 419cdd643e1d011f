package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/apiclient"
	"github.com/ebb-ml/ebb/internal/control"
	"github.com/ebb-ml/ebb/internal/serving"
)

// deployWaitPoll is how often `ebb deploy --wait` asks for the status.
var deployWaitPoll = 500 * time.Millisecond

// rolloverText says what applying a spec over old does to its replicas:
// "rolling over from a.json to b.json" when old has replicas and the new
// spec runs other ones (another model, engine, environment, ...); "" when
// nothing rolls (no replica, or only scaling changed).
func rolloverText(old *serving.Deployment, applied serving.Deployment) string {
	if old == nil || old.Status.Replicas == 0 || old.Generation == applied.Generation || control.SameRuntime(old.Spec, applied.Spec) {
		return ""
	}
	from, to := modelText(old.Spec.Model, old.Status.ModelVersion), applied.Spec.Model
	if old.Spec.Model == applied.Spec.Model {
		return "rolling over to a new spec of " + from
	}
	return "rolling over from " + from + " to " + to
}

// rolloverHint is the line after a rollover when ebb deploy does not wait.
func rolloverHint(old *serving.Deployment) string {
	return fmt.Sprintf("  %d replicas of the old spec serve until the new ones are ready; --wait waits for it, `ebb get deployment %s -w` watches",
		old.Status.Replicas, old.Name)
}

// rollProgress counts a deployment's replicas by spec and state.
type rollProgress struct {
	observed           bool // the control loop took the generation waited for
	desired            int32
	newReady, starting int // replicas of the new spec
	oldServing         int // replicas of an earlier spec still serving
	draining           int
	modelVersion       string
}

func progressOf(st serving.Status, gen int64) rollProgress {
	p := rollProgress{observed: st.SpecGeneration >= gen, desired: st.DesiredReplicas, modelVersion: st.ModelVersion}
	for _, r := range st.ReplicaStatuses {
		switch {
		case r.State == serving.ReplicaDraining:
			p.draining++
		case r.Outdated && r.State == serving.ReplicaReady:
			p.oldServing++
		case r.Outdated:
		case r.State == serving.ReplicaReady:
			p.newReady++
		case r.State == serving.ReplicaStarting:
			p.starting++
		}
	}
	return p
}

// done reports whether the new spec serves everything: the loop took it, no
// replica of an earlier one is left, and the desired replicas are ready.
func (p rollProgress) done() bool {
	return p.observed && p.oldServing == 0 && p.draining == 0 && p.newReady >= int(p.desired)
}

func (p rollProgress) String() string {
	if !p.observed {
		return "the control loop has not taken the new spec yet"
	}
	s := fmt.Sprintf("%d of %d new replicas ready", p.newReady, p.desired)
	if p.starting > 0 {
		s += fmt.Sprintf(" (%d starting)", p.starting)
	}
	if p.oldServing+p.draining > 0 {
		s += fmt.Sprintf("; old: %d serving, %d draining", p.oldServing, p.draining)
	}
	return s
}

// waitRollout polls deployment name until generation gen serves all of its
// traffic, printing the progress to w whenever it changes, as kubectl
// rollout status does; it fails after timeout, and at once when the
// deployment fails (replicas of the new spec cannot start and none
// serves).
func waitRollout(ctx context.Context, c *apiclient.Client, w io.Writer, name string, gen int64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	var p rollProgress
	seen := map[string]bool{} // replica messages and failures printed
	everObserved := false
	for {
		d, err := c.GetDeployment(ctx, name)
		switch {
		case err == nil:
			st := d.Status
			p = progressOf(st, gen)
			everObserved = everObserved || st.SpecGeneration > 0
			if p.done() {
				fmt.Fprintf(w, "deployment/%s rolled out: %s\n", name, doneText(d, p))
				return nil
			}
			if line := p.String(); line != last {
				fmt.Fprintf(w, "Waiting for deployment/%s: %s\n", name, line)
				last = line
			}
			for _, r := range st.ReplicaStatuses {
				if msg := "replica " + r.ID + ": " + r.Message; r.Message != "" && !r.Outdated && !seen[msg] {
					seen[msg] = true
					fmt.Fprintf(w, "  %s\n", msg)
				}
			}
			if st.Failure != "" && p.observed {
				return fmt.Errorf("deployment/%s failed: %s", name, st.Failure)
			}
			// Before the loop took the spec, a failure may be an earlier
			// one's, or this one's that does not resolve: say it, and wait.
			if msg := "failing: " + st.Failure; st.Failure != "" && !seen[msg] {
				seen[msg] = true
				fmt.Fprintf(w, "  %s\n", msg)
			}
		case ctx.Err() != nil:
		default:
			var ae *apiclient.Error
			if errors.As(err, &ae) {
				return err // gone, or refused: polling again will not help
			}
			// The server did not answer this time: ask again.
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return timeoutError(name, timeout, p, everObserved || len(seen) > 0)
			}
			return ctx.Err()
		case <-time.After(deployWaitPoll):
		}
	}
}

// doneText is what serves once a rollout is done.
func doneText(d serving.Deployment, p rollProgress) string {
	model := modelText(d.Spec.Model, p.modelVersion)
	if p.desired == 0 && p.newReady == 0 {
		return "scaled to zero; the next request starts " + model
	}
	return fmt.Sprintf("%d of %d replicas ready, serving %s", p.newReady, p.desired, model)
}

// timeoutError says how far a rollout got; reported is false when the
// server never said anything of it (no specGeneration, no failure).
func timeoutError(name string, timeout time.Duration, p rollProgress, reported bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "timed out after %s waiting for deployment/%s: %s", timeout, name, p)
	if !reported {
		b.WriteString(" (the server never reported status.specGeneration: an ebb older than this CLI cannot be waited for)")
	}
	fmt.Fprintf(&b, "; `ebb describe deployment %s` says why", name)
	return errors.New(b.String())
}
