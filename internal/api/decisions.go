package api

import (
	"net/http"

	"github.com/ebb-ml/ebb/internal/autoscale"
)

// Decisions is where the API reads a deployment's latest autoscaler
// decisions with their inputs: the control loop's (control.Controller) in
// both homes, the operator leader's in a cluster.
type Decisions interface {
	Decisions(deployment string) []autoscale.Record
}

// DecisionList is the body of GET /v1/deployments/{name}/decisions:
// oldest first, each with the metrics, state and policy it was taken
// from, so that autoscale.Replay (`ebb simulate --from-history`) takes it
// again.
type DecisionList struct {
	Items []autoscale.Record `json:"items"`
}

// MountDecisions adds GET /v1/deployments/{name}/decisions, served from
// ds, to h. A deployment that does not exist is 404 deployment/not_found;
// one the loop has not decided for yet has none.
func (h *Handler) MountDecisions(ds Decisions) {
	h.mux.HandleFunc("GET /v1/deployments/{name}/decisions", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if _, err := h.st.GetDeployment(r.Context(), name); err != nil {
			h.writeError(w, r, storeError(err, name))
			return
		}
		items := ds.Decisions(name)
		if items == nil {
			items = []autoscale.Record{}
		}
		writeJSON(w, http.StatusOK, DecisionList{Items: items})
	})
	h.mux.HandleFunc("/v1/deployments/{name}/decisions", methodNotAllowed("GET, HEAD"))
}
