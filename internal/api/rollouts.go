package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// Rollouts runs progressive canary rollouts; *rollout.Manager is one.
type Rollouts interface {
	Start(ctx context.Context, deployment string, req rollout.Request) (rollout.Status, error)
	Get(ctx context.Context, deployment string) (rollout.Status, error)
	Pause(ctx context.Context, deployment, by string) (rollout.Status, error)
	Resume(ctx context.Context, deployment string) (rollout.Status, error)
	Abort(ctx context.Context, deployment, by string) (rollout.Status, error)
	Promote(ctx context.Context, deployment, by string) (rollout.Status, error)
	Undo(ctx context.Context, deployment string, req rollout.UndoRequest, by string) (rollout.UndoResult, error)
}

// Error codes of the rollout routes.
const (
	codeRolloutInvalid  = "rollout/invalid"
	codeRolloutActive   = "rollout/active"
	codeRolloutNotFound = "rollout/not_found"
	codeRolloutOver     = "rollout/over"
	codeRolloutConflict = "rollout/conflict"
)

// MountRollouts serves a deployment's canary rollout:
//
//	POST /v1/deployments/{name}/rollout            start one (rollout.Request); with
//	                                               requireShadow, 412 rollout/shadow_unmet
//	                                               unless the shadow of its version passes
//	GET  /v1/deployments/{name}/rollout            the active one, else the latest
//	POST /v1/deployments/{name}/rollout/{action}   pause, resume, abort or promote
//	POST /v1/deployments/{name}/rollout/undo       back to an earlier version at once
//	                                               (rollout.UndoRequest; the body may be empty)
func (h *Handler) MountRollouts(ro Rollouts) {
	h.mux.HandleFunc("POST /v1/deployments/{name}/rollout", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var req rollout.Request
		err := readJSON(w, r, "rollout request", &req)
		if err == nil {
			err = h.checkRolloutTarget(r.Context(), name, req.To)
		}
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		st, err := ro.Start(r.Context(), name, req)
		h.writeRollout(w, r, name, http.StatusCreated, st, err)
	})
	h.mux.HandleFunc("GET /v1/deployments/{name}/rollout", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		st, err := ro.Get(r.Context(), name)
		h.writeRollout(w, r, name, http.StatusOK, st, err)
	})
	h.mux.HandleFunc("/v1/deployments/{name}/rollout", methodNotAllowed("GET, HEAD, POST"))
	h.mux.HandleFunc("POST /v1/deployments/{name}/rollout/{action}", func(w http.ResponseWriter, r *http.Request) {
		name, by := r.PathValue("name"), "by "+principalName(r.Context())
		var st rollout.Status
		var err error
		switch r.PathValue("action") {
		case "undo":
			h.undo(w, r, ro, name)
			return
		case "pause":
			st, err = ro.Pause(r.Context(), name, by)
		case "resume":
			st, err = ro.Resume(r.Context(), name)
		case "abort":
			st, err = ro.Abort(r.Context(), name, by)
		case "promote":
			st, err = ro.Promote(r.Context(), name, by)
		default:
			writeJSON(w, http.StatusNotFound, ErrorBody{ErrorDetail{codeRouteNotFound,
				fmt.Sprintf("no rollout action %q: use pause, resume, abort, promote or undo", r.PathValue("action"))}})
			return
		}
		h.writeRollout(w, r, name, http.StatusOK, st, err)
	})
	h.mux.HandleFunc("/v1/deployments/{name}/rollout/{action}", methodNotAllowed("POST"))
}

// undo serves POST /v1/deployments/{name}/rollout/undo.
func (h *Handler) undo(w http.ResponseWriter, r *http.Request, ro Rollouts, name string) {
	var req rollout.UndoRequest
	if r.ContentLength != 0 {
		if err := readJSON(w, r, "undo request", &req); err != nil {
			h.writeError(w, r, err)
			return
		}
	}
	req.Check = func(ctx context.Context, version string) error {
		return h.checkTarget(ctx, name, version, codeRolloutInvalid, "cannot undo to "+version)
	}
	res, err := ro.Undo(r.Context(), name, req, principalName(r.Context()))
	if err != nil {
		h.writeError(w, r, rolloutError(name, err))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// checkRolloutTarget applies the checks of a deployment write to the spec
// the canary will run.
func (h *Handler) checkRolloutTarget(ctx context.Context, name, to string) error {
	if to == "" {
		return nil // the manager says what is missing
	}
	return h.checkTarget(ctx, name, to, codeRolloutInvalid, "invalid rollout: --to "+to)
}

// checkTarget applies the checks of a deployment write to the spec that
// runs model to (a canary, a shadow, an undo's version): it must resolve
// and be allowed, and a model that runs code needs the exec scope. A
// refusal is code, with what beginning its message.
func (h *Handler) checkTarget(ctx context.Context, name, to, code, what string) error {
	d, err := h.st.GetDeployment(ctx, name)
	if err != nil {
		return storeError(err, name)
	}
	// Whether to runs other code than the primary is the question: the
	// split and shadow the deployment has are no part of it.
	cur := d.Spec
	cur.Traffic, cur.Shadow = nil, nil
	next := cur
	next.Model = to
	if err := checkSpecExec(ctx, cur, next); err != nil {
		return err
	}
	if err := h.checkOneModel(ctx, next); err != nil {
		return &apiError{http.StatusBadRequest, code, what + ": " + err.Error()}
	}
	return nil
}

// principalName names who made a request, for the rollout's record.
func principalName(ctx context.Context) string {
	if p, ok := auth.FromContext(ctx); ok && p.Name != "" {
		return p.Name
	}
	return "a user"
}

// writeRollout answers with st, or with err mapped to its status.
func (h *Handler) writeRollout(w http.ResponseWriter, r *http.Request, name string, status int, st rollout.Status, err error) {
	if err != nil {
		h.writeError(w, r, rolloutError(name, err))
		return
	}
	writeJSON(w, status, st)
}

// rolloutError maps the rollout manager's errors to their status.
func rolloutError(name string, err error) error {
	if _, ok := errors.AsType[*apiError](err); ok {
		return err
	}
	if _, ok := errors.AsType[*registry.InvalidError](err); ok {
		return &apiError{http.StatusBadRequest, codeRolloutInvalid, err.Error()}
	}
	switch {
	case errors.Is(err, rollout.ErrInvalid):
		return &apiError{http.StatusBadRequest, codeRolloutInvalid, err.Error()}
	case errors.Is(err, rollout.ErrActive):
		return &apiError{http.StatusConflict, codeRolloutActive, err.Error()}
	case errors.Is(err, traffic.ErrRolloutOver):
		return &apiError{http.StatusConflict, codeRolloutOver, err.Error()}
	case errors.Is(err, store.ErrConflict):
		return &apiError{http.StatusConflict, codeRolloutConflict, err.Error()}
	case errors.Is(err, rollout.ErrNone):
		return &apiError{http.StatusNotFound, codeRolloutNotFound, err.Error()}
	case errors.Is(err, rollout.ErrNoShadow):
		return &apiError{http.StatusNotFound, codeShadowNotFound, err.Error()}
	case errors.Is(err, rollout.ErrShadowUnmet):
		return &apiError{http.StatusPreconditionFailed, codeShadowUnmet, err.Error()}
	case errors.Is(err, store.ErrNotFound):
		return notFound(name)
	}
	return err
}
