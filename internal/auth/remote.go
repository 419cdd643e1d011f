package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/store"
)

// VerifyRequest is the body of a token verification (VerifyHandler): the
// token a request carried, without "Bearer ".
type VerifyRequest struct {
	Token string `json:"token"`
}

// VerifyResponse answers a token verification. Valid is false for a token
// that is unknown, revoked, expired or malformed (Message says which); the
// other fields describe a valid one.
type VerifyResponse struct {
	Valid   bool   `json:"valid"`
	Message string `json:"message,omitempty"`
	// ID and Name are the token's; Scopes what it may do.
	ID        string    `json:"id,omitempty"`
	Name      string    `json:"name,omitempty"`
	Scopes    []string  `json:"scopes,omitempty"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// Tenant is the principal's tenant (Principal.Tenant).
	Tenant string `json:"tenant,omitempty"`
}

// VerifyHandler answers POST VerifyRequest with a VerifyResponse by asking
// a: 200 whether the token is valid or not, 503 when a cannot tell (its
// store cannot be reached). It does not check who asks: wrap it in
// Require(..., Gateway, ...). expires, when not nil, returns the expiry of
// a verified token (the Verifier's store knows it; zero: never).
func VerifyHandler(a Authenticator, expires func(ctx context.Context, tokenID string) time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeRefusalStatus(w, http.StatusMethodNotAllowed, "request/method_not_allowed", "use POST")
			return
		}
		var req VerifyRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			writeRefusalStatus(w, http.StatusBadRequest, "request/invalid", "invalid JSON body: "+err.Error())
			return
		}
		var resp VerifyResponse
		p, err := a.Authenticate(r.Context(), req.Token)
		switch {
		case err == nil:
			resp = VerifyResponse{Valid: true, ID: p.TokenID, Name: p.Name, Scopes: p.Scopes, Tenant: p.Tenant}
			if expires != nil && p.TokenID != "" {
				resp.ExpiresAt = expires(r.Context(), p.TokenID)
			}
		case errors.Is(err, ErrUnauthenticated):
			resp = VerifyResponse{Message: err.Error()}
			var e *Error
			if errors.As(err, &e) {
				resp.Message = e.Message
			}
		default:
			WriteError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})
}

func writeRefusalStatus(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(b)
}

// Defaults of a Remote.
const (
	DefaultRemoteTTL         = DefaultCacheTTL
	DefaultRemoteNegativeTTL = 2 * time.Second
	defaultRemoteCacheSize   = 10000
)

// Remote authenticates tokens by asking another process (the operator, at
// its VerifyHandler) with a token of its own (scope gateway), remembering
// each answer, valid for TTL and invalid for NegativeTTL, so that a known
// token costs no round trip: a gateway calls it on the request path. A
// revoked token keeps working for at most TTL; an expiry is honoured
// exactly. The cache holds at most 10000 tokens. Safe for concurrent use.
type Remote struct {
	url    string
	token  string
	client *http.Client
	ttl    time.Duration
	negTTL time.Duration
	now    func() time.Time

	// mu guards cache.
	mu    sync.Mutex
	cache map[string]remoteEntry // by the whole token string
}

type remoteEntry struct {
	p       Principal
	invalid string // the reason, for a token the remote refused
	until   time.Time
	expires time.Time
}

// RemoteOptions configure a Remote; zero values are the defaults.
type RemoteOptions struct {
	// Client makes the requests; default a client with a 5s timeout.
	Client *http.Client
	// TTL is how long a valid answer is kept (DefaultRemoteTTL);
	// NegativeTTL how long an invalid one is (DefaultRemoteNegativeTTL).
	TTL, NegativeTTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// NewRemote returns a Remote that posts to url (the verify endpoint)
// sending token as its bearer token.
func NewRemote(url, token string, o RemoteOptions) *Remote {
	r := &Remote{url: url, token: token, client: o.Client, ttl: o.TTL, negTTL: o.NegativeTTL, now: o.Now, cache: map[string]remoteEntry{}}
	if r.client == nil {
		r.client = &http.Client{Timeout: 5 * time.Second}
	}
	if r.ttl <= 0 {
		r.ttl = DefaultRemoteTTL
	}
	if r.negTTL <= 0 {
		r.negTTL = DefaultRemoteNegativeTTL
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

var _ Authenticator = (*Remote)(nil)

// Authenticate implements Authenticator. When the remote cannot be asked
// (down, or refusing this Remote's own token), it returns an error
// wrapping store.ErrUnavailable (503), never a 401 for the user's token.
func (r *Remote) Authenticate(ctx context.Context, token string) (Principal, error) {
	now := r.now()
	r.mu.Lock()
	c, ok := r.cache[token]
	r.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.answer(now)
	}
	token = strings.Clone(token) // not cached: one of its own (see Authenticator)
	if _, _, ok := ParseToken(token); !ok {
		return Principal{}, Unauthenticated("the token is not an ebb token (ebb_<id>_<secret>); this gateway accepts only ebb tokens, not OIDC JWTs")
	}
	resp, err := r.ask(ctx, token)
	if err != nil {
		return Principal{}, err
	}
	c = remoteEntry{until: now.Add(r.ttl)}
	if resp.Valid {
		c.p = Principal{TokenID: resp.ID, Name: resp.Name, Scopes: resp.Scopes, Tenant: resp.Tenant}
		if c.p.Tenant == "" { // an operator from before tenants: Token.TenantOf's rule
			c.p.Tenant = Token{ID: resp.ID, Name: resp.Name}.TenantOf()
		}
		c.expires = resp.ExpiresAt
	} else {
		c.invalid = resp.Message
		if c.invalid == "" {
			c.invalid = "the token is not valid"
		}
		c.until = now.Add(r.negTTL)
	}
	r.mu.Lock()
	if len(r.cache) >= defaultRemoteCacheSize {
		clear(r.cache) // crude, bounded; refilled at one round trip per token
	}
	r.cache[token] = c
	r.mu.Unlock()
	return c.answer(now)
}

func (c remoteEntry) answer(now time.Time) (Principal, error) {
	if c.invalid != "" {
		return Principal{}, &Error{Code: CodeUnauthenticated, err: ErrUnauthenticated, Message: c.invalid}
	}
	if !c.expires.IsZero() && !now.Before(c.expires) {
		return Principal{}, Unauthenticated("the token has expired")
	}
	return c.p, nil
}

func (r *Remote) ask(ctx context.Context, token string) (VerifyResponse, error) {
	b, _ := json.Marshal(VerifyRequest{Token: token})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(b))
	if err != nil {
		return VerifyResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.client.Do(req)
	if err != nil {
		return VerifyResponse{}, fmt.Errorf("%w: ask %s: %v", store.ErrUnavailable, r.url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return VerifyResponse{}, fmt.Errorf("%w: %s answered %s: %s (a 401 or 403 means this gateway's own token is wrong)", store.ErrUnavailable, r.url, resp.Status, bytes.TrimSpace(body))
	}
	var out VerifyResponse
	if err := json.Unmarshal(body, &out); err != nil {
		return VerifyResponse{}, fmt.Errorf("%w: %s: undecodable answer: %v", store.ErrUnavailable, r.url, err)
	}
	return out, nil
}
