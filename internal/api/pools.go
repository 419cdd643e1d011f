package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Multi-model pools (serving.Pool), mounted by MountPools:
//
//	GET    /v1/pools          every pool, with its status (PoolList)
//	POST   /v1/pools          create one (serving.Pool) → 201
//	GET    /v1/pools/{name}   one, with its status
//	PUT    /v1/pools/{name}   replace its spec, or create it → 200 or 201
//	DELETE /v1/pools/{name}   → 204; 409 pool/in_use while deployments name it
//
// A deployment joins a pool by naming it (spec.pool.name); the pool must
// exist, run the model's engine, and have a memory budget the model fits
// in when its size is known (checkPool). Writes need scope admin: a pool's
// replicas take the machine's memory for every model in it. An invalid
// pool is 400 pool/invalid, listing every problem.

// PoolList is the body of GET /v1/pools.
type PoolList struct {
	Items []serving.Pool `json:"items"`
}

// PoolController is the control loop's view of pools: their status, and
// the sizes their replicas measured. A Controller that is one reports
// them; otherwise pools have an empty status and deploy-time checks know
// no measured size.
type PoolController interface {
	PoolStatus(name string) serving.PoolStatus
	PoolModelBytes(pool, model string) int64
}

// Error codes of the pool routes.
const (
	codePoolNotFound = "pool/not_found"
	codePoolExists   = "pool/exists"
	codePoolInvalid  = "pool/invalid"
	codePoolInUse    = "pool/in_use"
)

// poolBody is the request body of POST and PUT; the output-only fields are
// accepted and ignored, so that what GET returns can be sent back.
type poolBody struct {
	Name       string           `json:"name"`
	Spec       serving.PoolSpec `json:"spec"`
	Status     json.RawMessage  `json:"status,omitempty"`
	Generation json.RawMessage  `json:"generation,omitempty"`
	CreatedAt  json.RawMessage  `json:"createdAt,omitempty"`
	UpdatedAt  json.RawMessage  `json:"updatedAt,omitempty"`
}

// MountPools serves the pools kept in st. Deployments written from then
// on may name a pool only if it exists.
func (h *Handler) MountPools(st store.PoolStore) {
	h.pools = st
	ps := &poolObjects{h: h, st: st}
	h.mux.HandleFunc("GET /v1/pools", ps.list)
	h.mux.HandleFunc("POST /v1/pools", ps.create)
	h.mux.HandleFunc("/v1/pools", methodNotAllowed("GET, HEAD, POST"))
	h.mux.HandleFunc("GET /v1/pools/{name}", ps.get)
	h.mux.HandleFunc("PUT /v1/pools/{name}", ps.put)
	h.mux.HandleFunc("DELETE /v1/pools/{name}", ps.delete)
	h.mux.HandleFunc("/v1/pools/{name}", methodNotAllowed("DELETE, GET, HEAD, PUT"))
}

type poolObjects struct {
	h  *Handler
	st store.PoolStore
}

// withStatus fills p's status from the control loop.
func (ps *poolObjects) withStatus(p serving.Pool) serving.Pool {
	if pc, ok := ps.h.ctl.(PoolController); ok {
		p.Status = pc.PoolStatus(p.Name)
	}
	return p
}

func (ps *poolObjects) list(w http.ResponseWriter, r *http.Request) {
	pools, err := ps.st.ListPools(r.Context())
	if err != nil {
		ps.h.writeError(w, r, err)
		return
	}
	out := PoolList{Items: make([]serving.Pool, 0, len(pools))}
	for _, p := range pools {
		out.Items = append(out.Items, ps.withStatus(p))
	}
	writeJSON(w, http.StatusOK, out)
}

func (ps *poolObjects) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, err := ps.st.GetPool(r.Context(), name)
	if err != nil {
		ps.h.writeError(w, r, poolError(err, name))
		return
	}
	writeJSON(w, http.StatusOK, ps.withStatus(p))
}

func (ps *poolObjects) create(w http.ResponseWriter, r *http.Request) {
	p, err := readPool(w, r, "")
	if err != nil {
		ps.h.writeError(w, r, err)
		return
	}
	created, err := ps.st.CreatePool(r.Context(), p)
	if err != nil {
		ps.h.writeError(w, r, poolError(err, p.Name))
		return
	}
	ps.written(w, r, http.StatusCreated, created, "created")
}

// put replaces the named pool's spec, or creates the pool.
func (ps *poolObjects) put(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, err := readPool(w, r, name)
	if err != nil {
		ps.h.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	for range 2 {
		updated, err := ps.st.UpdatePool(ctx, name, func(cur *serving.Pool) error {
			cur.Spec = p.Spec
			return nil
		})
		if err == nil {
			ps.written(w, r, http.StatusOK, updated, "replaced")
			return
		}
		if !errors.Is(err, store.ErrNotFound) {
			ps.h.writeError(w, r, poolError(err, name))
			return
		}
		created, err := ps.st.CreatePool(ctx, p)
		if err == nil {
			ps.written(w, r, http.StatusCreated, created, "created")
			return
		}
		if !errors.Is(err, store.ErrExists) {
			ps.h.writeError(w, r, poolError(err, name))
			return
		}
	}
	ps.h.writeError(w, r, &apiError{http.StatusConflict, codePoolExists,
		fmt.Sprintf("pool %q is being created and deleted concurrently: try again", name)})
}

// delete deletes a pool that no deployment names.
func (ps *poolObjects) delete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ctx := r.Context()
	if _, err := ps.st.GetPool(ctx, name); err != nil {
		ps.h.writeError(w, r, poolError(err, name))
		return
	}
	deps, err := ps.h.st.ListDeployments(ctx)
	if err != nil {
		ps.h.writeError(w, r, err)
		return
	}
	var users []string
	for _, d := range deps {
		if d.Spec.Pool != nil && d.Spec.Pool.Name == name {
			users = append(users, d.Name)
		}
	}
	if len(users) > 0 {
		shown := users[:min(len(users), 5)]
		more := ""
		if len(users) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(users)-len(shown))
		}
		ps.h.writeError(w, r, &apiError{http.StatusConflict, codePoolInUse,
			fmt.Sprintf("pool %q hosts %d deployment(s) (%s%s): delete them or move them to another pool first", name, len(users), strings.Join(shown, ", "), more)})
		return
	}
	if err := ps.st.DeletePool(ctx, name); err != nil {
		ps.h.writeError(w, r, poolError(err, name))
		return
	}
	ps.h.notify(ctx, serving.PoolKey(name))
	ps.h.log.Info("pool deleted", "pool", name)
	w.WriteHeader(http.StatusNoContent)
}

// written finishes a successful write: the control loop applies it, and
// the answer is the pool.
func (ps *poolObjects) written(w http.ResponseWriter, r *http.Request, status int, p serving.Pool, verb string) {
	ps.h.notify(r.Context(), serving.PoolKey(p.Name))
	ps.h.log.Info("pool "+verb, "pool", p.Name, "generation", p.Generation)
	if status == http.StatusCreated {
		w.Header().Set("Location", "/v1/pools/"+p.Name)
	}
	writeJSON(w, status, ps.withStatus(p))
}

// readPool reads, defaults and validates a pool body; urlName, when set,
// is the name in the URL: the body's must be empty or equal to it.
func readPool(w http.ResponseWriter, r *http.Request, urlName string) (serving.Pool, error) {
	var b poolBody
	if err := readJSON(w, r, "pool", &b); err != nil {
		return serving.Pool{}, err
	}
	if urlName != "" {
		if b.Name == "" {
			b.Name = urlName
		}
		if b.Name != urlName {
			return serving.Pool{}, &apiError{http.StatusBadRequest, codePoolInvalid,
				fmt.Sprintf("invalid pool: name: %s in the body does not match %s in the URL", quoteClipped(b.Name), quoteClipped(urlName))}
		}
	}
	p := serving.Pool{Name: b.Name, Spec: b.Spec}
	p.Spec.Default()
	if err := p.Validate(); err != nil {
		return serving.Pool{}, &apiError{http.StatusBadRequest, codePoolInvalid, err.Error()}
	}
	return p, nil
}

// poolError maps store errors about a pool to API errors.
func poolError(err error, name string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &apiError{http.StatusNotFound, codePoolNotFound,
			fmt.Sprintf("pool %q not found: list pools with `ebb pools list`", name)}
	case errors.Is(err, store.ErrExists):
		return &apiError{http.StatusConflict, codePoolExists,
			fmt.Sprintf("pool %q already exists: replace it with `ebb pools apply -f` (PUT /v1/pools/%s), or delete it first", name, name)}
	}
	return err
}

// checkPool refuses a deployment named into a pool that does not exist
// (or where this server keeps no pools), of another engine than the
// pool's, or bigger than a replica's whole memory budget. The size is the
// one a replica of the pool measured for the deployment, when one did;
// else, for an onnx model, its file's (a local path) or artifact's (a
// registry version) size, which an onnx model's memory is never below. A
// trees model's file is JSON text, larger than the model once loaded, so
// it is checked once measured: at its first load, which fails with both
// sizes.
func (h *Handler) checkPool(ctx context.Context, name string, spec serving.Spec) error {
	if spec.Pool == nil {
		return nil
	}
	invalid := func(format string, args ...any) error {
		return &apiError{http.StatusBadRequest, codeInvalid, "invalid deployment: " + fmt.Sprintf(format, args...)}
	}
	if h.pools == nil {
		return invalid("spec.pool: this server keeps no pools (in a cluster, the ModelPool CRD is not installed: apply deploy/crds/serving.ebb.dev_modelpools.yaml and restart the operator): deploy the model without spec.pool")
	}
	p, err := h.pools.GetPool(ctx, spec.Pool.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return invalid("spec.pool.name: pool %q does not exist: create it first (ebb pools apply -f pool.yaml)", spec.Pool.Name)
	case err != nil:
		return err
	}
	engine, size, sizeFrom := spec.Engine, int64(0), ""
	if _, ok := serving.ParseModelRef(spec.Model); ok && h.models != nil {
		v, err := h.models.ResolveString(ctx, spec.Model)
		if err != nil {
			return err // checkModel said why already
		}
		engine = v.Engine
		size, sizeFrom = v.Size, "its artifact's size in the registry"
	} else if path, local := localModel(spec.Model); local {
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
			size, sizeFrom = fi.Size(), "its file's size"
		}
	}
	if engine != "" && engine != p.Spec.Engine {
		return invalid("spec.pool.name: pool %q runs engine %s, and this model is engine %s: host it in a %s pool, or deploy it on its own", p.Name, p.Spec.Engine, engine, engine)
	}
	if engine != "onnx" {
		size, sizeFrom = 0, ""
	}
	if pc, ok := h.ctl.(PoolController); ok {
		if b := pc.PoolModelBytes(p.Name, name); b > 0 {
			size, sizeFrom = b, "as a replica of the pool measured it"
		}
	}
	budget := p.Spec.BudgetBytes()
	if err := pool.CheckFits(name, size, budget); err != nil {
		return invalid("spec.pool.name: %v (the model's size is %s)", err, sizeFrom)
	}
	return nil
}

// poolName is the pool s names; "" for none.
func poolName(s serving.Spec) string {
	if s.Pool == nil {
		return ""
	}
	return s.Pool.Name
}
