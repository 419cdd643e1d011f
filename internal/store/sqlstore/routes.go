package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Route objects (store.RouteStore): shard groups, whose spec is a JSON
// column as a deployment's is. Nothing here ties a route to the
// deployments it names, nor keeps a route and a deployment from sharing a
// name: the admin API refuses that clash.

var _ store.RouteStore = (*Store)(nil)

const routeColumns = `name, spec, generation, created_at, updated_at`

// CreateRoute implements store.RouteStore: r is stored with Generation 1
// and CreatedAt and UpdatedAt now, or an error wraps store.ErrExists when
// its name is taken by another route.
func (s *Store) CreateRoute(ctx context.Context, r serving.Route) (serving.Route, error) {
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return serving.Route{}, fmt.Errorf("encode route %q: %w", r.Name, err)
	}
	now := s.now()
	out := serving.Route{Name: r.Name, Spec: r.Spec, Generation: 1, CreatedAt: now, UpdatedAt: now}
	err = s.insert(ctx, fmt.Sprintf("route %q", r.Name),
		`INSERT INTO routes (`+routeColumns+`) VALUES (?, ?, ?, ?, ?)`,
		r.Name, string(spec), out.Generation, s.time(now), s.time(now))
	if err != nil {
		return serving.Route{}, fmt.Errorf("create route %q: %w", r.Name, err)
	}
	return out, nil
}

// GetRoute implements store.RouteStore.
func (s *Store) GetRoute(ctx context.Context, name string) (serving.Route, error) {
	r, err := getRoute(ctx, s.read(), name, "")
	if err != nil {
		return serving.Route{}, fmt.Errorf("get route %q: %w", name, err)
	}
	return r, nil
}

// ListRoutes implements store.RouteStore: every route, sorted by name.
func (s *Store) ListRoutes(ctx context.Context) ([]serving.Route, error) {
	out, err := list(ctx, s.read(), scanRoute, `SELECT `+routeColumns+` FROM routes ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return out, nil
}

// UpdateRoute implements store.RouteStore: it reads the named route,
// passes it to fn and writes back what fn left (store.ApplyRouteUpdate),
// all in one transaction that holds the row. fn may be called more than
// once, should the database make the transaction run again.
func (s *Store) UpdateRoute(ctx context.Context, name string, fn func(*serving.Route) error) (serving.Route, error) {
	var out serving.Route
	var fnErr error
	err := s.write(ctx, func(tx conn) error {
		fnErr = nil
		old, err := getRoute(ctx, tx, name, s.rowLock(ForUpdate))
		if err != nil {
			return err
		}
		var spec []byte
		out, spec, fnErr, err = store.ApplyRouteUpdate(old, fn, s.now())
		if err != nil {
			return err
		}
		_, err = tx.exec(ctx, `UPDATE routes SET spec = ?, generation = ?, updated_at = ? WHERE name = ?`,
			string(spec), out.Generation, s.time(out.UpdatedAt), name)
		return err
	})
	if fnErr != nil {
		return serving.Route{}, fnErr
	}
	if err != nil {
		return serving.Route{}, fmt.Errorf("update route %q: %w", name, err)
	}
	return out, nil
}

// DeleteRoute implements store.RouteStore; a missing route is an error
// wrapping store.ErrNotFound.
func (s *Store) DeleteRoute(ctx context.Context, name string) error {
	res, err := s.exec(ctx, `DELETE FROM routes WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete route %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete route %q: %w", name, err)
	} else if n == 0 {
		return fmt.Errorf("delete route %q: route %q %w", name, name, store.ErrNotFound)
	}
	return nil
}

// getRoute reads one route; lock is appended to the query.
func getRoute(ctx context.Context, c conn, name, lock string) (serving.Route, error) {
	r, err := scanRoute(c.row(ctx, `SELECT `+routeColumns+` FROM routes WHERE name = ?`+lock, name))
	if errors.Is(err, sql.ErrNoRows) {
		return serving.Route{}, fmt.Errorf("route %q %w", name, store.ErrNotFound)
	}
	return r, err
}

func scanRoute(sc scanner) (serving.Route, error) {
	var r serving.Route
	var spec []byte
	if err := sc.Scan(&r.Name, &spec, &r.Generation, timeCol(&r.CreatedAt), timeCol(&r.UpdatedAt)); err != nil {
		return serving.Route{}, err
	}
	if err := json.Unmarshal(spec, &r.Spec); err != nil {
		return serving.Route{}, fmt.Errorf("decode spec of route %q: %w", r.Name, err)
	}
	return r, nil
}
