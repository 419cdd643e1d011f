package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// runRoutesAndCost is the part of the scenario both homes pass for route
// objects and cost reports: a route picks deployment diabetes by a header
// (and by default), through the gateway, via `ebb routes` (ebb up's store,
// or a ModelRoute the cluster's gateways watch); and `ebb cost` reports
// the replica-seconds the scenario's replicas used.
func runRoutesAndCost(t *testing.T, h *home, v1, v2 golden, rows []int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	k := rows[0]
	h.cli("routes", "create", "by-region", "--header", "X-Region", "--rule", "eu=diabetes", "--default", "diabetes")
	for _, header := range []map[string]string{{"X-Region": "eu"}, nil} {
		deadline := time.Now().Add(60 * time.Second) // a cluster's gateways learn the route by a watch
		for {
			got, code, body, _ := h.inferRowWith(ctx, "/v2/models/by-region/infer", v1.Rows[k], header)
			if code == http.StatusOK {
				if !near(got, v1.Predictions[k]) && !near(got, v2.Predictions[k]) {
					t.Errorf("[%s] through route by-region (header %v): %v, want diabetes's answer %v or %v", h.name, header, got, v1.Predictions[k], v2.Predictions[k])
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("[%s] through route by-region (header %v): %d %s", h.name, header, code, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if out := h.cli("get", "routes"); !strings.Contains(out, "by-region") {
		t.Errorf("[%s] ebb get routes: %q; want by-region listed", h.name, out)
	}
	h.cli("routes", "delete", "by-region")

	var c serving.Cost
	if err := json.Unmarshal([]byte(h.cli("cost", "diabetes", "-o", "json")), &c); err != nil {
		t.Fatalf("[%s] ebb cost diabetes -o json: %v", h.name, err)
	}
	if c.Deployment != "diabetes" || c.ReplicaSeconds <= 0 || c.PeakReplicas < 1 || c.AlwaysOnSeconds < c.ReplicaSeconds {
		t.Errorf("[%s] ebb cost diabetes: %+v; want the replica-seconds the scenario used, under always-on at the peak", h.name, c)
	}
}
