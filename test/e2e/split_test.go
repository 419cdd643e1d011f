package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// runSplit is the traffic-split part of the scenario both homes pass:
// deployment diabetes, serving diabetes@champion (version 2 by now), also
// serves version 1 to a share of requests, each version on replicas of its
// own; requests pin a version by tag or number, or stick to one by a key.
func runSplit(t *testing.T, h *home, v1, v2 golden, rows []int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	k := rows[0]
	patch := func(traffic any) (int, string) {
		return h.do(http.MethodPatch, "/v1/deployments/diabetes", map[string]any{"spec": map[string]any{"traffic": traffic}}, nil)
	}

	// Weights that do not sum to 100 are refused, and nothing changes.
	if code, body := patch([]serving.TrafficTarget{{Model: "diabetes@champion", Weight: 70}, {Model: "diabetes:1", Weight: 20}}); code != http.StatusBadRequest || !strings.Contains(body, "sum to 90") {
		t.Errorf("[%s] weights summing to 90: %d %s; want 400 saying so", h.name, code, body)
	}
	if code, body := patch([]serving.TrafficTarget{{Model: "diabetes@champion", Weight: 80}, {Model: "diabetes:1", Weight: 20, Tag: "old"}}); code != http.StatusOK {
		t.Fatalf("[%s] split 80/20: %d %s", h.name, code, body)
	}

	// A pinned request wakes the target it names, and only it answers.
	pinned := map[string]float64{"old": v1.Predictions[k], "1": v1.Predictions[k], "champion": v2.Predictions[k], "2": v2.Predictions[k]}
	for pin, want := range pinned {
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, code, body, tag := h.inferRowWith(ctx, "/v2/models/diabetes/infer", v1.Rows[k], map[string]string{"Ebb-Version": pin})
			if code == http.StatusOK && near(got, want) {
				break
			}
			// A cluster gateway learns of the split from its watch, a
			// moment after the API answered: until then it answers from
			// the primary without a tag (or 404 for a version it does
			// not know yet).
			if (code != http.StatusNotFound && tag != "") || time.Now().After(deadline) {
				t.Fatalf("[%s] pinned to %q: %d %s (tag %q, got %v want %v)", h.name, pin, code, body, tag, got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if got, code, body := h.inferRow(ctx, "/v2/models/diabetes/versions/1/infer", v1.Rows[k]); code != http.StatusOK || !near(got, v1.Predictions[k]) {
		t.Errorf("[%s] /versions/1/infer during a split: %d %s", h.name, code, body)
	}
	if _, code, body, _ := h.inferRowWith(ctx, "/v2/models/diabetes/infer", v1.Rows[k], map[string]string{"Ebb-Version": "nope"}); code != http.StatusNotFound || !strings.Contains(body, "old") {
		t.Errorf("[%s] pinned to an unknown tag: %d %s; want 404 naming the tags", h.name, code, body)
	}
	st := h.waitStatus("diabetes", 30*time.Second, "both targets ready", func(st serving.Status) bool {
		return len(st.Traffic) == 2 && st.Traffic[0].ReadyReplicas >= 1 && st.Traffic[1].ReadyReplicas >= 1
	})
	if tr := st.Traffic[1]; tr.Tag != "old" || tr.ModelVersion != "diabetes:1" || tr.Weight != 20 || st.Traffic[0].ModelVersion != "diabetes:2" {
		t.Errorf("[%s] status.traffic = %+v; want champion on diabetes:2, old on diabetes:1 at 20%%", h.name, st.Traffic)
	}

	// Unpinned requests share by weight; a key sticks to one target, and
	// the answer says which (and it serves that version).
	seen := map[string]int{}
	for i := range 60 {
		got, code, body, tag := h.inferRowWith(ctx, "/v2/models/diabetes/infer", v1.Rows[k], map[string]string{"Ebb-Route-Key": fmt.Sprintf("user-%d", i%20)})
		if code != http.StatusOK {
			t.Fatalf("[%s] split request: %d %s", h.name, code, body)
		}
		want := map[string]float64{"old": v1.Predictions[k], "champion": v2.Predictions[k]}[tag]
		if !near(got, want) {
			t.Errorf("[%s] answer tagged %q predicted %v; want %v", h.name, tag, got, want)
		}
		seen[fmt.Sprintf("user-%d", i%20)+"="+tag]++
	}
	tags := map[string]int{}
	for kt := range seen {
		user, tag, _ := strings.Cut(kt, "=")
		tags[tag]++
		if seen[user+"=old"] > 0 && seen[user+"=champion"] > 0 {
			t.Errorf("[%s] key %s reached both targets", h.name, user)
		}
	}
	if tags["old"] == 0 || tags["champion"] == 0 {
		t.Errorf("[%s] 20 keys all went to one target: %v", h.name, tags)
	}

	// Ending the split retires the other target's replicas.
	if code, body := patch(nil); code != http.StatusOK {
		t.Fatalf("[%s] remove the split: %d %s", h.name, code, body)
	}
	h.waitStatus("diabetes", 60*time.Second, "the split's replicas gone", func(st serving.Status) bool {
		for _, r := range st.ReplicaStatuses {
			if r.Track != "" {
				return false
			}
		}
		return len(st.Traffic) == 0
	})
}
