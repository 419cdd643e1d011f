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

// runTenantLimits is the part of the scenario both homes pass for tenant
// limits: a tenant's rate limit on diabetes, set with `ebb limits`,
// reaches the gateways (ebb up's at once; a cluster's by their poll) and
// refuses the tenant's second request in a row with 429 naming the
// limit, while another tenant is served. The tenant is a token's (ebb
// tokens create --tenant) where inference needs a token, else the
// Ebb-Tenant header.
func runTenantLimits(t *testing.T, h *home, v1, v2 golden, rows []int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	as := func(tenant string) map[string]string {
		if h.token == "" {
			return map[string]string{"Ebb-Tenant": tenant}
		}
		var tok struct {
			Secret string `json:"secret"`
		}
		out := h.cli("tokens", "create", "--scope", "predict:diabetes", "--name", tenant+"-e2e", "--tenant", tenant, "-o", "json")
		if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Secret == "" {
			t.Fatalf("[%s] ebb tokens create --tenant %s: %v\n%s", h.name, tenant, err, out)
		}
		// Where inference is open (ebb up on loopback) the token is not
		// checked and the header names the tenant; where it needs a token,
		// the token's tenant counts and the header is ignored.
		return map[string]string{"Authorization": "Bearer " + tok.Secret, "Ebb-Tenant": tenant}
	}
	limited, other := as("e2e-limited"), as("e2e-other")
	h.cli("limits", "set", "e2e-limited", "--deployment", "diabetes", "--rate", "0.01", "--burst", "1")
	defer h.cli("limits", "delete", "e2e-limited", "--deployment", "diabetes")
	k := rows[0]
	deadline := time.Now().Add(30 * time.Second) // a cluster's gateways poll every 2s
	for {
		_, code, body, _ := h.inferRowWith(ctx, "/v2/models/diabetes/infer", v1.Rows[k], limited)
		if code == http.StatusTooManyRequests {
			if !strings.Contains(body, "tenant/rate_limited") || !strings.Contains(body, `\"e2e-limited\"`) {
				t.Errorf("[%s] refused request: %s; want tenant/rate_limited naming the tenant", h.name, body)
			}
			break
		}
		if code != http.StatusOK {
			t.Fatalf("[%s] limited tenant's request: %d %s", h.name, code, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("[%s] the limited tenant was never refused within 30s", h.name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got, code, body, _ := h.inferRowWith(ctx, "/v2/models/diabetes/infer", v1.Rows[k], other)
	if code != http.StatusOK || (!near(got, v1.Predictions[k]) && !near(got, v2.Predictions[k])) {
		t.Errorf("[%s] another tenant's request: %d %s (%v); want diabetes's answer", h.name, code, body, got)
	}
	if out := h.cli("limits", "list"); !strings.Contains(out, "e2e-limited") {
		t.Errorf("[%s] ebb limits list: %q; want e2e-limited", h.name, out)
	}
}

// runDecisions is the part of the scenario both homes pass for recorded
// scale decisions: the autoscaler's decisions for diabetes, with their
// inputs, show in ebb describe, and ebb simulate --from-history replays
// every one of them to the same decision.
func runDecisions(t *testing.T, h *home) {
	var out struct {
		Decisions []struct {
			Desired int32  `json:"desired"`
			Reason  string `json:"reason"`
		} `json:"decisions"`
		Replayed int `json:"replayed"`
		Differ   int `json:"differ"`
	}
	raw := h.cli("simulate", "--from-history", "diabetes", "-o", "json")
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("[%s] ebb simulate --from-history diabetes -o json: %v\n%s", h.name, err, raw)
	}
	if len(out.Decisions) < 2 || out.Differ != 0 || out.Replayed != len(out.Decisions) {
		t.Errorf("[%s] recorded decisions of diabetes: %d, %d replayed the same, %d differ; want several, all the same\n%s", h.name, len(out.Decisions), out.Replayed, out.Differ, raw)
	}
	if d := h.cli("describe", "deployment", "diabetes"); !strings.Contains(d, "Decisions (the autoscaler's latest") || !strings.Contains(d, "DESIRED") {
		t.Errorf("[%s] ebb describe deployment diabetes shows no decisions:\n%s", h.name, d)
	}
}
