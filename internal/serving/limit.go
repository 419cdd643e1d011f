package serving

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/serving/core"
)

// Limit is a tenant limit: how fast, and how many at once, one tenant's
// requests may reach ebb, across all its deployments (Deployment empty)
// or on one deployment. Tenant "*" is the default of every tenant without
// a limit of its own at that level: each such tenant gets its own bucket
// of the default's size, not a share of one. A limit with neither Rate
// nor Concurrency sets no bound: it exempts its tenant from the default.
//
// The gateway enforces a tenant-wide limit and a deployment's limit
// together; a request must pass both. In a cluster each gateway enforces
// its share (package limit explains the split).
//
// +kubebuilder:object:generate=false
type Limit struct {
	// Tenant is who the limit binds (auth.Principal.Tenant): 1 to 128
	// printable ASCII characters without spaces, or "*" for every tenant
	// without a limit of its own.
	Tenant string `json:"tenant"`
	// Deployment is the name clients call (a deployment or a route
	// object); empty for all of the tenant's deployments together.
	Deployment string `json:"deployment,omitempty"`
	// Rate is the sustained requests per second of the token bucket; 0
	// for no rate limit.
	Rate float64 `json:"rate,omitempty"`
	// Burst is the bucket's size: how many requests may come at once
	// after a quiet spell. Default: Rate rounded up, at least 1. Only
	// with Rate.
	Burst int32 `json:"burst,omitempty"`
	// Concurrency bounds the tenant's requests in flight; 0 for no bound.
	Concurrency int32 `json:"concurrency,omitempty"`
	// Share is the tenant's weight in fair queueing while a deployment is
	// cold or saturated: a tenant of share 2 is served twice as often as
	// one of share 1. 0 means 1.
	Share int32 `json:"share,omitempty"`

	// Generation counts the writes of the limit (1 when created); the
	// store sets it and the times.
	Generation int64     `json:"generation,omitempty"`
	CreatedAt  time.Time `json:"createdAt,omitzero"`
	UpdatedAt  time.Time `json:"updatedAt,omitzero"`
}

// Bounds of a Limit.
const (
	// DefaultTenant is the tenant of the limits that apply to every
	// tenant without its own.
	DefaultTenant = "*"
	// MaxTenantLen bounds a tenant's name.
	MaxTenantLen = 128
	// MinLimitRate and MaxLimitRate bound a Limit's Rate (requests/s)
	// when set.
	MinLimitRate = 0.001
	MaxLimitRate = 1e6
	// MaxLimitBurst and MaxLimitConcurrency bound Burst and Concurrency.
	MaxLimitBurst       = 1_000_000
	MaxLimitConcurrency = 1_000_000
	// MaxLimitShare bounds Share.
	MaxLimitShare = 1000
)

// LimitKey names a limit: its tenant and deployment ("" for all).
//
// +kubebuilder:object:generate=false
type LimitKey struct {
	Tenant     string
	Deployment string
}

// Key returns l's key.
func (l *Limit) Key() LimitKey { return LimitKey{l.Tenant, l.Deployment} }

// String describes the key for people: `tenant "acme"` or `tenant "acme"
// on deployment "diabetes"`; the default tenant is "every tenant".
func (k LimitKey) String() string {
	who := "tenant " + strconv.Quote(k.Tenant)
	if k.Tenant == DefaultTenant {
		who = "every tenant (default)"
	}
	if k.Deployment == "" {
		return who
	}
	return who + " on deployment " + strconv.Quote(k.Deployment)
}

// SameBounds reports whether l and o bound requests alike: the same rate,
// burst, concurrency and share, whatever their keys and bookkeeping.
func (l *Limit) SameBounds(o *Limit) bool {
	return l.Rate == o.Rate && l.Burst == o.Burst && l.Concurrency == o.Concurrency && l.Share == o.Share
}

// Unbounded reports whether l sets neither a rate nor a concurrency bound.
func (l *Limit) Unbounded() bool { return l.Rate == 0 && l.Concurrency == 0 }

// Weight is l's Share, 1 when unset.
func (l *Limit) Weight() int32 {
	if l.Share <= 0 {
		return 1
	}
	return l.Share
}

// Default fills Burst from Rate when it is unset: Rate rounded up, at
// least 1. Call it before Validate.
func (l *Limit) Default() {
	if l.Rate > 0 && l.Burst == 0 && l.Rate <= MaxLimitRate {
		l.Burst = int32(max(1, math.Ceil(l.Rate)))
	}
}

// Describe says what l bounds, for people: "10 requests/s (burst 20), 5
// in flight", or "no bound".
func (l *Limit) Describe() string {
	var parts []string
	if l.Rate > 0 {
		parts = append(parts, fmt.Sprintf("%s requests/s (burst %d)", FormatRate(l.Rate), l.Burst))
	}
	if l.Concurrency > 0 {
		parts = append(parts, fmt.Sprintf("%d in flight", l.Concurrency))
	}
	if len(parts) == 0 {
		return "no bound"
	}
	return strings.Join(parts, ", ")
}

// FormatRate writes a rate as briefly as it reads: 10, 0.5, 2.25.
func FormatRate(r float64) string { return strconv.FormatFloat(r, 'f', -1, 64) }

// Validate checks l's key and bounds, returning a *LimitValidationError
// that lists every problem.
func (l *Limit) Validate() error {
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, args...)})
	}
	if err := ValidateTenant(l.Tenant); err != nil {
		errs = append(errs, err.(*FieldError))
	}
	if l.Deployment != "" && !core.ValidName(l.Deployment) {
		add("deployment", "%q is not a deployment name: at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit (leave it out for all the tenant's deployments)", l.Deployment)
	}
	switch {
	case math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0):
		add("rate", "must be a number of requests per second")
	case l.Rate < 0:
		add("rate", "is %s: give requests per second, or 0 for no rate limit", FormatRate(l.Rate))
	case l.Rate > 0 && l.Rate < MinLimitRate:
		add("rate", "is %s requests/s; at least %s is allowed (0: no rate limit)", FormatRate(l.Rate), FormatRate(MinLimitRate))
	case l.Rate > MaxLimitRate:
		add("rate", "is %s requests/s; at most %s is allowed", FormatRate(l.Rate), FormatRate(MaxLimitRate))
	}
	switch {
	case l.Burst < 0:
		add("burst", "is %d: give how many requests may come at once, at least 1", l.Burst)
	case l.Burst > MaxLimitBurst:
		add("burst", "is %d; at most %d is allowed", l.Burst, MaxLimitBurst)
	case l.Burst > 0 && l.Rate == 0:
		add("burst", "is set without a rate: a burst is the size of a rate limit's bucket; give rate too")
	}
	switch {
	case l.Concurrency < 0:
		add("concurrency", "is %d: give the most requests in flight, or 0 for no bound", l.Concurrency)
	case l.Concurrency > MaxLimitConcurrency:
		add("concurrency", "is %d; at most %d is allowed", l.Concurrency, MaxLimitConcurrency)
	}
	if l.Share < 0 || l.Share > MaxLimitShare {
		add("share", "is %d: give a weight from 1 to %d (0: 1)", l.Share, MaxLimitShare)
	}
	if len(errs) > 0 {
		return &LimitValidationError{Errors: errs}
	}
	return nil
}

// ValidateTenant reports, as a *FieldError on field "tenant", whether
// name may name a tenant in a limit: 1 to MaxTenantLen printable ASCII
// characters without spaces (auth.ValidateTenant's rule), or "*" for the
// default. "." and ".." are refused: they cannot be a segment of the
// admin API's URLs.
func ValidateTenant(name string) error {
	switch {
	case name == "":
		return &FieldError{"tenant", `is required: name the tenant, or "*" for every tenant without a limit of its own`}
	case len(name) > MaxTenantLen:
		return &FieldError{"tenant", fmt.Sprintf("is %d characters long; at most %d are allowed", len(name), MaxTenantLen)}
	case name == "." || name == "..":
		return &FieldError{"tenant", fmt.Sprintf("%q cannot name a tenant: it cannot be part of a URL", name)}
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c > '~' {
			return &FieldError{"tenant", fmt.Sprintf("%q is not a tenant name: give printable ASCII characters without spaces", name)}
		}
	}
	return nil
}

// LimitValidationError collects every field error of a limit.
//
// +kubebuilder:object:generate=false
type LimitValidationError struct {
	Errors []*FieldError
}

func (e *LimitValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		parts[i] = fe.Error()
	}
	return "invalid limit: " + strings.Join(parts, "; ")
}
