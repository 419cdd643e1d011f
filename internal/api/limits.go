package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	sigsjson "sigs.k8s.io/json"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Tenant limits (serving.Limit), mounted by MountLimits:
//
//	GET    /v1/limits                           every limit (LimitList), with an ETag; If-None-Match → 304
//	GET    /v1/limits/{tenant}                  the tenant's limit across its deployments
//	PUT    /v1/limits/{tenant}                  set it (LimitBody) → 200, or 201 when created
//	DELETE /v1/limits/{tenant}                  → 204
//	GET, PUT, DELETE /v1/limits/{tenant}/deployments/{deployment}
//	                                            the same for the tenant on one deployment
//
// Tenant "*" is the default of every tenant without a limit of its own.
// A PUT replaces every bound of the limit: a bound left out is none. An
// invalid limit is 400 limit/invalid, listing every problem; a missing
// one 404 limit/not_found. Writes need scope admin (RouteAction).
// Gateways poll GET /v1/limits (package limit's Source); the ETag is a
// digest of the list, the same from every server that reads the same
// database.

// LimitList is the body of GET /v1/limits.
type LimitList struct {
	Items []serving.Limit `json:"items"`
}

// LimitBody is the body of PUT: the limit's bounds. Its key and the
// output-only fields are accepted, so that what GET returns can be sent
// back; tenant and deployment must then equal the URL's.
type LimitBody struct {
	Tenant      string  `json:"tenant,omitempty"`
	Deployment  string  `json:"deployment,omitempty"`
	Rate        float64 `json:"rate,omitempty"`
	Burst       int32   `json:"burst,omitempty"`
	Concurrency int32   `json:"concurrency,omitempty"`
	Share       int32   `json:"share,omitempty"`

	Generation json.RawMessage `json:"generation,omitempty"`
	CreatedAt  json.RawMessage `json:"createdAt,omitempty"`
	UpdatedAt  json.RawMessage `json:"updatedAt,omitempty"`
}

// Error codes of the limit routes.
const (
	codeLimitNotFound = "limit/not_found"
	codeLimitInvalid  = "limit/invalid"
)

// MountLimits serves the tenant limits kept in st; changed, when set, is
// called after every change, before the answer (ebb up can reload its
// gateway's limits then rather than at its next poll).
func (h *Handler) MountLimits(st store.LimitStore, changed func(ctx context.Context)) {
	ls := &limitRoutes{h: h, st: st, changed: changed}
	h.mux.HandleFunc("GET /v1/limits", ls.list)
	h.mux.HandleFunc("/v1/limits", methodNotAllowed("GET, HEAD"))
	for _, p := range []string{"/v1/limits/{tenant}", "/v1/limits/{tenant}/deployments/{deployment}"} {
		h.mux.HandleFunc("GET "+p, ls.get)
		h.mux.HandleFunc("PUT "+p, ls.put)
		h.mux.HandleFunc("DELETE "+p, ls.delete)
		h.mux.HandleFunc(p, methodNotAllowed("DELETE, GET, HEAD, PUT"))
	}
}

// LimitList serves every limit in st, with its ETag, as GET /v1/limits
// does: the operator gives its gateways the limits so (operator.LimitsPath).
func (h *Handler) LimitList(st store.LimitStore) http.Handler {
	ls := &limitRoutes{h: h, st: st}
	return http.HandlerFunc(ls.list)
}

type limitRoutes struct {
	h       *Handler
	st      store.LimitStore
	changed func(ctx context.Context)
}

func (ls *limitRoutes) list(w http.ResponseWriter, r *http.Request) {
	limits, err := ls.st.ListLimits(r.Context())
	if err != nil {
		ls.h.writeError(w, r, err)
		return
	}
	if limits == nil {
		limits = []serving.Limit{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(LimitList{Items: limits}); err != nil {
		ls.h.writeError(w, r, err)
		return
	}
	sum := sha256.Sum256(b.Bytes())
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes()) // the client went away; nothing left to tell it
}

// etagMatches reports whether an If-None-Match header names etag
// (RFC 9110: a list of entity tags, weak ones compared weakly, or *).
func etagMatches(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// limitKey returns the limit a request's URL names.
func limitKey(r *http.Request) serving.LimitKey {
	return serving.LimitKey{Tenant: r.PathValue("tenant"), Deployment: r.PathValue("deployment")}
}

func (ls *limitRoutes) get(w http.ResponseWriter, r *http.Request) {
	k := limitKey(r)
	l, err := ls.st.GetLimit(r.Context(), k.Tenant, k.Deployment)
	if err != nil {
		ls.h.writeError(w, r, limitError(err, k))
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (ls *limitRoutes) put(w http.ResponseWriter, r *http.Request) {
	k := limitKey(r)
	l, err := readLimit(w, r, k)
	if err != nil {
		ls.h.writeError(w, r, err)
		return
	}
	out, created, err := ls.st.PutLimit(r.Context(), l)
	if err != nil {
		ls.h.writeError(w, r, err)
		return
	}
	ls.notify(r.Context())
	by := ""
	if p, ok := auth.FromContext(r.Context()); ok {
		by = p.Name
	}
	ls.h.log.Info("tenant limit set", "tenant", l.Tenant, "deployment", l.Deployment, "limit", l.Describe(), "generation", out.Generation, "by", by)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", limitURL(k))
	}
	writeJSON(w, status, out)
}

func (ls *limitRoutes) delete(w http.ResponseWriter, r *http.Request) {
	k := limitKey(r)
	if err := ls.st.DeleteLimit(r.Context(), k.Tenant, k.Deployment); err != nil {
		ls.h.writeError(w, r, limitError(err, k))
		return
	}
	ls.notify(r.Context())
	ls.h.log.Info("tenant limit deleted", "tenant", k.Tenant, "deployment", k.Deployment)
	w.WriteHeader(http.StatusNoContent)
}

func (ls *limitRoutes) notify(ctx context.Context) {
	if ls.changed != nil {
		ls.changed(context.WithoutCancel(ctx))
	}
}

// limitURL is the path of the limit k, as the server writes it.
func limitURL(k serving.LimitKey) string {
	p := "/v1/limits/" + url.PathEscape(k.Tenant)
	if k.Deployment != "" {
		p += "/deployments/" + url.PathEscape(k.Deployment)
	}
	return p
}

// readLimit reads a limit body for the limit k, defaults and validates
// it.
func readLimit(w http.ResponseWriter, r *http.Request, k serving.LimitKey) (serving.Limit, error) {
	if err := checkContentType(r, "application/json"); err != nil {
		return serving.Limit{}, err
	}
	data, err := readBody(w, r)
	if err != nil {
		return serving.Limit{}, err
	}
	b, err := decodeLimit(data)
	if err != nil {
		return serving.Limit{}, err
	}
	var fes []*serving.FieldError
	if b.Tenant != "" && b.Tenant != k.Tenant {
		fes = append(fes, &serving.FieldError{Field: "tenant", Message: fmt.Sprintf("%s in the body does not match %s in the URL", quoteClipped(b.Tenant), quoteClipped(k.Tenant))})
	}
	if b.Deployment != k.Deployment && (b.Deployment != "" || b.Tenant != "") {
		fes = append(fes, &serving.FieldError{Field: "deployment", Message: fmt.Sprintf("%s in the body does not match %s in the URL (a limit on one deployment is at /v1/limits/TENANT/deployments/DEPLOYMENT)", quoteClipped(b.Deployment), quoteClipped(k.Deployment))})
	}
	l := serving.Limit{Tenant: k.Tenant, Deployment: k.Deployment, Rate: b.Rate, Burst: b.Burst, Concurrency: b.Concurrency, Share: b.Share}
	l.Default()
	if err := l.Validate(); err != nil {
		fes = append(fes, err.(*serving.LimitValidationError).Errors...)
	}
	if len(fes) > 0 {
		return serving.Limit{}, &apiError{http.StatusBadRequest, codeLimitInvalid, (&serving.LimitValidationError{Errors: fes}).Error()}
	}
	return l, nil
}

// decodeLimit decodes a limit body strictly: unknown and duplicate fields
// and values of the wrong type are limit/invalid, naming the field.
func decodeLimit(data []byte) (LimitBody, error) {
	var b LimitBody
	if err := checkJSONObject(data, "request body"); err != nil {
		return b, err
	}
	strict, err := sigsjson.UnmarshalStrict(data, &b)
	if err == nil && len(strict) == 0 {
		return b, nil
	}
	fes := fieldErrors(strict)
	if err != nil {
		fe := &serving.FieldError{Message: valueMessage(err)}
		if ute, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			fe.Field = ute.Field
		}
		fes = []*serving.FieldError{fe}
	}
	return LimitBody{}, &apiError{http.StatusBadRequest, codeLimitInvalid, (&serving.LimitValidationError{Errors: fes}).Error()}
}

// limitError maps store errors about the limit k to API errors.
func limitError(err error, k serving.LimitKey) error {
	if errors.Is(err, store.ErrNotFound) {
		return &apiError{http.StatusNotFound, codeLimitNotFound,
			fmt.Sprintf("no limit of %s is set: list limits with `ebb limits list`", k)}
	}
	return err
}
