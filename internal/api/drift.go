package api

import (
	"net/http"

	"github.com/ebb-ml/ebb/internal/monitor"
)

// Drift is where the API reads a deployment's drift reports: ebb up's
// drift monitor, or in a cluster the operator's hub, which merges what
// the gateways counted (internal/drift).
type Drift interface {
	// Reports returns the report of each watched version of deployment;
	// nil when none is watched.
	Reports(deployment string) []monitor.VersionReport
}

// DriftReport is the body of GET /v1/deployments/{name}/drift.
type DriftReport struct {
	Deployment string `json:"deployment"`
	// Versions are the versions the deployment serves, or served last,
	// that have a reference profile; empty when none has.
	Versions []monitor.VersionReport `json:"versions"`
}

// MountDrift adds GET /v1/deployments/{name}/drift, served from d, to h.
// A deployment that does not exist is 404 deployment/not_found; one with
// no profiled version, or that logs no predictions, has no versions.
func (h *Handler) MountDrift(d Drift) {
	h.mux.HandleFunc("GET /v1/deployments/{name}/drift", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if _, err := h.st.GetDeployment(r.Context(), name); err != nil {
			h.writeError(w, r, storeError(err, name))
			return
		}
		vs := d.Reports(name)
		if vs == nil {
			vs = []monitor.VersionReport{}
		}
		writeJSON(w, http.StatusOK, DriftReport{Deployment: name, Versions: vs})
	})
	h.mux.HandleFunc("/v1/deployments/{name}/drift", methodNotAllowed("GET, HEAD"))
}
