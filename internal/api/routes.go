package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Route objects (shard groups, serving.Route), mounted by MountRoutes:
//
//	GET    /v1/routes          every route (RouteList)
//	POST   /v1/routes          create one (serving.Route) → 201
//	GET    /v1/routes/{name}   one
//	PUT    /v1/routes/{name}   replace its spec, or create it → 200 or 201
//	DELETE /v1/routes/{name}   → 204
//
// A route's name shares the namespace of deployment names at the gateway,
// so a route may not be named as a deployment, nor a deployment as a
// route: 409 route/name_taken. (Two clients that create both at once can
// still make a clash; the gateway then serves the deployment.) The
// deployments a route names need not exist yet: a request the route sends
// to a missing one is answered 404 naming it. Writes need scope deploy
// (RouteAction); an invalid route is 400 route/invalid, listing every
// problem.

// RouteList is the body of GET /v1/routes.
type RouteList struct {
	Items []serving.Route `json:"items"`
}

// Error codes of the route object routes.
const (
	codeRoutesNotFound  = "route/not_found"
	codeRoutesExists    = "route/exists"
	codeRoutesInvalid   = "route/invalid"
	codeRoutesNameTaken = "route/name_taken"
)

// routeBody is the request body of POST and PUT. The output-only fields
// are accepted and ignored, so that what GET returns can be sent back.
type routeBody struct {
	Name       string            `json:"name"`
	Spec       serving.RouteSpec `json:"spec"`
	Generation json.RawMessage   `json:"generation,omitempty"`
	CreatedAt  json.RawMessage   `json:"createdAt,omitempty"`
	UpdatedAt  json.RawMessage   `json:"updatedAt,omitempty"`
}

// MountRoutes serves the route objects kept in st; changed, when set, is
// called after every change, before the answer (ebb up reloads its
// gateway's route table then, so that the next request sees the change).
// Deployments written from then on may not take a route's name.
func (h *Handler) MountRoutes(st store.RouteStore, changed func(ctx context.Context)) {
	h.routes = st
	rs := &routeObjects{h: h, st: st, changed: changed}
	h.mux.HandleFunc("GET /v1/routes", rs.list)
	h.mux.HandleFunc("POST /v1/routes", rs.create)
	h.mux.HandleFunc("/v1/routes", methodNotAllowed("GET, HEAD, POST"))
	h.mux.HandleFunc("GET /v1/routes/{name}", rs.get)
	h.mux.HandleFunc("PUT /v1/routes/{name}", rs.put)
	h.mux.HandleFunc("DELETE /v1/routes/{name}", rs.delete)
	h.mux.HandleFunc("/v1/routes/{name}", methodNotAllowed("DELETE, GET, HEAD, PUT"))
}

type routeObjects struct {
	h       *Handler
	st      store.RouteStore
	changed func(ctx context.Context)
}

func (rs *routeObjects) list(w http.ResponseWriter, r *http.Request) {
	routes, err := rs.st.ListRoutes(r.Context())
	if err != nil {
		rs.h.writeError(w, r, err)
		return
	}
	if routes == nil {
		routes = []serving.Route{}
	}
	writeJSON(w, http.StatusOK, RouteList{Items: routes})
}

func (rs *routeObjects) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rt, err := rs.st.GetRoute(r.Context(), name)
	if err != nil {
		rs.h.writeError(w, r, routeError(err, name))
		return
	}
	writeJSON(w, http.StatusOK, rt)
}

func (rs *routeObjects) create(w http.ResponseWriter, r *http.Request) {
	rt, err := readRoute(w, r, "")
	if err == nil {
		err = rs.h.deploymentNamed(r.Context(), rt.Name)
	}
	if err != nil {
		rs.h.writeError(w, r, err)
		return
	}
	created, err := rs.st.CreateRoute(r.Context(), rt)
	if err != nil {
		rs.h.writeError(w, r, routeError(err, rt.Name))
		return
	}
	rs.written(w, r, http.StatusCreated, created, "created")
}

// put replaces the named route's spec, or creates the route.
func (rs *routeObjects) put(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rt, err := readRoute(w, r, name)
	if err != nil {
		rs.h.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	for range 2 {
		updated, err := rs.st.UpdateRoute(ctx, name, func(cur *serving.Route) error {
			cur.Spec = rt.Spec
			return nil
		})
		if err == nil {
			rs.written(w, r, http.StatusOK, updated, "replaced")
			return
		}
		if !errors.Is(err, store.ErrNotFound) {
			rs.h.writeError(w, r, routeError(err, name))
			return
		}
		if err := rs.h.deploymentNamed(ctx, name); err != nil {
			rs.h.writeError(w, r, err)
			return
		}
		created, err := rs.st.CreateRoute(ctx, rt)
		if err == nil {
			rs.written(w, r, http.StatusCreated, created, "created")
			return
		}
		if !errors.Is(err, store.ErrExists) {
			rs.h.writeError(w, r, routeError(err, name))
			return
		}
	}
	rs.h.writeError(w, r, &apiError{http.StatusConflict, codeRoutesExists,
		fmt.Sprintf("route %q is being created and deleted concurrently: try again", name)})
}

func (rs *routeObjects) delete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := rs.st.DeleteRoute(r.Context(), name); err != nil {
		rs.h.writeError(w, r, routeError(err, name))
		return
	}
	rs.notify(r.Context())
	rs.h.log.Info("route deleted", "route", name)
	w.WriteHeader(http.StatusNoContent)
}

// written finishes a successful write: the gateway's table learns of it,
// and the answer is the route.
func (rs *routeObjects) written(w http.ResponseWriter, r *http.Request, status int, rt serving.Route, verb string) {
	rs.notify(r.Context())
	rs.h.log.Info("route "+verb, "route", rt.Name, "generation", rt.Generation)
	if status == http.StatusCreated {
		w.Header().Set("Location", "/v1/routes/"+rt.Name)
	}
	writeJSON(w, status, rt)
}

func (rs *routeObjects) notify(ctx context.Context) {
	if rs.changed != nil {
		rs.changed(context.WithoutCancel(ctx))
	}
}

// readRoute reads and validates a route body; urlName, when set, is the
// name in the URL: the body's must be empty or equal to it.
func readRoute(w http.ResponseWriter, r *http.Request, urlName string) (serving.Route, error) {
	var b routeBody
	if err := readJSON(w, r, "route", &b); err != nil {
		return serving.Route{}, err
	}
	if urlName != "" {
		if b.Name == "" {
			b.Name = urlName
		}
		if b.Name != urlName {
			return serving.Route{}, &apiError{http.StatusBadRequest, codeRoutesInvalid,
				fmt.Sprintf("invalid route: name: %s in the body does not match %s in the URL", quoteClipped(b.Name), quoteClipped(urlName))}
		}
	}
	rt := serving.Route{Name: b.Name, Spec: b.Spec}
	if err := rt.Validate(); err != nil {
		return serving.Route{}, &apiError{http.StatusBadRequest, codeRoutesInvalid, err.Error()}
	}
	return rt, nil
}

// deploymentNamed refuses, with 409 route/name_taken, a route named as a
// deployment.
func (h *Handler) deploymentNamed(ctx context.Context, name string) error {
	_, err := h.st.GetDeployment(ctx, name)
	switch {
	case err == nil:
		return &apiError{http.StatusConflict, codeRoutesNameTaken,
			fmt.Sprintf("deployment %q exists: a route cannot take a deployment's name, since clients call both by name; pick another name for the route", name)}
	case errors.Is(err, store.ErrNotFound):
		return nil
	}
	return err
}

// routeNamed refuses, with 409 route/name_taken, a deployment named as a
// route; nil without route objects (MountRoutes).
func (h *Handler) routeNamed(ctx context.Context, name string) error {
	if h.routes == nil {
		return nil
	}
	_, err := h.routes.GetRoute(ctx, name)
	switch {
	case err == nil:
		return &apiError{http.StatusConflict, codeRoutesNameTaken,
			fmt.Sprintf("route %q exists: a deployment cannot take a route's name, since clients call both by name; pick another name, or delete the route first (ebb routes delete %s)", name, name)}
	case errors.Is(err, store.ErrNotFound):
		return nil
	}
	return err
}

// routeError maps store errors about a route to API errors.
func routeError(err error, name string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &apiError{http.StatusNotFound, codeRoutesNotFound,
			fmt.Sprintf("route %q not found: list routes with `ebb get routes`", name)}
	case errors.Is(err, store.ErrExists):
		return &apiError{http.StatusConflict, codeRoutesExists,
			fmt.Sprintf("route %q already exists: replace it with `ebb routes apply -f` (PUT /v1/routes/%s), or delete it first", name, name)}
	}
	return err
}
