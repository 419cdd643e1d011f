package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/serving"
)

// runShadow is the shadow part of the scenario both homes pass: after the
// undo, deployment diabetes follows diabetes@champion at version 2. A
// shadow of version 2, the primary's own model, agrees on every mirrored
// request and passes; a shadow of version 1, whose predictions differ,
// disagrees, keeps samples of it, and fails. Clients get the primary's
// answers throughout.
func runShadow(t *testing.T, h *home, v1, v2 golden, rows []int) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const judged = 20
	// The undo rolled the primary back to version 2: let the roll finish,
	// so that every answer is version 2's.
	h.waitStatus("diabetes", 90*time.Second, "every primary replica on diabetes:2", func(st serving.Status) bool {
		n := 0
		for _, rs := range st.ReplicaStatuses {
			if rs.Track != "" {
				continue
			}
			if rs.ModelVersion != "diabetes:2" {
				return false
			}
			n++
		}
		return n > 0 && st.ReadyReplicas == int32(n)
	})
	for _, c := range []struct {
		to    string
		agree bool
	}{{"diabetes:2", true}, {"diabetes:1", false}} {
		out := h.cli("shadow", "start", "diabetes", "--to", c.to, "--requests", strconv.Itoa(judged))
		if !strings.Contains(out, c.to) {
			t.Errorf("[%s] shadow start --to %s: %q; want it named", h.name, c.to, out)
		}
		var st rollout.ShadowStatus
		deadline := time.Now().Add(2 * time.Minute)
		for i := 0; ; i++ {
			k := rows[i%len(rows)]
			got, code, body := h.inferRow(ctx, "/v2/models/diabetes/infer", v1.Rows[k])
			if code != http.StatusOK || !near(got, v2.Predictions[k]) {
				t.Fatalf("[%s] request %d during a shadow of %s: %d %s (got %v, the primary says %v)", h.name, i, c.to, code, body, got, v2.Predictions[k])
			}
			if i%10 != 9 {
				continue
			}
			// In a cluster the figures reach the operator with each
			// gateway's next report.
			out := h.cli("shadow", "status", "diabetes", "-o", "json")
			st = rollout.ShadowStatus{}
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("[%s] shadow status -o json: %v\n%s", h.name, err, out)
			}
			if st.Compared+st.ShadowErrors >= judged {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("[%s] shadow of %s judged %d requests after %d sent; want %d: %+v", h.name, c.to, st.Compared+st.ShadowErrors, i+1, judged, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("[%s] shadow of %s: %d compared, agreement %.2f, %d shadow errors, %d dropped, latency ratio %.2f, verdict %s (%s)",
			h.name, c.to, st.Compared, st.Agreement, st.ShadowErrors, st.Dropped, st.LatencyRatio, st.Verdict.Outcome, st.Verdict.Reason)
		if st.Model != c.to || st.ShadowErrors != 0 {
			t.Errorf("[%s] shadow status: model %q, %d shadow errors (%s); want %s and none", h.name, st.Model, st.ShadowErrors, st.LastShadowError, c.to)
		}
		switch {
		case c.agree && (st.Agreement != 1 || st.Verdict.Outcome != "pass"):
			t.Errorf("[%s] a shadow of the primary's own version: agreement %v, verdict %+v; want 1 and pass", h.name, st.Agreement, st.Verdict)
		case !c.agree && (st.Agreement >= 1 || st.Verdict.Outcome != "fail" || len(st.Samples) == 0):
			t.Errorf("[%s] a shadow of a changed version: agreement %v, verdict %+v, %d samples; want disagreement, fail and samples", h.name, st.Agreement, st.Verdict, len(st.Samples))
		}
	}
	if out := h.cli("shadow", "stop", "diabetes"); !strings.Contains(out, "diabetes:1") {
		t.Errorf("[%s] shadow stop: %q; want the stopped shadow named", h.name, out)
	}
	if code, body := h.do(http.MethodGet, "/v1/deployments/diabetes/shadow", nil, nil); code != http.StatusNotFound {
		t.Errorf("[%s] shadow status after stop: %d %s; want 404", h.name, code, body)
	}
}
