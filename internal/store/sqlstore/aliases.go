package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
)

// The model registry's aliases, their history, and serving history
// (registry.Store).

// lockModel holds the model's row for the rest of tx with lock l, so that
// alias changes of one model happen one at a time (ForNoKeyUpdate) and none
// overlaps the model's deletion (ForUpdate); ErrNotFound when the model
// does not exist.
func (s *Store) lockModel(ctx context.Context, tx conn, model string, l RowLock) error {
	var one int
	err := tx.row(ctx, `SELECT 1 FROM models WHERE name = ?`+s.rowLock(l), model).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("model %q %w", model, store.ErrNotFound)
	}
	return err
}

const aliasColumns = `model, name, version, updated_at, updated_by`

// currentAlias returns an alias (zero when it does not exist).
func currentAlias(ctx context.Context, tx conn, model, alias string) (registry.Alias, error) {
	a, err := scanAlias(tx.row(ctx, `SELECT `+aliasColumns+` FROM model_aliases WHERE model = ? AND name = ?`, model, alias))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Alias{}, nil
	}
	return a, err
}

func checkExpected(model, alias string, cur, expectFrom int) error {
	if expectFrom == registry.AnyVersion || expectFrom == cur {
		return nil
	}
	now := fmt.Sprintf("points at version %d", cur)
	if cur == 0 {
		now = "does not exist"
	}
	want := fmt.Sprintf("version %d", expectFrom)
	if expectFrom == 0 {
		want = "no alias"
	}
	return fmt.Errorf("alias %s@%s %s, expected %s: %w", model, alias, now, want, store.ErrConflict)
}

func (s *Store) insertMove(ctx context.Context, tx conn, m registry.AliasMove) error {
	_, err := tx.exec(ctx, `INSERT INTO model_alias_moves (model, alias, from_version, to_version, moved_by, moved_at)
		VALUES (?, ?, ?, ?, ?, ?)`, m.Model, m.Alias, m.From, m.To, m.By, s.time(m.At))
	return err
}

// SetAlias implements registry.Store.
func (s *Store) SetAlias(ctx context.Context, model, alias string, to, expectFrom int, by string) (registry.AliasMove, error) {
	var move registry.AliasMove
	err := s.write(ctx, func(tx conn) error {
		move = registry.AliasMove{Model: model, Alias: alias, To: to, By: by, At: s.now()}
		if err := s.lockModel(ctx, tx, model, ForNoKeyUpdate); err != nil {
			return err
		}
		if _, err := getVersion(ctx, tx, model, to, ""); err != nil {
			return err
		}
		cur, err := currentAlias(ctx, tx, model, alias)
		if err != nil {
			return err
		}
		if err := checkExpected(model, alias, cur.Version, expectFrom); err != nil {
			return err
		}
		move.From = cur.Version
		if cur.Version == to {
			move.At, move.By = cur.UpdatedAt, cur.UpdatedBy
			return nil
		}
		if _, err := tx.exec(ctx, `INSERT INTO model_aliases (`+aliasColumns+`)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, name) DO UPDATE SET
			version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
			model, alias, to, s.time(move.At), by); err != nil {
			return err
		}
		return s.insertMove(ctx, tx, move)
	})
	if err != nil {
		return registry.AliasMove{}, fmt.Errorf("set alias %s@%s to version %d: %w", model, alias, to, err)
	}
	return move, nil
}

// GetAlias implements registry.Store.
func (s *Store) GetAlias(ctx context.Context, model, alias string) (registry.Alias, error) {
	a, err := scanAlias(s.read().row(ctx,
		`SELECT `+aliasColumns+` FROM model_aliases WHERE model = ? AND name = ?`, model, alias))
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("alias %s@%s %w", model, alias, store.ErrNotFound)
	}
	if err != nil {
		return registry.Alias{}, fmt.Errorf("get alias: %w", err)
	}
	return a, nil
}

func scanAlias(sc scanner) (registry.Alias, error) {
	var a registry.Alias
	err := sc.Scan(&a.Model, &a.Name, &a.Version, timeCol(&a.UpdatedAt), &a.UpdatedBy)
	return a, err
}

// ListAliases implements registry.Store.
func (s *Store) ListAliases(ctx context.Context, model string) ([]registry.Alias, error) {
	out, err := list(ctx, s.read(), scanAlias,
		`SELECT `+aliasColumns+` FROM model_aliases WHERE model = ? ORDER BY name`, model)
	if err != nil {
		return nil, fmt.Errorf("list aliases of model %q: %w", model, err)
	}
	return out, nil
}

// DeleteAlias implements registry.Store.
func (s *Store) DeleteAlias(ctx context.Context, model, alias string, expectFrom int, by string) (registry.AliasMove, error) {
	var move registry.AliasMove
	err := s.write(ctx, func(tx conn) error {
		move = registry.AliasMove{Model: model, Alias: alias, By: by, At: s.now()}
		if err := s.lockModel(ctx, tx, model, ForNoKeyUpdate); errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("alias %s@%s %w", model, alias, store.ErrNotFound)
		} else if err != nil {
			return err
		}
		cur, err := currentAlias(ctx, tx, model, alias)
		if err != nil {
			return err
		}
		if cur.Version == 0 {
			return fmt.Errorf("alias %s@%s %w", model, alias, store.ErrNotFound)
		}
		if err := checkExpected(model, alias, cur.Version, expectFrom); err != nil {
			return err
		}
		move.From = cur.Version
		if _, err := tx.exec(ctx, `DELETE FROM model_aliases WHERE model = ? AND name = ?`, model, alias); err != nil {
			return err
		}
		return s.insertMove(ctx, tx, move)
	})
	if err != nil {
		return registry.AliasMove{}, fmt.Errorf("delete alias %s@%s: %w", model, alias, err)
	}
	return move, nil
}

// AliasHistory implements registry.Store.
func (s *Store) AliasHistory(ctx context.Context, model, alias string) ([]registry.AliasMove, error) {
	out, err := list(ctx, s.read(), func(sc scanner) (registry.AliasMove, error) {
		var m registry.AliasMove
		err := sc.Scan(&m.Model, &m.Alias, &m.From, &m.To, &m.By, timeCol(&m.At))
		return m, err
	}, `SELECT model, alias, from_version, to_version, moved_by, moved_at
		FROM model_alias_moves WHERE model = ? AND alias = ? ORDER BY id`, model, alias)
	if err != nil {
		return nil, fmt.Errorf("history of alias %s@%s: %w", model, alias, err)
	}
	return out, nil
}

// RecordServing implements registry.Store.
func (s *Store) RecordServing(ctx context.Context, deployment, model string, version int, at time.Time) error {
	err := s.write(ctx, func(tx conn) error {
		if err := tx.lock(ctx, ServingLock, deployment); err != nil {
			return err
		}
		var lastModel string
		var lastVersion int
		err := tx.row(ctx, `SELECT model, version FROM serving_history WHERE deployment = ?
			ORDER BY id DESC LIMIT 1`, deployment).Scan(&lastModel, &lastVersion)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err == nil && lastModel == model && lastVersion == version {
			return nil
		}
		_, err = tx.exec(ctx, `INSERT INTO serving_history (deployment, model, version, served_at) VALUES (?, ?, ?, ?)`,
			deployment, model, version, s.time(at.UTC().Truncate(time.Microsecond)))
		return err
	})
	if err != nil {
		return fmt.Errorf("record that deployment %q serves %s:%d: %w", deployment, model, version, err)
	}
	return nil
}

// ServingHistory implements registry.Store.
func (s *Store) ServingHistory(ctx context.Context, deployment string) ([]registry.ServingRecord, error) {
	out, err := list(ctx, s.read(), func(sc scanner) (registry.ServingRecord, error) {
		var r registry.ServingRecord
		err := sc.Scan(&r.Deployment, &r.Model, &r.Version, timeCol(&r.At))
		return r, err
	}, `SELECT deployment, model, version, served_at FROM serving_history
		WHERE deployment = ? ORDER BY id`, deployment)
	if err != nil {
		return nil, fmt.Errorf("serving history of deployment %q: %w", deployment, err)
	}
	return out, nil
}

// LastServedAll implements registry.Store: each deployment's distinct
// versions numbered newest first by their latest record, those numbered up
// to n kept.
func (s *Store) LastServedAll(ctx context.Context, n int) (map[string][]registry.ServingRecord, error) {
	out := map[string][]registry.ServingRecord{}
	if n <= 0 {
		return out, nil
	}
	recs, err := list(ctx, s.read(), func(sc scanner) (registry.ServingRecord, error) {
		var r registry.ServingRecord
		err := sc.Scan(&r.Deployment, &r.Model, &r.Version, timeCol(&r.At))
		return r, err
	}, `SELECT h.deployment, h.model, h.version, h.served_at FROM serving_history h
		JOIN (SELECT id FROM (SELECT MAX(id) AS id,
				ROW_NUMBER() OVER (PARTITION BY deployment ORDER BY MAX(id) DESC) AS rn
			FROM serving_history GROUP BY deployment, model, version) v WHERE rn <= ?) l ON h.id = l.id
		ORDER BY h.deployment, h.id DESC`, n)
	if err != nil {
		return nil, fmt.Errorf("last %d versions that served each deployment: %w", n, err)
	}
	for _, r := range recs {
		out[r.Deployment] = append(out[r.Deployment], r)
	}
	return out, nil
}
