package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
)

// Async inference in both homes (issue 15), through the gateway and the
// CLI: a request submitted with Prefer: respond-async is listed, read and
// cancelled with ebb async, as the same tenant that submitted it.

// submitAsync posts row to deployment with Prefer: respond-async and
// returns the request's id.
func (h *home) submitAsync(ctx context.Context, deployment string, row []float64) string {
	h.t.Helper()
	req := oip.InferRequest{Inputs: []oip.RequestInput{{Name: "input", Shape: []int64{1, int64(len(row))}, Datatype: oip.FP64}}}
	req.Inputs[0].Data, _ = json.Marshal(row)
	body, _ := json.Marshal(req)
	hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.base+"/v2/models/"+deployment+"/infer", bytes.NewReader(body))
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Prefer", "respond-async")
	if h.token != "" {
		hr.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		h.t.Fatalf("[%s] async submit: %v", h.name, err)
	}
	defer resp.Body.Close()
	var st struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusAccepted || json.NewDecoder(resp.Body).Decode(&st) != nil || st.ID == "" {
		h.t.Fatalf("[%s] async submit: HTTP %d, want 202 with an id", h.name, resp.StatusCode)
	}
	return st.ID
}

// runAsyncPinned runs while deployment is pinned at zero replicas: an
// async request is accepted and stays pending (its runs get 503 and are
// retried), is listed so, and is cancelled; it then reads cancelled and a
// second cancel is refused.
func runAsyncPinned(t *testing.T, h *home, deployment string, row []float64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := h.submitAsync(ctx, deployment, row)
	if out := h.cli("async", "list", "--state", "pending"); !strings.Contains(out, id) {
		t.Errorf("[%s] ebb async list --state pending lacks %s:\n%s", h.name, id, out)
	}
	if out := h.cli("async", "get", id); !strings.Contains(out, "pending") {
		t.Errorf("[%s] ebb async get of a request to a deployment pinned at zero:\n%s\nwant pending", h.name, out)
	}
	if out := h.cli("async", "cancel", id); !strings.Contains(out, "cancelled") {
		t.Errorf("[%s] ebb async cancel:\n%s", h.name, out)
	}
	if out, err := h.try("async", "get", id); err == nil || !strings.Contains(out, "cancelled") {
		t.Errorf("[%s] ebb async get of the cancelled request: %v\n%s\nwant a failure saying it was cancelled", h.name, err, out)
	}
	if out, err := h.try("async", "cancel", id); err == nil || !strings.Contains(out, "already finished") {
		t.Errorf("[%s] second ebb async cancel: %v\n%s\nwant a failure saying it already finished", h.name, err, out)
	}
	if out := h.cli("async", "list", "--state", "cancelled", "-o", "json"); !strings.Contains(out, id) {
		t.Errorf("[%s] ebb async list --state cancelled lacks %s:\n%s", h.name, id, out)
	}
}

// runAsyncServed runs once deployment serves: an async request's result,
// read with ebb async get --wait, is the model's prediction want.
func runAsyncServed(t *testing.T, h *home, deployment string, row []float64, want float64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := h.submitAsync(ctx, deployment, row)
	out := h.cli("async", "get", id, "--wait", "30s")
	var ans struct {
		Outputs []struct {
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(out), &ans); err != nil || len(ans.Outputs) != 1 || len(ans.Outputs[0].Data) != 1 {
		t.Fatalf("[%s] ebb async get --wait: %v\n%s\nwant the model's answer", h.name, err, out)
	}
	if got := ans.Outputs[0].Data[0]; !near(got, want) {
		t.Errorf("[%s] async result %v, want the prediction %v", h.name, got, want)
	}
	if out := h.cli("async", "list", "--deployment", deployment, "--state", "done"); !strings.Contains(out, id) {
		t.Errorf("[%s] ebb async list --state done lacks %s:\n%s", h.name, id, out)
	}
	if out, err := h.try("async", "cancel", id); err == nil || !strings.Contains(out, "already finished") {
		t.Errorf("[%s] ebb async cancel of a done request: %v\n%s\nwant a failure saying it already finished", h.name, err, out)
	}
}
