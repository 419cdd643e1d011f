package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Token is a stored API token without its secret.
type Token struct {
	// ID names the token: the <id> of "ebb_<id>_<secret>".
	ID   string `json:"id"`
	Name string `json:"name"`
	// Scopes are what the token may do; see the package doc.
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"createdAt"`
	// CreatedBy names the principal that created the token.
	CreatedBy string `json:"createdBy,omitempty"`
	// ExpiresAt is when the token stops working; zero: never.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// Hash is the hex SHA-256 of the secret; never sent to clients.
	Hash string `json:"-"`
	// Tenant is who the token's requests count against for tenant limits
	// and fair queueing; empty: the token's Name (TenantOf).
	Tenant string `json:"tenant,omitempty"`
}

// MaxTenantLen bounds a tenant's name.
const MaxTenantLen = 128

// ValidateTenant reports whether name may name a tenant: 1 to MaxTenantLen
// printable ASCII characters without spaces.
func ValidateTenant(name string) error {
	if name == "" || len(name) > MaxTenantLen {
		return fmt.Errorf("%q: a tenant is 1 to %d characters", name, MaxTenantLen)
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c > '~' {
			return fmt.Errorf("%q: a tenant is printable ASCII without spaces", name)
		}
	}
	return nil
}

// TenantOf returns the tenant of t's requests: Tenant, or else Name when
// it is a valid tenant name, or else "token-ID" (a name with spaces, such
// as "admin (ebb operator)", names no tenant a limit could be set for).
func (t Token) TenantOf() string {
	switch {
	case t.Tenant != "":
		return t.Tenant
	case ValidateTenant(t.Name) == nil:
		return t.Name
	}
	return "token-" + t.ID
}

// Expired reports whether t has expired at now.
func (t Token) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// TokenStore keeps tokens. Errors wrap store.ErrNotFound for a token that
// does not exist and store.ErrExists for a duplicate id.
type TokenStore interface {
	CreateToken(ctx context.Context, t Token) error
	GetToken(ctx context.Context, id string) (Token, error)
	ListTokens(ctx context.Context) ([]Token, error)
	DeleteToken(ctx context.Context, id string) error
}

const (
	tokenPrefix = "ebb_"
	idBytes     = 8  // 16 hex characters
	secretBytes = 32 // 64 hex characters, 256 bits
)

// NewToken returns a new token's secret form "ebb_<id>_<secret>" and its
// record (ID and Hash set; the caller fills the rest).
func NewToken() (secret string, t Token, err error) {
	var b [idBytes + secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", Token{}, fmt.Errorf("generate token: %w", err)
	}
	id, sec := hex.EncodeToString(b[:idBytes]), hex.EncodeToString(b[idBytes:])
	return tokenPrefix + id + "_" + sec, Token{ID: id, Hash: HashSecret(sec)}, nil
}

// ParseToken splits "ebb_<id>_<secret>"; ok is false for anything else.
func ParseToken(s string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != 2*idBytes || len(secret) != 2*secretBytes {
		return "", "", false
	}
	return id, secret, true
}

// HashSecret returns the hex SHA-256 of a token's secret, as stored.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// matches reports, in constant time, whether secret hashes to hash.
func matches(secret, hash string) bool {
	want, err := hex.DecodeString(hash)
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], want) == 1
}

// Errors of authentication and authorization; *Error wraps one of them.
var (
	// ErrUnauthenticated: no token, or one that is not valid (unknown,
	// revoked, expired, malformed). Answered 401.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: a valid token without the scope. Answered 403.
	ErrForbidden = errors.New("forbidden")
)

// Error is a refused request: its code ("auth/unauthenticated",
// "auth/forbidden") and a message that says how to fix it.
type Error struct {
	Code    string
	Message string
	// Missing is the scope that was needed (forbidden only).
	Missing string
	err     error
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.err }

// Codes of Error.
const (
	CodeUnauthenticated = "auth/unauthenticated"
	CodeForbidden       = "auth/forbidden"
)

// Unauthenticated returns the error for a request without a valid token;
// why says what was wrong with it.
func Unauthenticated(why string) *Error {
	return &Error{Code: CodeUnauthenticated, err: ErrUnauthenticated,
		Message: why + ": send a token as \"Authorization: Bearer ebb_...\" (create one with `ebb tokens create --scope SCOPE`; `ebb up` keeps an admin token in DATA-DIR/admin.token)"}
}

// Forbidden returns the error for a principal that d denied.
func Forbidden(p Principal, d Decision) *Error {
	return &Error{Code: CodeForbidden, err: ErrForbidden, Missing: d.Missing,
		Message: fmt.Sprintf("token %q may not do this: %s; create a token with --scope %s", p.Name, d.Reason, d.Missing)}
}

// Check returns nil when p may do action on resource, else a forbidden
// *Error.
func Check(p Principal, action Action, resource string) error {
	if d := p.Can(action, resource); !d.Allow {
		return Forbidden(p, d)
	}
	return nil
}
