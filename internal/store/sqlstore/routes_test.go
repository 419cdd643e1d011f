package sqlstore_test

import (
	"context"
	"testing"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
	"github.com/ebb-ml/ebb/internal/store/storetest"
)

func TestRouteConformance(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		storetest.RunRoutes(t, func(t *testing.T) store.RouteStore {
			return b.openT(t, b.newDB(t))
		})
	})
}

// TestRouteConformanceTwoStores runs the route suite against two Stores on
// one database, as two ebb processes sharing it.
func TestRouteConformanceTwoStores(t *testing.T) {
	each(t, true, func(t *testing.T, b backend) {
		storetest.RunRoutes(t, func(t *testing.T) store.RouteStore {
			where := b.newDB(t)
			return &alternating{stores: [2]*sqlstore.Store{b.openT(t, where), b.openT(t, where)}}
		})
	})
}

func (a *alternating) CreateRoute(ctx context.Context, r serving.Route) (serving.Route, error) {
	return a.next().CreateRoute(ctx, r)
}
func (a *alternating) GetRoute(ctx context.Context, name string) (serving.Route, error) {
	return a.next().GetRoute(ctx, name)
}
func (a *alternating) ListRoutes(ctx context.Context) ([]serving.Route, error) {
	return a.next().ListRoutes(ctx)
}
func (a *alternating) UpdateRoute(ctx context.Context, name string, fn func(*serving.Route) error) (serving.Route, error) {
	return a.next().UpdateRoute(ctx, name, fn)
}
func (a *alternating) DeleteRoute(ctx context.Context, name string) error {
	return a.next().DeleteRoute(ctx, name)
}
