package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Costs is where the API reads what deployments' replicas used: the
// control loop's record (control.Controller), in ebb up and in the
// operator that leads.
type Costs interface {
	Cost(ctx context.Context, deployment string, since time.Time) (serving.Cost, error)
	CostAll(ctx context.Context, since time.Time) ([]serving.Cost, error)
}

// CostList is the body of GET /v1/cost: every deployment that ran
// replicas in the period, and their sum.
type CostList struct {
	Items []serving.Cost `json:"items"`
	Total serving.Cost   `json:"total"`
}

// DefaultCostPeriod is the period of a cost report without ?since.
const DefaultCostPeriod = 7 * 24 * time.Hour

// parseSince reads ?since: a duration back from now ("7d", "36h") or an
// RFC 3339 time.
func parseSince(r *http.Request, now time.Time) (time.Time, error) {
	v := r.URL.Query().Get("since")
	if v == "" {
		return now.Add(-DefaultCostPeriod), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := parsePeriod(v)
	if err != nil || d <= 0 {
		return time.Time{}, &apiError{http.StatusBadRequest, codeMalformed, fmt.Sprintf("since=%s: give a period such as 7d or 36h, or an RFC 3339 time", quoteClipped(v))}
	}
	return now.Add(-d), nil
}

// parsePeriod is time.ParseDuration that also takes whole days ("7d").
func parsePeriod(v string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

// MountCosts adds GET /v1/deployments/{name}/cost and GET /v1/cost,
// served from c, to h: replica-seconds used over ?since (default 7d)
// against always-on at the peak. Call it before h serves requests.
func (h *Handler) MountCosts(c Costs) {
	h.mux.HandleFunc("GET /v1/deployments/{name}/cost", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if _, err := h.st.GetDeployment(r.Context(), name); err != nil {
			h.writeError(w, r, storeError(err, name))
			return
		}
		since, err := parseSince(r, time.Now())
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		cost, err := c.Cost(r.Context(), name, since)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, cost)
	})
	h.mux.HandleFunc("/v1/deployments/{name}/cost", methodNotAllowed("GET, HEAD"))
	h.mux.HandleFunc("GET /v1/cost", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		since, err := parseSince(r, now)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		items, err := c.CostAll(r.Context(), since)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, SumCosts(items, since, now))
	})
	h.mux.HandleFunc("/v1/cost", methodNotAllowed("GET, HEAD"))
}

// SumCosts returns items with their total: replica-seconds and always-on
// seconds add up (each deployment's peak for the period), so the total's
// reduction weighs deployments by their size.
func SumCosts(items []serving.Cost, since, now time.Time) CostList {
	out := CostList{Items: items, Total: serving.Cost{Deployment: "(total)", Since: since, Until: now, Recorded: since}}
	if out.Items == nil {
		out.Items = []serving.Cost{}
	}
	for _, c := range items {
		out.Total.ReplicaSeconds += c.ReplicaSeconds
		out.Total.AlwaysOnSeconds += c.AlwaysOnSeconds
		out.Total.PeakReplicas += c.PeakReplicas
		out.Total.GPUSeconds += c.GPUSeconds
		out.Total.AlwaysOnGPUSeconds += c.AlwaysOnGPUSeconds
		out.Total.PeakGPUs += c.PeakGPUs
		if c.Partial {
			out.Total.Partial = true
			if c.Recorded.After(out.Total.Recorded) {
				out.Total.Recorded = c.Recorded
			}
		}
	}
	if out.Total.AlwaysOnSeconds > 0 {
		out.Total.Reduction = out.Total.ReplicaSeconds / out.Total.AlwaysOnSeconds
	}
	return out
}
