// Package api is ebb's admin REST API, version 1: deployments as JSON
// resources under /v1/deployments, partial updates with JSON merge patch
// (RFC 7386), and uniform errors of the form
// {"error":{"code":"deployment/not_found","message":"..."}}.
//
// The API stores specs through a Store and learns observed status from, and
// reports spec changes to, the control loop through a Controller. A request
// that fails changes nothing.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Store keeps deployment specs. Errors wrap store.ErrNotFound and
// store.ErrExists; UpdateDeployment runs fn in one transaction, writes
// nothing and returns fn's error unchanged when fn fails.
type Store interface {
	CreateDeployment(ctx context.Context, d serving.Deployment) (serving.Deployment, error)
	GetDeployment(ctx context.Context, name string) (serving.Deployment, error)
	ListDeployments(ctx context.Context) ([]serving.Deployment, error)
	UpdateDeployment(ctx context.Context, name string, fn func(*serving.Deployment) error) (serving.Deployment, error)
	DeleteDeployment(ctx context.Context, name string) error
}

// Controller is the control loop as the API sees it.
type Controller interface {
	// Status returns the observed status of a deployment (zero Status if
	// the control loop has not seen it yet).
	Status(name string) serving.Status
	// Notify tells the control loop that the named deployment's spec
	// changed or it was deleted.
	Notify(name string)
}

// List is the body of GET /v1/deployments.
type List struct {
	Items []serving.Deployment `json:"items"`
}

// Handler serves the admin API v1. It is safe for concurrent use.
type Handler struct {
	st     Store
	ctl    Controller
	log    *slog.Logger
	mux    *http.ServeMux
	models modelResolver    // nil until MountModels
	paths  *ModelPaths      // nil until ConfineModelPaths (modelpath.go)
	routes store.RouteStore // nil until MountRoutes (routes.go)
	pools  store.PoolStore  // nil until MountPools (pools.go)
}

// New returns a Handler over st and ctl that logs to log (nil discards).
func New(st Store, ctl Controller, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{st: st, ctl: ctl, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /v1/deployments", h.listPage) // deployments_page.go
	h.mux.HandleFunc("POST /v1/deployments", h.create)
	h.mux.HandleFunc("/v1/deployments", methodNotAllowed("GET, HEAD, POST"))
	h.mux.HandleFunc("GET /v1/deployments/{name}", h.get)
	h.mux.HandleFunc("PUT /v1/deployments/{name}", h.put)
	h.mux.HandleFunc("PATCH /v1/deployments/{name}", h.patch)
	h.mux.HandleFunc("DELETE /v1/deployments/{name}", h.delete)
	h.mux.HandleFunc("/v1/deployments/{name}", methodNotAllowed("DELETE, GET, HEAD, PATCH, PUT"))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, ErrorBody{ErrorDetail{codeRouteNotFound,
			fmt.Sprintf("no admin API route for %s %s: deployments are at /v1/deployments", r.Method, r.URL.Path)}})
	})
	return h
}

// ServeHTTP serves one admin API request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, ErrorBody{ErrorDetail{codeMethodNotAllowed,
			fmt.Sprintf("method %s is not allowed on %s: use one of %s", r.Method, r.URL.Path, allow)}})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing left to tell it
}

// withStatus fills d's Status from the control loop.
func (h *Handler) withStatus(d serving.Deployment) serving.Deployment {
	d.Status = h.ctl.Status(d.Name)
	return d
}

// storeError maps store errors to API errors; others pass through.
func storeError(err error, name string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound(name)
	case errors.Is(err, store.ErrExists):
		return exists(name)
	}
	return err
}

// checkContentType returns a 415 error unless r's Content-Type is one of
// allowed; a missing Content-Type is taken as allowed[0].
func checkContentType(r *http.Request, allowed ...string) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		for _, a := range allowed {
			if mt == a {
				return nil
			}
		}
	}
	return &apiError{http.StatusUnsupportedMediaType, codeUnsupportedMedia,
		fmt.Sprintf("Content-Type %q is not supported here: send %s", ct, allowed[0])}
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	ds, err := h.st.ListDeployments(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := List{Items: make([]serving.Deployment, 0, len(ds))}
	for _, d := range ds {
		out.Items = append(out.Items, h.withStatus(d))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	d, err := h.st.GetDeployment(r.Context(), name)
	if err != nil {
		h.writeError(w, r, storeError(err, name))
		return
	}
	writeJSON(w, http.StatusOK, h.withStatus(d))
}

// readDeployment checks the Content-Type, reads and decodes a deployment
// body, and defaults and validates it. urlName, when set, is the name in the
// URL: the body's name must be empty or equal to it.
func readDeployment(w http.ResponseWriter, r *http.Request, urlName string) (serving.Deployment, error) {
	if err := checkContentType(r, "application/json"); err != nil {
		return serving.Deployment{}, err
	}
	data, err := readBody(w, r)
	if err != nil {
		return serving.Deployment{}, err
	}
	b, err := decodeDeployment(data)
	if err != nil {
		return serving.Deployment{}, err
	}
	if urlName != "" {
		if b.Name == "" {
			b.Name = urlName
		}
		if b.Name != urlName {
			return serving.Deployment{}, &apiError{http.StatusBadRequest, codeInvalid,
				fmt.Sprintf("invalid deployment: name: %q in the body does not match %q in the URL", b.Name, urlName)}
		}
	}
	d := serving.Deployment{Name: b.Name, Spec: b.Spec}
	if err := validate(&d); err != nil {
		return serving.Deployment{}, err
	}
	return d, nil
}

// modelResolver resolves registry references; MountModels sets the
// registry as one, so that a deployment naming a version that does not
// exist is refused at once instead of failing later.
type modelResolver interface {
	ResolveString(ctx context.Context, ref string) (registry.Version, error)
}

// checkModel refuses a spec whose model names a registry version that does
// not resolve, is retired and deleted, or is of another engine than the
// spec asks for, and a model path outside the confinement of
// ConfineModelPaths (modelpath.go). A URI is not checked here: the
// replicas fetch it.
//
// Every target of a traffic split, and the shadow, is checked as its own
// spec: neither may reach a model the deployment itself could not name.
func (h *Handler) checkModel(ctx context.Context, spec serving.Spec) error {
	tracks := spec.Tracks("")
	if t, ok := spec.ShadowTrack(""); ok {
		tracks = append(tracks, t)
	}
	for _, t := range tracks {
		if t.Primary {
			continue
		}
		if err := h.checkOneModel(ctx, spec.ForTrack(t)); err != nil {
			return err
		}
	}
	return h.checkOneModel(ctx, spec)
}

func (h *Handler) checkOneModel(ctx context.Context, spec serving.Spec) error {
	if err := h.checkModelPath(spec); err != nil {
		return err
	}
	if h.models == nil {
		return nil
	}
	if _, ok := serving.ParseModelRef(spec.Model); !ok {
		return nil
	}
	v, err := h.models.ResolveString(ctx, spec.Model)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &apiError{http.StatusBadRequest, codeInvalid, fmt.Sprintf(
			"invalid deployment: spec.model: %s is not in the registry (%v): push it first (ebb models push FILE --name NAME --alias ALIAS), or name a version that exists (ebb models show NAME)", spec.Model, err)}
	case err != nil:
		return err
	case v.State == registry.StatePurged:
		return &apiError{http.StatusBadRequest, codeInvalid, fmt.Sprintf(
			"invalid deployment: spec.model: %s is version %d, which was retired and its artifact deleted: push it again or name another version", spec.Model, v.Version)}
	case spec.Engine != "" && spec.Engine != v.Engine:
		return &apiError{http.StatusBadRequest, codeInvalid, fmt.Sprintf(
			"invalid deployment: spec.engine: %q, but %s is a %q model: drop spec.engine or make it match", spec.Engine, spec.Model, v.Engine)}
	case spec.Engine == "":
		return checkExec(ctx, spec, v.Engine)
	}
	return nil
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	d, err := readDeployment(w, r, "")
	if err == nil {
		err = h.routeNamed(r.Context(), d.Name) // routes.go
	}
	if err == nil {
		err = checkSpecExec(r.Context(), serving.Spec{}, d.Spec)
	}
	if err == nil {
		err = h.checkModel(r.Context(), d.Spec)
	}
	if err == nil {
		err = h.checkPool(r.Context(), d.Name, d.Spec) // pools.go
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	created, err := h.st.CreateDeployment(r.Context(), d)
	if err != nil {
		h.writeError(w, r, storeError(err, d.Name))
		return
	}
	h.written(w, r, http.StatusCreated, created, "created")
}

// put replaces the named deployment's spec, or creates the deployment.
func (h *Handler) put(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	d, err := readDeployment(w, r, name)
	if err == nil {
		err = h.checkModel(r.Context(), d.Spec)
	}
	if err == nil {
		err = h.checkPool(r.Context(), name, d.Spec) // pools.go
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	replace := func(cur *serving.Deployment) error {
		if err := checkSpecExec(ctx, cur.Spec, d.Spec); err != nil {
			return err
		}
		cur.Spec = d.Spec
		return nil
	}
	// Replace, else create; a create that loses a race to another create
	// replaces what won.
	for range 2 {
		updated, err := h.st.UpdateDeployment(ctx, name, replace)
		if err == nil {
			h.written(w, r, http.StatusOK, updated, "replaced")
			return
		}
		if !errors.Is(err, store.ErrNotFound) {
			h.writeError(w, r, storeError(err, name))
			return
		}
		if err := h.routeNamed(ctx, name); err != nil { // routes.go
			h.writeError(w, r, err)
			return
		}
		if err := checkSpecExec(ctx, serving.Spec{}, d.Spec); err != nil {
			h.writeError(w, r, err)
			return
		}
		created, err := h.st.CreateDeployment(ctx, d)
		if err == nil {
			h.written(w, r, http.StatusCreated, created, "created")
			return
		}
		if !errors.Is(err, store.ErrExists) {
			h.writeError(w, r, storeError(err, name))
			return
		}
	}
	h.writeError(w, r, &apiError{http.StatusConflict, codeExists,
		fmt.Sprintf("deployment %q is being created and deleted concurrently: try again", name)})
}

// patch applies a JSON merge patch to the document {name, spec}.
func (h *Handler) patch(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := checkContentType(r, "application/merge-patch+json", "application/json"); err != nil {
		h.writeError(w, r, err)
		return
	}
	patch, err := readBody(w, r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := checkJSONObject(patch, "merge patch"); err != nil {
		h.writeError(w, r, err)
		return
	}
	updated, err := h.st.UpdateDeployment(r.Context(), name, func(cur *serving.Deployment) error {
		doc, err := json.Marshal(deploymentBody{Name: cur.Name, Spec: cur.Spec})
		if err != nil {
			return err
		}
		merged, err := jsonpatch.MergePatch(doc, patch)
		if err != nil {
			return &apiError{http.StatusBadRequest, codeMalformed, "cannot apply merge patch: " + err.Error()}
		}
		b, err := decodeDeployment(merged)
		if err != nil {
			return err
		}
		if b.Name != name {
			return &apiError{http.StatusBadRequest, codeInvalid,
				fmt.Sprintf("invalid deployment: name: cannot change %q to %q: deployments cannot be renamed; create a new one with `ebb deploy -f`", name, b.Name)}
		}
		next := serving.Deployment{Name: name, Spec: b.Spec}
		if err := validate(&next); err != nil {
			return err
		}
		if err := checkSpecExec(r.Context(), cur.Spec, next.Spec); err != nil {
			return err
		}
		if modelsChanged(cur.Spec, next.Spec) {
			if err := h.checkModel(r.Context(), next.Spec); err != nil {
				return err
			}
		}
		if modelsChanged(cur.Spec, next.Spec) || poolName(cur.Spec) != poolName(next.Spec) {
			if err := h.checkPool(r.Context(), name, next.Spec); err != nil { // pools.go
				return err
			}
		}
		cur.Spec = next.Spec
		return nil
	})
	if err != nil {
		h.writeError(w, r, storeError(err, name))
		return
	}
	h.written(w, r, http.StatusOK, updated, "patched")
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := h.st.DeleteDeployment(r.Context(), name); err != nil {
		h.writeError(w, r, storeError(err, name))
		return
	}
	h.notify(r.Context(), name)
	h.log.Info("deployment deleted", "deployment", name)
	w.WriteHeader(http.StatusNoContent)
}

// Syncer is a Controller that can say when it has applied a change: then
// a write is answered only once the data plane knows the deployment, so a
// request right after `ebb deploy` is never told "not found".
type Syncer interface {
	Sync(ctx context.Context, name string) error
}

// syncTimeout bounds how long a write waits for the control loop.
const syncTimeout = 5 * time.Second

// notify tells the control loop about a change and, when it can, waits
// until the loop applied it.
func (h *Handler) notify(ctx context.Context, name string) {
	s, ok := h.ctl.(Syncer)
	if !ok {
		h.ctl.Notify(name)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if err := s.Sync(ctx, name); err != nil {
		h.log.Warn("control loop did not apply the change in time; it will", "deployment", name, "err", err)
	}
}

// written finishes a successful write: it tells the control loop and
// answers with the deployment and its status.
func (h *Handler) written(w http.ResponseWriter, r *http.Request, status int, d serving.Deployment, verb string) {
	h.notify(r.Context(), d.Name)
	h.log.Info("deployment "+verb, "deployment", d.Name, "generation", d.Generation)
	if status == http.StatusCreated {
		w.Header().Set("Location", "/v1/deployments/"+d.Name)
	}
	writeJSON(w, status, h.withStatus(d))
}
