package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/store"
)

// Shadows runs deployments' shadows; *rollout.Manager is one.
type Shadows interface {
	StartShadow(ctx context.Context, deployment string, req rollout.ShadowRequest, by string) (rollout.ShadowStatus, error)
	ShadowStatus(ctx context.Context, deployment string, c rollout.ShadowCriteria) (rollout.ShadowStatus, error)
	StopShadow(ctx context.Context, deployment, by string) (rollout.ShadowStatus, error)
}

// Error codes of the shadow routes, and of a rollout that requires a
// shadow's verdict.
const (
	codeShadowInvalid  = "shadow/invalid"
	codeShadowNotFound = "shadow/not_found"
	codeShadowUnmet    = "rollout/shadow_unmet"
)

// MountShadows serves a deployment's shadow (spec.shadow): a share of its
// requests mirrored to another version and the answers compared.
//
//	POST   /v1/deployments/{name}/shadow   start one, replacing any (rollout.ShadowRequest;
//	                                       duration as a Go duration, "30m") → 201
//	GET    /v1/deployments/{name}/shadow   its status (rollout.ShadowStatus); the verdict is judged
//	                                       by ?minAgreement=0.99&minRequests=N (both optional)
//	DELETE /v1/deployments/{name}/shadow   stop it → its last status
//
// Starting needs the deploy scope, and exec where the shadow runs code,
// as a rollout's target does; its model path is confined alike. A
// deployment without a shadow is 404 shadow/not_found, a start during a
// rollout 409 rollout/active.
func (h *Handler) MountShadows(sh Shadows) {
	h.mux.HandleFunc("POST /v1/deployments/{name}/shadow", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var req rollout.ShadowRequest
		err := readJSON(w, r, "shadow request", &req)
		if err == nil && req.To != "" {
			err = h.checkTarget(r.Context(), name, req.To, codeShadowInvalid, "invalid shadow: --to "+req.To)
		}
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		st, err := sh.StartShadow(r.Context(), name, req, principalName(r.Context()))
		h.writeShadow(w, r, name, http.StatusCreated, st, err)
	})
	h.mux.HandleFunc("GET /v1/deployments/{name}/shadow", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		c, err := shadowCriteria(r)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		st, err := sh.ShadowStatus(r.Context(), name, c)
		h.writeShadow(w, r, name, http.StatusOK, st, err)
	})
	h.mux.HandleFunc("DELETE /v1/deployments/{name}/shadow", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		st, err := sh.StopShadow(r.Context(), name, principalName(r.Context()))
		h.writeShadow(w, r, name, http.StatusOK, st, err)
	})
	h.mux.HandleFunc("/v1/deployments/{name}/shadow", methodNotAllowed("GET, HEAD, POST, DELETE"))
}

// shadowCriteria reads the verdict's criteria from the query.
func shadowCriteria(r *http.Request) (rollout.ShadowCriteria, error) {
	var c rollout.ShadowCriteria
	q := r.URL.Query()
	if s := q.Get("minAgreement"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return c, &apiError{http.StatusBadRequest, codeMalformed, fmt.Sprintf("minAgreement=%q is not a number: give a fraction, e.g. 0.99", s)}
		}
		c.MinAgreement = v
	}
	if s := q.Get("minRequests"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			return c, &apiError{http.StatusBadRequest, codeMalformed, fmt.Sprintf("minRequests=%q is not a whole number: give a count, e.g. 200", s)}
		}
		c.MinRequests = v
	}
	return c, nil
}

// writeShadow answers with st, or with err mapped to its status.
func (h *Handler) writeShadow(w http.ResponseWriter, r *http.Request, name string, status int, st rollout.ShadowStatus, err error) {
	if err != nil {
		h.writeError(w, r, shadowError(name, err))
		return
	}
	writeJSON(w, status, st)
}

// shadowError maps the manager's errors about shadows to their status.
func shadowError(name string, err error) error {
	switch {
	case errors.Is(err, rollout.ErrInvalid):
		return &apiError{http.StatusBadRequest, codeShadowInvalid, err.Error()}
	case errors.Is(err, store.ErrNotFound):
		return notFound(name)
	}
	return rolloutError(name, err)
}
