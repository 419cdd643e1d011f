package api

import (
	"net/http"
	"time"

	"github.com/ebb-ml/ebb/internal/reqstats"
)

// Stats is where the API reads a deployment's recent request statistics:
// a reqstats.Sampler over the gateway's metrics in ebb up.
type Stats interface {
	Series(deployment string) []reqstats.Sample
	Interval() time.Duration
}

// StatsList is the body of GET /v1/deployments/{name}/stats: the request
// rate, errors and latency percentiles of each recent interval, oldest
// first, every IntervalSeconds; an interval without requests has a zero
// rate and no percentiles.
type StatsList struct {
	IntervalSeconds float64           `json:"intervalSeconds"`
	Items           []reqstats.Sample `json:"items"`
}

// MountStats adds GET /v1/deployments/{name}/stats, served from s, to h.
// A deployment that does not exist is 404 deployment/not_found.
func (h *Handler) MountStats(s Stats) {
	h.mux.HandleFunc("GET /v1/deployments/{name}/stats", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if _, err := h.st.GetDeployment(r.Context(), name); err != nil {
			h.writeError(w, r, storeError(err, name))
			return
		}
		items := s.Series(name)
		if items == nil {
			items = []reqstats.Sample{}
		}
		writeJSON(w, http.StatusOK, StatsList{IntervalSeconds: s.Interval().Seconds(), Items: items})
	})
	h.mux.HandleFunc("/v1/deployments/{name}/stats", methodNotAllowed("GET, HEAD"))
}
