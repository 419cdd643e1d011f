package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/store"
)

// The token routes, mounted by Handler.MountTokens; all need scope admin
// (see Authorize):
//
//	POST   /v1/tokens       TokenRequest → 201 CreatedToken (the only time the secret is sent)
//	GET    /v1/tokens       TokenList (no secrets, no hashes)
//	DELETE /v1/tokens/{id}  204: the token stops working (within auth.DefaultCacheTTL elsewhere)

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	// ExpiresAt, when set, is when the token stops working (RFC 3339).
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// Tenant, when set, is who the token's requests count against for
	// tenant limits and fair queueing; default the token's name.
	Tenant string `json:"tenant,omitempty"`
}

// CreatedToken answers POST /v1/tokens: the token and its secret, which
// the server does not keep and cannot show again.
type CreatedToken struct {
	auth.Token
	Secret string `json:"secret"`
}

// TokenList is the body of GET /v1/tokens.
type TokenList struct {
	Items []auth.Token `json:"items"`
}

const codeTokenNotFound = "token/not_found"

type tokenRoutes struct {
	h        *Handler
	st       auth.TokenStore
	onRevoke func(id string)
	now      func() time.Time
}

// MountTokens adds the token routes, kept in st, to h; onRevoke (may be
// nil) is told each revoked token's id, so that a local cache of verified
// tokens can drop it at once. Call it before h serves requests.
func (h *Handler) MountTokens(st auth.TokenStore, onRevoke func(id string)) {
	t := &tokenRoutes{h: h, st: st, onRevoke: onRevoke, now: time.Now}
	h.mux.HandleFunc("POST /v1/tokens", t.create)
	h.mux.HandleFunc("GET /v1/tokens", t.list)
	h.mux.HandleFunc("/v1/tokens", methodNotAllowed("GET, HEAD, POST"))
	h.mux.HandleFunc("DELETE /v1/tokens/{id}", t.revoke)
	h.mux.HandleFunc("/v1/tokens/{id}", methodNotAllowed("DELETE"))
}

func (t *tokenRoutes) create(w http.ResponseWriter, r *http.Request) {
	if err := checkContentType(r, "application/json"); err != nil {
		t.h.writeError(w, r, err)
		return
	}
	data, err := readBody(w, r)
	if err == nil {
		err = checkJSONObject(data, "token request")
	}
	if err != nil {
		t.h.writeError(w, r, err)
		return
	}
	var req TokenRequest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		t.h.writeError(w, r, &apiError{http.StatusBadRequest, codeMalformed, "invalid token request: " + strings.TrimPrefix(err.Error(), "json: ")})
		return
	}
	if err := t.validate(req); err != nil {
		t.h.writeError(w, r, err)
		return
	}
	secret, tok, err := auth.NewToken()
	if err != nil {
		t.h.writeError(w, r, err)
		return
	}
	tok.Name, tok.Scopes, tok.Tenant, tok.ExpiresAt = req.Name, req.Scopes, req.Tenant, req.ExpiresAt.UTC().Truncate(time.Microsecond)
	tok.CreatedAt = t.now().UTC().Truncate(time.Microsecond)
	if p, ok := auth.FromContext(r.Context()); ok {
		tok.CreatedBy = p.Name
	}
	if err := t.st.CreateToken(r.Context(), tok); err != nil {
		t.h.writeError(w, r, err)
		return
	}
	t.h.log.Info("token created", "id", tok.ID, "name", tok.Name, "scopes", tok.Scopes, "by", tok.CreatedBy)
	w.Header().Set("Location", "/v1/tokens/"+tok.ID)
	writeJSON(w, http.StatusCreated, CreatedToken{Token: tok, Secret: secret})
}

func (t *tokenRoutes) validate(req TokenRequest) error {
	var problems []string
	if len(req.Scopes) == 0 {
		problems = append(problems, "scopes: give at least one (admin, read, deploy, models:write, exec, predict:NAME)")
	}
	for _, s := range req.Scopes {
		if err := auth.ValidateScope(s); err != nil {
			problems = append(problems, "scopes: "+err.Error())
		}
	}
	if len(req.Name) > 200 {
		problems = append(problems, "name: longer than 200 characters")
	}
	if err := auth.ValidateTenant(req.Tenant); req.Tenant != "" && err != nil {
		problems = append(problems, "tenant: "+err.Error())
	}
	if !req.ExpiresAt.IsZero() && !req.ExpiresAt.After(t.now()) {
		problems = append(problems, fmt.Sprintf("expiresAt: %s is in the past", req.ExpiresAt.Format(time.RFC3339)))
	}
	if len(problems) > 0 {
		return &apiError{http.StatusBadRequest, "token/invalid", "invalid token request: " + strings.Join(problems, "; ")}
	}
	return nil
}

func (t *tokenRoutes) list(w http.ResponseWriter, r *http.Request) {
	toks, err := t.st.ListTokens(r.Context())
	if err != nil {
		t.h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, TokenList{Items: toks})
}

func (t *tokenRoutes) revoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := t.st.DeleteToken(r.Context(), id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = &apiError{http.StatusNotFound, codeTokenNotFound, fmt.Sprintf("token %q not found: list tokens with `ebb tokens list`", id)}
		}
		t.h.writeError(w, r, err)
		return
	}
	if t.onRevoke != nil {
		t.onRevoke(id)
	}
	t.h.log.Info("token revoked", "id", id)
	w.WriteHeader(http.StatusNoContent)
}
