package sqlstore

import (
	"context"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Route objects (store.RouteStore): shard groups, a specTable. Nothing
// here ties a route to the deployments it names, nor keeps a route and a
// deployment from sharing a name: the admin API refuses that clash.

var _ store.RouteStore = (*Store)(nil)

var routeTable = &specTable[serving.Route]{
	table: "routes",
	noun:  "route",
	fields: func(r *serving.Route) specFields {
		return specFields{&r.Name, &r.Spec, &r.Generation, &r.CreatedAt, &r.UpdatedAt}
	},
	created: func(r serving.Route) serving.Route { return serving.Route{Name: r.Name, Spec: r.Spec} },
	apply:   store.ApplyRouteUpdate,
}

// CreateRoute implements store.RouteStore: r is stored with Generation 1
// and CreatedAt and UpdatedAt now, or an error wraps store.ErrExists when
// its name is taken by another route.
func (s *Store) CreateRoute(ctx context.Context, r serving.Route) (serving.Route, error) {
	return routeTable.create(ctx, s, r)
}

// GetRoute implements store.RouteStore.
func (s *Store) GetRoute(ctx context.Context, name string) (serving.Route, error) {
	return routeTable.get(ctx, s, name)
}

// ListRoutes implements store.RouteStore: every route, sorted by name.
func (s *Store) ListRoutes(ctx context.Context) ([]serving.Route, error) {
	return routeTable.list(ctx, s)
}

// UpdateRoute implements store.RouteStore: it reads the named route,
// passes it to fn and writes back what fn left (store.ApplyRouteUpdate),
// all in one transaction that holds the row. fn may be called more than
// once, should the database make the transaction run again.
func (s *Store) UpdateRoute(ctx context.Context, name string, fn func(*serving.Route) error) (serving.Route, error) {
	return routeTable.update(ctx, s, name, fn)
}

// DeleteRoute implements store.RouteStore; a missing route is an error
// wrapping store.ErrNotFound.
func (s *Store) DeleteRoute(ctx context.Context, name string) error {
	return routeTable.delete(ctx, s, name)
}
