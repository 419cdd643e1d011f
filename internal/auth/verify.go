package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/store"
)

// Authenticator turns the token a request carried (without "Bearer ") into
// the principal that sent it. It returns an *Error wrapping
// ErrUnauthenticated for a token that is not valid, and other errors (a
// store that cannot be reached) as they are. The admin API's middleware,
// the gateway's auth stage and its gRPC interceptor use it.
//
// token may point into a buffer the caller reuses once Authenticate
// returns (the gateway passes its request's bytes, uncopied): an
// implementation clones what it keeps, a cache key above all, and what
// it hands to other goroutines.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// TokenGetter is what a Verifier needs of a TokenStore.
type TokenGetter interface {
	GetToken(ctx context.Context, id string) (Token, error)
}

// Defaults of a Verifier.
const (
	DefaultCacheTTL  = 10 * time.Second
	defaultCacheSize = 10000
)

// Verifier authenticates tokens against a store, remembering each token it
// verified for CacheTTL so that a request path does not query the store
// per request. A revoked token keeps working for at most CacheTTL; an
// expiry is honoured exactly. Safe for concurrent use.
type Verifier struct {
	tokens TokenGetter
	ttl    time.Duration
	now    func() time.Time

	// mu guards cache.
	mu    sync.RWMutex
	cache map[string]verified // by the whole token string
}

type verified struct {
	p       Principal
	until   time.Time // cache entry valid until
	expires time.Time // the token's own expiry; zero: never
}

// NewVerifier returns a Verifier over tokens that caches for ttl
// (DefaultCacheTTL when 0) and reads the time from now (time.Now when nil).
func NewVerifier(tokens TokenGetter, ttl time.Duration, now func() time.Time) *Verifier {
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Verifier{tokens: tokens, ttl: ttl, now: now, cache: map[string]verified{}}
}

var _ Authenticator = (*Verifier)(nil)

// Authenticate implements Authenticator.
func (v *Verifier) Authenticate(ctx context.Context, token string) (Principal, error) {
	now := v.now()
	v.mu.RLock()
	c, ok := v.cache[token]
	v.mu.RUnlock()
	if ok && now.Before(c.until) {
		if !c.expires.IsZero() && !now.Before(c.expires) {
			return Principal{}, Unauthenticated("the token has expired")
		}
		return c.p, nil
	}
	// Not cached: a copy of its own (see Authenticator), for the store
	// and the cache.
	token = strings.Clone(token)
	id, secret, ok := ParseToken(token)
	if !ok {
		return Principal{}, Unauthenticated("the token is not an ebb token (ebb_<id>_<secret>)")
	}
	t, err := v.tokens.GetToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, Unauthenticated(fmt.Sprintf("token %s is unknown or was revoked", id))
	}
	if err != nil {
		return Principal{}, err
	}
	if !matches(secret, t.Hash) {
		return Principal{}, Unauthenticated(fmt.Sprintf("token %s: wrong secret", id))
	}
	if t.Expired(now) {
		return Principal{}, Unauthenticated(fmt.Sprintf("token %s expired at %s", id, t.ExpiresAt.Format(time.RFC3339)))
	}
	p := Principal{TokenID: t.ID, Name: t.Name, Scopes: t.Scopes, Tenant: t.TenantOf()}
	v.mu.Lock()
	if len(v.cache) >= defaultCacheSize {
		clear(v.cache) // crude, bounded; a full cache is refilled at one store read per token
	}
	v.cache[token] = verified{p: p, until: now.Add(v.ttl), expires: t.ExpiresAt}
	v.mu.Unlock()
	return p, nil
}

// Forget drops the cached verification of the token with id, so that this
// process stops honouring it at once (after a revocation it served).
func (v *Verifier) Forget(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for k, c := range v.cache {
		if c.p.TokenID == id {
			delete(v.cache, k)
		}
	}
}
