package api

import "net/http"

// Homes of a server: where its control plane runs.
const (
	// HomeUp is `ebb up`: one process, replicas as local processes.
	HomeUp = "up"
	// HomeCluster is the operator in Kubernetes: replicas as pods.
	HomeCluster = "cluster"
)

// VersionInfo is the body of GET /v1/version.
type VersionInfo struct {
	// Version is the server's build version, such as "v0.4.0" or "dev".
	Version string `json:"version"`
	// Home is HomeUp or HomeCluster.
	Home string `json:"home"`
}

// MountVersion adds GET /v1/version, answering info, to h. Call it before
// h serves requests.
func (h *Handler) MountVersion(info VersionInfo) {
	h.mux.HandleFunc("GET /v1/version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, info)
	})
	h.mux.HandleFunc("/v1/version", methodNotAllowed("GET, HEAD"))
}
