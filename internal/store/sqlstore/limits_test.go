package sqlstore_test

import (
	"context"
	"testing"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
	"github.com/ebb-ml/ebb/internal/store/storetest"
)

func TestLimitConformance(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		storetest.RunLimits(t, func(t *testing.T) store.LimitStore {
			return b.openT(t, b.newDB(t))
		})
	})
}

// TestLimitConformanceTwoStores runs the limit suite against two Stores on
// one database, as two ebb processes sharing it.
func TestLimitConformanceTwoStores(t *testing.T) {
	each(t, true, func(t *testing.T, b backend) {
		storetest.RunLimits(t, func(t *testing.T) store.LimitStore {
			where := b.newDB(t)
			return &alternating{stores: [2]*sqlstore.Store{b.openT(t, where), b.openT(t, where)}}
		})
	})
}

func (a *alternating) GetLimit(ctx context.Context, tenant, deployment string) (serving.Limit, error) {
	return a.next().GetLimit(ctx, tenant, deployment)
}
func (a *alternating) ListLimits(ctx context.Context) ([]serving.Limit, error) {
	return a.next().ListLimits(ctx)
}
func (a *alternating) PutLimit(ctx context.Context, l serving.Limit) (serving.Limit, bool, error) {
	return a.next().PutLimit(ctx, l)
}
func (a *alternating) DeleteLimit(ctx context.Context, tenant, deployment string) error {
	return a.next().DeleteLimit(ctx, tenant, deployment)
}
