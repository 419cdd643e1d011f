package store

import (
	"context"

	"github.com/ebb-ml/ebb/internal/serving"
)

// LimitStore keeps tenant limits (serving.Limit), keyed by tenant and
// deployment ("" for a tenant-wide limit): the SQL store in both homes.
// Errors wrap ErrNotFound and ErrUnavailable as the deployment methods' do.
type LimitStore interface {
	// GetLimit returns the limit of tenant on deployment ("" for the
	// tenant-wide one).
	GetLimit(ctx context.Context, tenant, deployment string) (serving.Limit, error)
	// ListLimits returns every limit, sorted by tenant, then deployment
	// (the tenant-wide one first).
	ListLimits(ctx context.Context) ([]serving.Limit, error)
	// PutLimit creates l, or replaces the bounds of the limit with l's
	// key, and reports whether it created it. The store sets Generation
	// (1 when created, one more on every put) and the times; l's are
	// ignored.
	PutLimit(ctx context.Context, l serving.Limit) (out serving.Limit, created bool, err error)
	// DeleteLimit deletes the limit of tenant on deployment ("" for the
	// tenant-wide one); a missing one is an error wrapping ErrNotFound.
	DeleteLimit(ctx context.Context, tenant, deployment string) error
}
