package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ErrIssuerUnavailable: the OIDC issuer's discovery document or keys
// cannot be fetched, so a JWT cannot be checked. Answered 503.
var ErrIssuerUnavailable = errors.New("OIDC issuer unavailable")

// CodeIssuerUnavailable is the error code of ErrIssuerUnavailable.
const CodeIssuerUnavailable = "auth/issuer_unavailable"

// signingAlgs are the algorithms a JWT may be signed with: public-key
// ones only, so that "none" and HMAC keyed with a public key (the
// algorithm confusion attack) are refused when the token is parsed.
var signingAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// maxJWTBytes bounds the tokens OIDC parses; real ones are a few KiB.
const maxJWTBytes = 16 << 10

// maxFetchBytes bounds a discovery document or a JWKS.
const maxFetchBytes = 1 << 20

// OIDCOptions configure an OIDC authenticator. Issuer, Audience and
// ScopeMap are required; the rest have defaults (see NewOIDC).
type OIDCOptions struct {
	// Issuer is the issuer's URL, exactly as its tokens' "iss" claim and
	// its discovery document say it ("https://keycloak.example/realms/ml").
	// Its discovery document is Issuer + "/.well-known/openid-configuration".
	// It must be https, or http on a loopback address.
	Issuer string
	// Audience must be one of a token's "aud" values: the client ID that
	// the issuer names ebb by.
	Audience string
	// ScopesClaim is the claim whose values ScopeMap maps: a list of
	// strings, or a space-separated string. A dotted name reaches into
	// nested objects ("realm_access.roles"). Default "groups".
	ScopesClaim string
	// ScopeMap maps the claim's values to ebb scopes. A valid token whose
	// values map to nothing is refused with 403.
	ScopeMap ScopeMap
	// TenantClaim is the claim that names a token's tenant (a string; a
	// dotted name reaches into nested objects). A token without it counts
	// against its subject ("sub"). Default "tenant".
	TenantClaim string

	// Leeway is the clock skew allowed on exp, nbf and iat; default 1m.
	Leeway time.Duration
	// CacheTTL is the longest a verified token is remembered (never past
	// its exp); default 1m.
	CacheTTL time.Duration
	// MinRefresh is the least time between two fetches of the keys that a
	// token with an unknown key id ("kid") starts; default 1m. Tokens with
	// unknown kids in between are refused without a fetch.
	MinRefresh time.Duration
	// KeysMaxAge is how often Run fetches the keys again, so a key the
	// issuer withdrew stops verifying; default 1h.
	KeysMaxAge time.Duration
	// HTTPClient fetches the discovery document and keys; default a client
	// with a 10s timeout.
	HTTPClient *http.Client
	// Now reads the time; default time.Now.
	Now func() time.Time
	// Logger logs fetches that Run makes; default none.
	Logger *slog.Logger
}

// OIDC authenticates OpenID Connect JWTs (ID tokens or JWT access tokens)
// from one issuer: a token must parse as a JWS signed with a public-key
// algorithm, verify with a key of the issuer's JWKS, name the issuer
// and the audience, carry exp, and be within exp/nbf/iat give or take
// Leeway. Its ScopesClaim values map to the principal's scopes through
// ScopeMap.
//
// Cost. Keys are fetched once (discovery document, then jwks_uri) and kept;
// a token with an unknown kid fetches them again, at most once per
// MinRefresh, so a key rotation is picked up and a flood of made-up kids
// cannot turn into a flood of fetches. A verified token is remembered by
// its SHA-256 until the earlier of its exp and CacheTTL. So requests do no
// network I/O except the rare one that meets a new key. Safe for
// concurrent use.
type OIDC struct {
	opts OIDCOptions

	fetchMu sync.Mutex // held by the one fetch in progress

	// mu guards keys, fetched, tried, fetchErr and jwksURI.
	mu       sync.RWMutex
	keys     []jose.JSONWebKey // public signing keys
	fetched  time.Time         // last successful fetch; zero: never
	tried    time.Time         // last fetch attempted
	fetchErr error             // of the last attempt
	jwksURI  string            // from discovery; empty: discover again

	// cacheMu guards cache.
	cacheMu sync.RWMutex
	cache   map[[sha256.Size]byte]cachedJWT
}

type cachedJWT struct {
	p     Principal
	err   error // a forbidden *Error for a valid token that maps to no scope
	until time.Time
}

var _ Authenticator = (*OIDC)(nil)

// NewOIDC returns an authenticator for opts' issuer. It fetches nothing:
// the first token, Refresh or Run does.
func NewOIDC(opts OIDCOptions) (*OIDC, error) {
	if opts.Issuer == "" {
		return nil, errors.New("OIDC: no issuer URL")
	}
	if err := checkFetchURL(opts.Issuer); err != nil {
		return nil, fmt.Errorf("OIDC issuer: %w", err)
	}
	if opts.Audience == "" {
		return nil, fmt.Errorf("OIDC issuer %s: no audience: name the client ID the issuer puts in ebb's tokens' \"aud\", or any token the issuer signs for any client would be accepted", opts.Issuer)
	}
	if len(opts.ScopeMap) == 0 {
		return nil, fmt.Errorf("OIDC issuer %s: no scope map: without one no OIDC user may do anything", opts.Issuer)
	}
	if opts.ScopesClaim == "" {
		opts.ScopesClaim = "groups"
	}
	if opts.TenantClaim == "" {
		opts.TenantClaim = "tenant"
	}
	if opts.Leeway <= 0 {
		opts.Leeway = jwt.DefaultLeeway
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = time.Minute
	}
	if opts.MinRefresh <= 0 {
		opts.MinRefresh = time.Minute
	}
	if opts.KeysMaxAge <= 0 {
		opts.KeysMaxAge = time.Hour
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &OIDC{opts: opts, cache: map[[sha256.Size]byte]cachedJWT{}}, nil
}

// Issuer returns the issuer's URL.
func (o *OIDC) Issuer() string { return o.opts.Issuer }

// Authenticate implements Authenticator for a JWT. A valid token whose
// claim maps to no scope gets a forbidden *Error naming the values it
// has; a token that cannot be checked because the issuer is unreachable
// gets an error wrapping ErrIssuerUnavailable.
func (o *OIDC) Authenticate(ctx context.Context, token string) (Principal, error) {
	now := o.opts.Now()
	if len(token) > maxJWTBytes {
		return Principal{}, o.refused(fmt.Sprintf("the token is over %d KiB", maxJWTBytes>>10))
	}
	sum := sha256.Sum256([]byte(token))
	o.cacheMu.RLock()
	c, ok := o.cache[sum]
	o.cacheMu.RUnlock()
	if ok && now.Before(c.until) {
		return c.p, c.err
	}
	token = strings.Clone(token) // not cached: one of its own (see Authenticator)
	p, exp, err := o.verify(ctx, token, now)
	if err != nil && !errors.Is(err, ErrForbidden) {
		return Principal{}, err
	}
	until := now.Add(o.opts.CacheTTL)
	if end := exp.Add(o.opts.Leeway); end.Before(until) {
		until = end // the token's expiry is honoured exactly, as verify would
	}
	o.cacheMu.Lock()
	if len(o.cache) >= defaultCacheSize {
		clear(o.cache) // crude, bounded: refilled at one signature check per token
	}
	o.cache[sum] = cachedJWT{p: p, err: err, until: until}
	o.cacheMu.Unlock()
	return p, err
}

// verify checks token at now and returns its principal and expiry. A
// valid token that maps to no scope returns its expiry and a forbidden
// *Error.
func (o *OIDC) verify(ctx context.Context, token string, now time.Time) (Principal, time.Time, error) {
	tok, err := jwt.ParseSigned(token, signingAlgs)
	if err != nil {
		return Principal{}, time.Time{}, o.refused("the token is not a JWT signed with " + algNames() + ": " + trimJose(err))
	}
	if len(tok.Headers) != 1 {
		return Principal{}, time.Time{}, o.refused("the JWT has more than one signature")
	}
	h := tok.Headers[0]
	keys, err := o.keysFor(ctx, h.KeyID, now)
	if err != nil {
		return Principal{}, time.Time{}, err
	}
	var (
		claims jwt.Claims
		raw    map[string]any
		verr   = errors.New("no key of the issuer is for " + h.Algorithm)
	)
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if verr = tok.Claims(k.Key, &claims, &raw); verr == nil {
			break
		}
	}
	if verr != nil {
		return Principal{}, time.Time{}, o.refused(fmt.Sprintf("the JWT does not verify with the issuer's key %q: %s", h.KeyID, trimJose(verr)))
	}
	if claims.Issuer != o.opts.Issuer {
		return Principal{}, time.Time{}, o.refused(fmt.Sprintf("the JWT's issuer is %q, not %q", clip(claims.Issuer), o.opts.Issuer))
	}
	if !claims.Audience.Contains(o.opts.Audience) {
		return Principal{}, time.Time{}, o.refused(fmt.Sprintf("the JWT is for audience %s, not %q", quoteSome(claims.Audience, 5), o.opts.Audience))
	}
	if claims.Expiry == nil {
		return Principal{}, time.Time{}, o.refused("the JWT has no expiry (exp)")
	}
	exp := claims.Expiry.Time()
	switch err := claims.ValidateWithLeeway(jwt.Expected{Time: now}, o.opts.Leeway); {
	case errors.Is(err, jwt.ErrExpired):
		return Principal{}, time.Time{}, o.refused("the JWT expired at " + exp.UTC().Format(time.RFC3339) + ": get a fresh one")
	case errors.Is(err, jwt.ErrNotValidYet):
		return Principal{}, time.Time{}, o.refused("the JWT is not valid before " + claims.NotBefore.Time().UTC().Format(time.RFC3339) + " (nbf)")
	case err != nil:
		return Principal{}, time.Time{}, o.refused("the JWT's times are not valid: " + trimJose(err))
	}
	p := Principal{Name: "oidc:" + clip(who(raw, claims.Subject)), Tenant: clip(claims.Subject)}
	if t, ok := claimString(raw, o.opts.TenantClaim); ok {
		p.Tenant = clip(t)
	}
	values, present, err := claimValues(raw, o.opts.ScopesClaim)
	if err == nil {
		p.Scopes = o.opts.ScopeMap.Scopes(values)
	}
	if err != nil || len(p.Scopes) == 0 {
		return Principal{}, exp, o.unmapped(p, values, present, err)
	}
	return p, exp, nil
}

// who names the user of a token: preferred_username, email or sub.
func who(raw map[string]any, sub string) string {
	for _, c := range []string{"preferred_username", "email"} {
		if s, ok := raw[c].(string); ok && s != "" {
			return s
		}
	}
	return sub
}

// unmapped is the 403 for a valid token whose claim maps to no scope.
func (o *OIDC) unmapped(p Principal, values []string, present bool, err error) *Error {
	var has string
	switch {
	case err != nil:
		has = err.Error()
	case !present:
		has = fmt.Sprintf("the token has no %q claim", o.opts.ScopesClaim)
	default:
		has = fmt.Sprintf("its %q claim holds %s", o.opts.ScopesClaim, quoteSome(values, 20))
	}
	return &Error{Code: CodeForbidden, err: ErrForbidden,
		Message: fmt.Sprintf("OIDC user %q is authenticated, but none of its groups maps to an ebb scope: %s, and the scope map (--oidc-scope-map) maps only %s; add the user to a mapped group or map one of its groups",
			strings.TrimPrefix(p.Name, "oidc:"), has, quoteSome(o.opts.ScopeMap.Values(), 20))}
}

// refused is the 401 for a JWT that is not valid.
func (o *OIDC) refused(why string) *Error {
	return &Error{Code: CodeUnauthenticated, err: ErrUnauthenticated,
		Message: "OIDC token refused: " + why + " (issuer " + o.opts.Issuer + ", audience " + o.opts.Audience + ")"}
}

// keysFor returns the keys that may have signed a token with kid (every
// key when kid is empty), fetching the keys when none has kid and the
// last fetch is older than MinRefresh.
func (o *OIDC) keysFor(ctx context.Context, kid string, now time.Time) ([]jose.JSONWebKey, error) {
	o.mu.RLock()
	keys := o.matchLocked(kid)
	o.mu.RUnlock()
	if len(keys) > 0 {
		return keys, nil
	}
	o.fetchMu.Lock()
	defer o.fetchMu.Unlock()
	o.mu.RLock()
	keys = o.matchLocked(kid) // a fetch that held fetchMu may have brought it
	due := o.tried.IsZero() || now.Sub(o.tried) >= o.opts.MinRefresh
	never, lastErr := o.fetched.IsZero(), o.fetchErr
	o.mu.RUnlock()
	switch {
	case len(keys) > 0:
		return keys, nil
	case due:
		// The fetch serves every request waiting for the keys, so it
		// outlives this one giving up.
		if err := o.fetchLocked(context.WithoutCancel(ctx), now); err != nil {
			return nil, err
		}
		o.mu.RLock()
		keys = o.matchLocked(kid)
		o.mu.RUnlock()
	case never:
		return nil, o.unavailable(lastErr)
	}
	if len(keys) == 0 {
		return nil, o.refused(fmt.Sprintf("the JWT is signed with key %q, which the issuer does not publish", clip(kid)))
	}
	return keys, nil
}

func (o *OIDC) matchLocked(kid string) []jose.JSONWebKey {
	if kid == "" {
		return o.keys
	}
	var keys []jose.JSONWebKey // usually one; a JWKS may reuse a kid across algorithms
	for _, k := range o.keys {
		if k.KeyID == kid {
			keys = append(keys, k)
		}
	}
	return keys
}

// Refresh fetches the issuer's keys now, whatever MinRefresh says; call
// it at start to check the issuer and spare the first request the fetch.
func (o *OIDC) Refresh(ctx context.Context) error {
	o.fetchMu.Lock()
	defer o.fetchMu.Unlock()
	return o.fetchLocked(ctx, o.opts.Now())
}

// Run fetches the keys every KeysMaxAge until ctx is done, so that a key
// the issuer withdrew stops verifying new tokens. It returns nil when ctx
// is done.
func (o *OIDC) Run(ctx context.Context) error {
	t := time.NewTicker(o.opts.KeysMaxAge)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := o.Refresh(ctx); err != nil && ctx.Err() == nil {
				o.opts.Logger.Warn("cannot refresh the OIDC issuer's keys; keeping the ones fetched before", "issuer", o.opts.Issuer, "err", err)
			}
		}
	}
}

// fetchLocked fetches the keys, discovering jwks_uri first when needed,
// for 30s at most. fetchMu must be held.
func (o *OIDC) fetchLocked(ctx context.Context, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	o.mu.Lock()
	o.tried = now
	uri := o.jwksURI
	o.mu.Unlock()
	keys, uri, err := o.fetchKeys(ctx, uri)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.fetchErr, o.jwksURI = err, "" // discover again next time
		return o.unavailable(err)
	}
	o.keys, o.fetched, o.fetchErr, o.jwksURI = keys, now, nil, uri
	return nil
}

func (o *OIDC) unavailable(err error) error {
	return fmt.Errorf("%w: cannot fetch the keys of %s: %v", ErrIssuerUnavailable, o.opts.Issuer, err)
}

// fetchKeys returns the issuer's public signing keys and the jwks_uri
// they came from, discovering it when uri is empty.
func (o *OIDC) fetchKeys(ctx context.Context, uri string) ([]jose.JSONWebKey, string, error) {
	if uri == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		disc := strings.TrimSuffix(o.opts.Issuer, "/") + "/.well-known/openid-configuration"
		if err := o.getJSON(ctx, disc, &doc); err != nil {
			return nil, "", err
		}
		if doc.Issuer != o.opts.Issuer {
			return nil, "", fmt.Errorf("the discovery document %s names issuer %q, not %q: set the issuer URL exactly as the issuer names itself", disc, clip(doc.Issuer), o.opts.Issuer)
		}
		if doc.JWKSURI == "" {
			return nil, "", fmt.Errorf("the discovery document %s has no jwks_uri", disc)
		}
		if err := checkFetchURL(doc.JWKSURI); err != nil {
			return nil, "", fmt.Errorf("jwks_uri of %s: %w", disc, err)
		}
		uri = doc.JWKSURI
	}
	var set jose.JSONWebKeySet
	if err := o.getJSON(ctx, uri, &set); err != nil {
		return nil, "", err
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		pub := k.Public() // an invalid key for symmetric ones
		if (k.Use == "" || k.Use == "sig") && pub.Valid() && publicKeyAlg(pub) {
			keys = append(keys, pub)
		}
	}
	if len(keys) == 0 {
		return nil, "", fmt.Errorf("the JWKS at %s holds no public signing key", uri)
	}
	return keys, uri, nil
}

// publicKeyAlg reports whether k is an RSA, EC or Ed25519 public key for
// an algorithm in signingAlgs (any of them when it names none).
func publicKeyAlg(k jose.JSONWebKey) bool {
	switch k.Key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return false
	}
	return k.Algorithm == "" || slices.Contains(signingAlgs, jose.SignatureAlgorithm(k.Algorithm))
}

func (o *OIDC) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := o.opts.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxFetchBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(b) > maxFetchBytes {
		return fmt.Errorf("GET %s: the document is over %d MiB", u, maxFetchBytes>>20)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: not the JSON expected: %v", u, err)
	}
	return nil
}

// checkFetchURL accepts https URLs, and http ones on a loopback host
// (an issuer on this machine, as in tests).
func checkFetchURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("%q is not an absolute URL", s)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && IsLoopback(u.Host):
		return nil
	}
	return fmt.Errorf("%q: use https (http only on a loopback address)", s)
}

func algNames() string {
	names := make([]string, len(signingAlgs))
	for i, a := range signingAlgs {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

func trimJose(err error) string {
	return strings.TrimPrefix(err.Error(), "go-jose/go-jose: ")
}

// clip shortens a value from a token for a message.
func clip(s string) string {
	if len(s) > 128 {
		return s[:128] + "..."
	}
	return s
}

// ByFormat sends each token to the authenticator for its format: ebb
// tokens ("ebb_<id>_<secret>") and anything that is not a JWT to Token,
// JWTs (three dot-separated parts) to JWT. Either may be nil, and a token
// for a nil one is refused with 401.
type ByFormat struct {
	Token Authenticator
	JWT   Authenticator
}

var _ Authenticator = ByFormat{}

// Authenticate implements Authenticator.
func (b ByFormat) Authenticate(ctx context.Context, token string) (Principal, error) {
	if IsJWT(token) {
		if b.JWT == nil {
			return Principal{}, Unauthenticated("the token is a JWT, and this server accepts no OIDC tokens (it has no --oidc-issuer)")
		}
		return b.JWT.Authenticate(ctx, token)
	}
	if b.Token == nil {
		return Principal{}, Unauthenticated("this server accepts only OIDC tokens (JWTs)")
	}
	return b.Token.Authenticate(ctx, token)
}

// IsJWT reports whether token has the shape of a compact JWS or JWT (three
// dot-separated parts) rather than an ebb token; it checks nothing more.
func IsJWT(token string) bool {
	return !strings.HasPrefix(token, tokenPrefix) && strings.Count(token, ".") == 2
}
