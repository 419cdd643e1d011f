package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
)

// The model registry's routes, mounted by Handler.MountModels:
//
//	GET    /v1/models?prefix=&after=&limit=          ModelList (sorted by name; limit 1..1000, default 100)
//	POST   /v1/models                                {"name","description"} → 201 Model
//	GET    /v1/models/{name}                         ModelDetail (the model and its aliases)
//	DELETE /v1/models/{name}                         204; 409 model/in_use while an alias or deployment uses a version
//	GET    /v1/models/{name}/versions?after=&limit=  VersionList (oldest first)
//	POST   /v1/models/{name}/versions                push (below) → 201 Version
//	GET    /v1/models/{name}/versions/{v}            Version
//	PATCH  /v1/models/{name}/versions/{v}            merge patch {"tags":{"k":"v","gone":null}} → Version
//	DELETE /v1/models/{name}/versions/{v}            Version, purged; 409 model/in_use while an alias or deployment uses it
//	GET    /v1/models/{name}/aliases                 AliasList
//	GET    /v1/models/{name}/aliases/{alias}         Alias
//	PUT    /v1/models/{name}/aliases/{alias}         AliasRequest → AliasMove (201 when created)
//	DELETE /v1/models/{name}/aliases/{alias}         204
//	GET    /v1/models/{name}/aliases/{alias}/history MoveList (oldest first)
//	GET    /v1/deployments/{name}/history            ServingList (which version served when, oldest first)
//
// A push is either
//   - multipart/form-data with a part "metadata" (PushMetadata as JSON) and
//     a part "artifact" holding the model file, or for a directory a tar
//     archive of it (registry.WriteTar) with metadata.packaging "tar"; or
//   - application/json PushMetadata naming an artifact already in the
//     artifact store (artifactURI and sha256).
//
// Either way the engine must load the model, else 400 model/invalid with
// the engine's message. PUT and DELETE on an alias are a compare-and-swap
// when they carry If-Match: "N" (the alias must point at version N),
// If-None-Match: * (it must not exist) or, for PUT, "expectedVersion"; a
// mismatch is 409 alias/conflict.

// Error codes of the model routes.
const (
	codeModelNotFound   = "model/not_found"
	codeVersionNotFound = "version/not_found"
	codeAliasNotFound   = "alias/not_found"
	codeModelExists     = "model/exists"
	codeModelInvalid    = "model/invalid"
	codeAliasConflict   = "alias/conflict"
)

// Paging limits of the list routes.
const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// maxArtifactBytes bounds an uploaded artifact.
const maxArtifactBytes = 8 << 30

// ModelList is the body of GET /v1/models. Next, when set, is the "after"
// value that fetches the next page.
type ModelList struct {
	Items []registry.Model `json:"items"`
	Next  string           `json:"next,omitempty"`
}

// ModelDetail is the body of GET /v1/models/{name}.
type ModelDetail struct {
	registry.Model
	Aliases []registry.Alias `json:"aliases"`
}

// VersionList is the body of GET /v1/models/{name}/versions. Next, when
// not 0, is the "after" value that fetches the next page.
type VersionList struct {
	Items []registry.Version `json:"items"`
	Next  int                `json:"next,omitempty"`
}

// AliasList is the body of GET /v1/models/{name}/aliases.
type AliasList struct {
	Items []registry.Alias `json:"items"`
}

// MoveList is the body of GET /v1/models/{name}/aliases/{alias}/history.
type MoveList struct {
	Items []registry.AliasMove `json:"items"`
}

// ServingList is the body of GET /v1/deployments/{name}/history.
type ServingList struct {
	Items []registry.ServingRecord `json:"items"`
}

// CreateModelRequest is the body of POST /v1/models.
type CreateModelRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// PushMetadata describes a pushed version: the JSON "metadata" part of a
// multipart push, or the whole body of a JSON push.
type PushMetadata struct {
	// Engine loads the model; detected from the file name when empty.
	Engine string `json:"engine,omitempty"`
	// Packaging is "" for a model file or "tar" for a directory archive.
	Packaging string `json:"packaging,omitempty"`
	// Entry is the file inside a directory that the engine loads.
	Entry string `json:"entry,omitempty"`
	// ArtifactURI and SHA256 name a stored artifact (JSON pushes only).
	ArtifactURI string             `json:"artifactURI,omitempty"`
	SHA256      string             `json:"sha256,omitempty"`
	Signature   registry.Signature `json:"signature"`
	Lineage     registry.Lineage   `json:"lineage"`
	Tags        map[string]string  `json:"tags,omitempty"`
	// Alias, when set, is moved to the new version.
	Alias string `json:"alias,omitempty"`
	// Description is used when the push creates the model.
	Description string `json:"description,omitempty"`
	CreatedBy   string `json:"createdBy,omitempty"`
}

// AliasRequest is the body of PUT /v1/models/{name}/aliases/{alias}.
type AliasRequest struct {
	Version int `json:"version"`
	// ExpectedVersion, when set, is the version the alias must point at
	// now (0: it must not exist).
	ExpectedVersion *int   `json:"expectedVersion,omitempty"`
	UpdatedBy       string `json:"updatedBy,omitempty"`
}

// MountModels adds the model registry routes, served by svc, to h. Call it
// before h serves requests.
func (h *Handler) MountModels(svc *registry.Service) {
	m := &modelRoutes{h: h, svc: svc}
	h.models = svc
	h.mux.HandleFunc("GET /v1/models", m.list)
	h.mux.HandleFunc("POST /v1/models", m.create)
	h.mux.HandleFunc("/v1/models", methodNotAllowed("GET, HEAD, POST"))
	h.mux.HandleFunc("GET /v1/models/{name}", m.get)
	h.mux.HandleFunc("DELETE /v1/models/{name}", m.deleteModel)
	h.mux.HandleFunc("/v1/models/{name}", methodNotAllowed("DELETE, GET, HEAD"))
	h.mux.HandleFunc("GET /v1/models/{name}/versions", m.listVersions)
	h.mux.HandleFunc("POST /v1/models/{name}/versions", m.push)
	h.mux.HandleFunc("/v1/models/{name}/versions", methodNotAllowed("GET, HEAD, POST"))
	h.mux.HandleFunc("GET /v1/models/{name}/versions/{v}", m.getVersion)
	h.mux.HandleFunc("PATCH /v1/models/{name}/versions/{v}", m.patchVersion)
	h.mux.HandleFunc("DELETE /v1/models/{name}/versions/{v}", m.deleteVersion)
	h.mux.HandleFunc("/v1/models/{name}/versions/{v}", methodNotAllowed("DELETE, GET, HEAD, PATCH"))
	h.mux.HandleFunc("GET /v1/models/{name}/aliases", m.listAliases)
	h.mux.HandleFunc("/v1/models/{name}/aliases", methodNotAllowed("GET, HEAD"))
	h.mux.HandleFunc("GET /v1/models/{name}/aliases/{alias}", m.getAlias)
	h.mux.HandleFunc("PUT /v1/models/{name}/aliases/{alias}", m.putAlias)
	h.mux.HandleFunc("DELETE /v1/models/{name}/aliases/{alias}", m.deleteAlias)
	h.mux.HandleFunc("/v1/models/{name}/aliases/{alias}", methodNotAllowed("DELETE, GET, HEAD, PUT"))
	h.mux.HandleFunc("GET /v1/models/{name}/aliases/{alias}/history", m.aliasHistory)
	h.mux.HandleFunc("GET /v1/deployments/{name}/history", m.servingHistory)
	h.mountProfiles(m) // profile.go
}

type modelRoutes struct {
	h   *Handler
	svc *registry.Service
}

func modelNotFound(name string) *apiError {
	return &apiError{http.StatusNotFound, codeModelNotFound,
		fmt.Sprintf("model %q not found: list models with `ebb models list`, or push one with `ebb models push`", name)}
}

func versionNotFound(name string, v int) *apiError {
	return &apiError{http.StatusNotFound, codeVersionNotFound,
		fmt.Sprintf("version %d of model %q not found: list its versions with `ebb models show %s`", v, name, name)}
}

func aliasNotFound(name, alias string) *apiError {
	return &apiError{http.StatusNotFound, codeAliasNotFound,
		fmt.Sprintf("alias %q of model %q not found: set it with `ebb models alias %s %s VERSION`", alias, name, name, alias)}
}

// registryError maps registry and store errors to API errors. notFound is
// used for store.ErrNotFound; nil means "the model or this version".
func (m *modelRoutes) registryError(r *http.Request, err error, name string, version int, notFound *apiError) error {
	if ie, ok := errors.AsType[*registry.InvalidError](err); ok {
		return &apiError{http.StatusBadRequest, codeModelInvalid, ie.Message}
	}
	switch {
	case errors.Is(err, store.ErrConflict):
		return &apiError{http.StatusConflict, codeAliasConflict, "the alias changed meanwhile: read it again and retry"}
	case errors.Is(err, store.ErrExists):
		return &apiError{http.StatusConflict, codeModelExists,
			fmt.Sprintf("model %q already exists: push versions to it with `ebb models push DIR --name %s`", name, name)}
	case errors.Is(err, store.ErrNotFound):
		if notFound != nil {
			return notFound
		}
		switch _, merr := m.svc.Store().GetModel(r.Context(), name); {
		case errors.Is(merr, store.ErrNotFound):
			return modelNotFound(name)
		case errors.Is(merr, store.ErrUnavailable):
			return merr // the store went away meanwhile: 503, not a 404
		}
		return versionNotFound(name, version)
	}
	// Anything else passes through to writeError: store.ErrUnavailable
	// becomes 503 store/unavailable naming the store, the rest 500.
	return err
}

// aliasConflict is the 409 for a compare-and-swap on an alias that found
// another version than expect; it says what the alias points at now.
func (m *modelRoutes) aliasConflict(r *http.Request, name, alias string, expect int) *apiError {
	now := "does not exist"
	if a, err := m.svc.Store().GetAlias(r.Context(), name, alias); err == nil {
		now = fmt.Sprintf("points at version %d", a.Version)
	}
	want := fmt.Sprintf("version %d", expect)
	if expect == 0 {
		want = "no alias"
	}
	return &apiError{http.StatusConflict, codeAliasConflict,
		fmt.Sprintf("alias %s@%s %s, expected %s: someone else moved it; read it again and retry", name, alias, now, want)}
}

// pageLimit reads ?limit=, defaulting and bounding it.
func pageLimit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return defaultPageLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxPageLimit {
		return 0, &apiError{http.StatusBadRequest, codeMalformed,
			fmt.Sprintf("limit %q must be a whole number from 1 to %d", s, maxPageLimit)}
	}
	return n, nil
}

func pathVersion(r *http.Request) (int, error) {
	s := r.PathValue("v")
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, &apiError{http.StatusBadRequest, codeMalformed,
			fmt.Sprintf("version %q must be a positive whole number", s)}
	}
	return n, nil
}

// versionPath returns the model name and version number of r's path
// (/v1/models/{name}/versions/{v}); false: it answered w with the error.
func (m *modelRoutes) versionPath(w http.ResponseWriter, r *http.Request) (string, int, bool) {
	n, err := pathVersion(r)
	if err != nil {
		m.h.writeError(w, r, err)
		return "", 0, false
	}
	return r.PathValue("name"), n, true
}

func (m *modelRoutes) list(w http.ResponseWriter, r *http.Request) {
	limit, err := pageLimit(r)
	if err != nil {
		m.h.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	ms, err := m.svc.Store().ListModels(r.Context(), registry.ListOptions{Prefix: q.Get("prefix"), After: q.Get("after"), Limit: limit})
	if err != nil {
		m.h.writeError(w, r, err)
		return
	}
	out := ModelList{Items: ms}
	if len(ms) == limit {
		out.Next = ms[len(ms)-1].Name
	}
	writeJSON(w, http.StatusOK, out)
}

// readJSON checks the Content-Type and strictly decodes a JSON object body
// into v; what names the body in errors.
func readJSON(w http.ResponseWriter, r *http.Request, what string, v any) error {
	if err := checkContentType(r, "application/json"); err != nil {
		return err
	}
	data, err := readBody(w, r)
	if err != nil {
		return err
	}
	return decodeStrict(data, what, v)
}

func decodeStrict(data []byte, what string, v any) error {
	if err := checkJSONObject(data, what); err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &apiError{http.StatusBadRequest, codeMalformed, what + ": " + strings.TrimPrefix(err.Error(), "json: ")}
	}
	return nil
}

func (m *modelRoutes) create(w http.ResponseWriter, r *http.Request) {
	var req CreateModelRequest
	if err := readJSON(w, r, "model", &req); err != nil {
		m.h.writeError(w, r, err)
		return
	}
	model, err := m.svc.CreateModel(r.Context(), registry.Model{Name: req.Name, Description: req.Description})
	if err != nil {
		m.h.writeError(w, r, m.registryError(r, err, req.Name, 0, nil))
		return
	}
	m.h.log.Info("model created", "model", model.Name)
	w.Header().Set("Location", "/v1/models/"+url.PathEscape(model.Name))
	writeJSON(w, http.StatusCreated, model)
}

func (m *modelRoutes) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	model, err := m.svc.Store().GetModel(r.Context(), name)
	if err != nil {
		m.h.writeError(w, r, m.registryError(r, err, name, 0, modelNotFound(name)))
		return
	}
	aliases, err := m.svc.Store().ListAliases(r.Context(), name)
	if err != nil {
		m.h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ModelDetail{Model: model, Aliases: aliases})
}

func (m *modelRoutes) listVersions(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	limit, err := pageLimit(r)
	if err != nil {
		m.h.writeError(w, r, err)
		return
	}
	after := 0
	if s := r.URL.Query().Get("after"); s != "" {
		if after, err = strconv.Atoi(s); err != nil || after < 0 {
			m.h.writeError(w, r, &apiError{http.StatusBadRequest, codeMalformed,
				fmt.Sprintf("after %q must be a version number", s)})
			return
		}
	}
	vs, err := m.svc.Store().ListVersions(r.Context(), name, registry.VersionListOptions{After: after, Limit: limit})
	if err != nil {
		m.h.writeError(w, r, m.registryError(r, err, name, 0, modelNotFound(name)))
		return
	}
	out := VersionList{Items: vs}
	if len(vs) == limit {
		out.Next = vs[len(vs)-1].Version
	}
	writeJSON(w, http.StatusOK, out)
}

func (m *modelRoutes) getVersion(w http.ResponseWriter, r *http.Request) {
	if v, ok := m.pathVersionRecord(w, r); ok {
		writeJSON(w, http.StatusOK, v)
	}
}

// pathVersionRecord returns the stored version r's path names; false: it
// answered w with the error (a malformed path, no such version).
func (m *modelRoutes) pathVersionRecord(w http.ResponseWriter, r *http.Request) (registry.Version, bool) {
	name, n, ok := m.versionPath(w, r)
	if !ok {
		return registry.Version{}, false
	}
	v, err := m.svc.Store().GetVersion(r.Context(), name, n)
	if err != nil {
		m.h.writeError(w, r, m.registryError(r, err, name, n, nil))
		return registry.Version{}, false
	}
	return v, true
}

// patchVersion applies a JSON merge patch whose only member is "tags".
func (m *modelRoutes) patchVersion(w http.ResponseWriter, r *http.Request) {
	name, n, ok := m.versionPath(w, r)
	if !ok {
		return
	}
	if err := checkContentType(r, "application/merge-patch+json", "application/json"); err != nil {
		m.h.writeError(w, r, err)
		return
	}
	data, err := readBody(w, r)
	if err != nil {
		m.h.writeError(w, r, err)
		return
	}
	var patch struct {
		Tags map[string]*string `json:"tags"`
	}
	if err := checkJSONObject(data, "merge patch"); err != nil {
		m.h.writeError(w, r, err)
		return
	}
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(data, &fields)
	for k := range fields {
		if k != "tags" {
			m.h.writeError(w, r, &apiError{http.StatusBadRequest, codeModelInvalid,
				fmt.Sprintf("cannot change %q: versions are immutable except their tags; push a new version instead", k)})
			return
		}
	}
	if err := json.Unmarshal(data, &patch); err != nil {
		m.h.writeError(w, r, &apiError{http.StatusBadRequest, codeModelInvalid,
			"tags must be an object of strings (null deletes a tag): " + strings.TrimPrefix(err.Error(), "json: ")})
		return
	}
	set := map[string]string{}
	var del []string
	for k, v := range patch.Tags {
		if v == nil {
			del = append(del, k)
		} else {
			set[k] = *v
		}
	}
	v, err := m.svc.Store().UpdateVersionTags(r.Context(), name, n, set, del)
	if err != nil {
		m.h.writeError(w, r, m.registryError(r, err, name, n, nil))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (m *modelRoutes) listAliases(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := m.svc.Store().GetModel(r.Context(), name); err != nil {
		m.h.writeError(w, r, m.registryError(r, err, name, 0, modelNotFound(name)))
		return
	}
	as, err := m.svc.Store().ListAliases(r.Context(), name)
	if err != nil {
		m.h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, AliasList{Items: as})
}

func (m *modelRoutes) getAlias(w http.ResponseWriter, r *http.Request) {
	name, alias := r.PathValue("name"), r.PathValue("alias")
	a, err := m.svc.Store().GetAlias(r.Context(), name, alias)
	if err != nil {
		m.h.writeError(w, r, m.registryError(r, err, name, 0, aliasNotFound(name, alias)))
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.Itoa(a.Version)))
	writeJSON(w, http.StatusOK, a)
}

// expectedFrom reads the compare-and-swap condition from If-Match /
// If-None-Match and body (nil when none); registry.AnyVersion when none.
func expectedFrom(r *http.Request, body *int) (int, error) {
	expect := registry.AnyVersion
	if im := r.Header.Get("If-Match"); im != "" {
		s := strings.Trim(strings.TrimPrefix(strings.TrimSpace(im), "W/"), `"`)
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return 0, &apiError{http.StatusBadRequest, codeMalformed,
				fmt.Sprintf("If-Match %q must be the version the alias points at now, such as \"3\"", im)}
		}
		expect = n
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if strings.TrimSpace(inm) != "*" {
			return 0, &apiError{http.StatusBadRequest, codeMalformed,
				fmt.Sprintf("If-None-Match %q: only * (the alias must not exist) is supported", inm)}
		}
		if expect != registry.AnyVersion {
			return 0, &apiError{http.StatusBadRequest, codeMalformed, "send If-Match or If-None-Match, not both"}
		}
		expect = 0
	}
	if body != nil {
		if *body < 0 {
			return 0, &apiError{http.StatusBadRequest, codeMalformed, "expectedVersion must be 0 (no alias yet) or a version number"}
		}
		if expect != registry.AnyVersion && expect != *body {
			return 0, &apiError{http.StatusBadRequest, codeMalformed,
				fmt.Sprintf("expectedVersion %d disagrees with the If-Match/If-None-Match header", *body)}
		}
		expect = *body
	}
	return expect, nil
}

func (m *modelRoutes) putAlias(w http.ResponseWriter, r *http.Request) {
	name, alias := r.PathValue("name"), r.PathValue("alias")
	var req AliasRequest
	if err := readJSON(w, r, "alias", &req); err != nil {
		m.h.writeError(w, r, err)
		return
	}
	expect, err := expectedFrom(r, req.ExpectedVersion)
	if err != nil {
		m.h.writeError(w, r, err)
		return
	}
	move, err := m.svc.MoveAlias(r.Context(), name, alias, req.Version, expect, req.UpdatedBy)
	if errors.Is(err, store.ErrConflict) {
		err = m.aliasConflict(r, name, alias, expect)
	}
	if err != nil {
		m.h.writeError(w, r, m.registryError(r, err, name, req.Version, nil))
		return
	}
	if move.From != move.To {
		m.h.log.Info("alias moved", "model", name, "alias", alias, "from", move.From, "to", move.To, "by", move.By)
	}
	w.Header().Set("ETag", strconv.Quote(strconv.Itoa(move.To)))
	status := http.StatusOK
	if move.From == 0 {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/models/"+url.PathEscape(name)+"/aliases/"+url.PathEscape(alias))
	}
	writeJSON(w, status, move)
}

func (m *modelRoutes) deleteAlias(w http.ResponseWriter, r *http.Request) {
	name, alias := r.PathValue("name"), r.PathValue("alias")
	expect, err := expectedFrom(r, nil)
	if err == nil && expect == 0 {
		err = &apiError{http.StatusBadRequest, codeMalformed, "If-None-Match: * cannot apply to a delete"}
	}
	if err != nil {
		m.h.writeError(w, r, err)
		return
	}
	move, err := m.svc.DeleteAlias(r.Context(), name, alias, expect, r.URL.Query().Get("by"))
	if errors.Is(err, store.ErrConflict) {
		err = m.aliasConflict(r, name, alias, expect)
	}
	if err != nil {
		m.h.writeError(w, r, m.registryError(r, err, name, 0, aliasNotFound(name, alias)))
		return
	}
	m.h.log.Info("alias deleted", "model", name, "alias", alias, "was", move.From)
	w.WriteHeader(http.StatusNoContent)
}

func (m *modelRoutes) aliasHistory(w http.ResponseWriter, r *http.Request) {
	name, alias := r.PathValue("name"), r.PathValue("alias")
	hist, err := m.svc.Store().AliasHistory(r.Context(), name, alias)
	if err != nil {
		m.h.writeError(w, r, err)
		return
	}
	if len(hist) == 0 {
		m.h.writeError(w, r, aliasNotFound(name, alias))
		return
	}
	writeJSON(w, http.StatusOK, MoveList{Items: hist})
}

func (m *modelRoutes) servingHistory(w http.ResponseWriter, r *http.Request) {
	hist, err := m.svc.Store().ServingHistory(r.Context(), r.PathValue("name"))
	if err != nil {
		m.h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ServingList{Items: hist})
}
