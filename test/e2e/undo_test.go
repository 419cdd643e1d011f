package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// runUndo is the rollback part of the scenario both homes pass: after the
// split, deployment diabetes follows diabetes@champion at version 2 and
// has served versions 1 and 2. `ebb rollout undo` moves the alias back to
// version 1 at once, and undoing again moves it forward to 2.
func runUndo(t *testing.T, h *home, v1, v2 golden, rows []int) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k := rows[0]
	if out, err := h.try("rollout", "undo", "diabetes", "--to-revision", "99"); err == nil || !strings.Contains(out, "revisions") {
		t.Errorf("[%s] undo to revision 99: %v\n%s; want a refusal naming the revisions there are", h.name, err, out)
	}
	for _, step := range []struct {
		from, to string
		want     float64
	}{
		{"diabetes:2", "diabetes:1", v1.Predictions[k]},
		{"diabetes:1", "diabetes:2", v2.Predictions[k]},
	} {
		start := time.Now()
		out := h.cli("rollout", "undo", "diabetes")
		if !strings.Contains(out, step.from+" → "+step.to) || !strings.Contains(out, "alias diabetes@champion moved to "+step.to) {
			t.Errorf("[%s] rollout undo: %q; want %s → %s by moving the alias", h.name, out, step.from, step.to)
		}
		// The replicas roll to the version: answers switch to it.
		for deadline := time.Now().Add(90 * time.Second); ; {
			got, code, body := h.inferRow(ctx, "/v2/models/diabetes/infer", v1.Rows[k])
			if code == http.StatusOK && near(got, step.want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("[%s] 90s after undoing to %s: %d %s (got %v want %v)", h.name, step.to, code, body, got, step.want)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("[%s] undo to %s: answers from it within %s", h.name, step.to, time.Since(start).Round(time.Millisecond))
	}
}
