package api

import (
	"errors"
	"net/http"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Error codes of the model delete routes.
const (
	// codeModelInUse: an alias or a deployment still uses the version.
	codeModelInUse = "model/in_use"
	// codeDeleteUnsupported: the registry's store cannot delete whole
	// models.
	codeDeleteUnsupported = "model/delete_unsupported"
)

// deleteVersion deletes (purges) one version unless it is in use.
func (m *modelRoutes) deleteVersion(w http.ResponseWriter, r *http.Request) {
	name, n, ok := m.versionPath(w, r)
	if !ok {
		return
	}
	usedBy, err := m.h.usedBy(r)
	if err != nil {
		m.h.writeError(w, r, err)
		return
	}
	v, err := m.svc.DeleteVersion(r.Context(), name, n, usedBy)
	if err != nil {
		m.h.writeError(w, r, m.deleteError(r, err, name, n))
		return
	}
	m.h.log.Info("model version deleted", "model", name, "version", n)
	writeJSON(w, http.StatusOK, v)
}

// deleteModel deletes a model with all its versions unless one is in use.
func (m *modelRoutes) deleteModel(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	usedBy, err := m.h.usedBy(r)
	if err != nil {
		m.h.writeError(w, r, err)
		return
	}
	if err := m.svc.DeleteModel(r.Context(), name, usedBy); err != nil {
		m.h.writeError(w, r, m.deleteError(r, err, name, 0))
		return
	}
	m.h.log.Info("model deleted", "model", name)
	w.WriteHeader(http.StatusNoContent)
}

func (m *modelRoutes) deleteError(r *http.Request, err error, name string, version int) error {
	if iu, ok := errors.AsType[*registry.InUseError](err); ok {
		return &apiError{http.StatusConflict, codeModelInUse, iu.Error()}
	}
	if errors.Is(err, errors.ErrUnsupported) {
		return &apiError{http.StatusNotImplemented, codeDeleteUnsupported, err.Error()}
	}
	notFound := modelNotFound(name)
	if version > 0 {
		notFound = nil // the model or the version
	}
	return m.registryError(r, err, name, version, notFound)
}

// usedBy reports which deployments name or run a registry version: by the
// spec ("diabetes:3"), the version new replicas run, or the version a
// replica serves. It reads every deployment once per request; the same
// holds in both homes, where deployments and their status come from the
// store and the control loop.
func (h *Handler) usedBy(r *http.Request) (registry.UsedBy, error) {
	ds, err := h.st.ListDeployments(r.Context())
	if err != nil {
		return nil, err
	}
	users := map[string][]string{} // "model:N" → deployments
	for _, d := range ds {
		refs := map[string]bool{}
		if ref, ok := serving.ParseModelRef(d.Spec.Model); ok && ref.Version > 0 {
			refs[ref.String()] = true
		}
		st := h.ctl.Status(d.Name)
		if st.ModelVersion != "" {
			refs[st.ModelVersion] = true
		}
		for _, rs := range st.ReplicaStatuses {
			if rs.ModelVersion != "" {
				refs[rs.ModelVersion] = true
			}
		}
		for ref := range refs {
			users[ref] = append(users[ref], d.Name)
		}
	}
	return func(model string, version int) []string {
		return users[serving.ModelRef{Model: model, Version: version}.String()]
	}, nil
}
