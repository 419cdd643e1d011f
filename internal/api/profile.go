package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/registry"
)

// A version's reference profile, the baseline of drift monitoring
// (registry.SetProfile), mounted by MountModels:
//
//	GET    /v1/models/{name}/versions/{v}/profile  monitor.Profile; 404 profile/not_found
//	PUT    /v1/models/{name}/versions/{v}/profile  monitor.Profile → Version (its tags name the profile)
//	DELETE /v1/models/{name}/versions/{v}/profile  204
//
// `ebb models push --profile-data FILE` computes the profile from a sample
// of training data on the client (monitor.BuildProfile), so the sample
// never leaves the user's machine; only its statistics are sent.

const codeProfileNotFound = "profile/not_found"

// maxProfileBodyBytes bounds a PUT profile: 1000 features of 100 bins fit.
const maxProfileBodyBytes = 16 << 20

func (h *Handler) mountProfiles(m *modelRoutes) {
	const p = "/v1/models/{name}/versions/{v}/profile"
	h.mux.HandleFunc("GET "+p, m.getProfile)
	h.mux.HandleFunc("PUT "+p, m.putProfile)
	h.mux.HandleFunc("DELETE "+p, m.deleteProfile)
	h.mux.HandleFunc(p, methodNotAllowed("DELETE, GET, HEAD, PUT"))
}

func profileNotFound(name string, v int) *apiError {
	return &apiError{http.StatusNotFound, codeProfileNotFound,
		fmt.Sprintf("version %d of model %q has no reference profile: compute one from a sample of its training data with `ebb models profile %s:%d --data FILE.csv`", v, name, name, v)}
}

func (m *modelRoutes) getProfile(w http.ResponseWriter, r *http.Request) {
	name, n, ok := m.versionPath(w, r)
	if !ok {
		return
	}
	p, _, err := m.svc.Profile(r.Context(), name, n)
	if errors.Is(err, registry.ErrNoProfile) {
		m.h.writeError(w, r, profileNotFound(name, n))
		return
	}
	if err != nil {
		m.h.writeError(w, r, m.registryError(r, err, name, n, nil))
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (m *modelRoutes) putProfile(w http.ResponseWriter, r *http.Request) {
	name, n, ok := m.versionPath(w, r)
	if !ok {
		return
	}
	if err := checkContentType(r, "application/json"); err != nil {
		m.h.writeError(w, r, err)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxProfileBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			m.h.writeError(w, r, &apiError{http.StatusRequestEntityTooLarge, codeTooLarge,
				fmt.Sprintf("the profile is larger than %d bytes: profile fewer features, or with fewer bins (--profile-bins)", maxProfileBodyBytes)})
			return
		}
		m.h.writeError(w, r, &apiError{http.StatusBadRequest, codeMalformed, "cannot read request body: " + err.Error()})
		return
	}
	if err := checkJSONObject(data, "profile"); err != nil {
		m.h.writeError(w, r, err)
		return
	}
	var p monitor.Profile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		m.h.writeError(w, r, &apiError{http.StatusBadRequest, codeModelInvalid,
			"invalid profile: " + strings.TrimPrefix(err.Error(), "json: ") + ": send the JSON of a reference profile, as `ebb models profile NAME:V --data FILE` builds it"})
		return
	}
	v, err := m.svc.SetProfile(r.Context(), name, n, &p)
	if err != nil {
		m.h.writeError(w, r, m.registryError(r, err, name, n, nil))
		return
	}
	m.h.log.Info("reference profile set", "model", name, "version", n, "features", len(p.Features), "rows", p.Rows)
	writeJSON(w, http.StatusOK, v)
}

func (m *modelRoutes) deleteProfile(w http.ResponseWriter, r *http.Request) {
	v, ok := m.pathVersionRecord(w, r)
	if !ok {
		return
	}
	name, n := v.Model, v.Version
	if v.Tags[registry.TagProfile] == "" {
		m.h.writeError(w, r, profileNotFound(name, n))
		return
	}
	if _, err := m.svc.Store().UpdateVersionTags(r.Context(), name, n, nil, []string{registry.TagProfile, registry.TagProfileSHA256}); err != nil {
		m.h.writeError(w, r, m.registryError(r, err, name, n, nil))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
