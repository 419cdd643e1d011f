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

// Multi-model pools (store.PoolStore), whose spec is a JSON column as a
// deployment's is. Nothing here ties a pool to the deployments that name
// it: the admin API keeps a pool that hosts models from being deleted.

var _ store.PoolStore = (*Store)(nil)

const poolColumns = `name, spec, generation, created_at, updated_at`

// CreatePool implements store.PoolStore: p is stored with Generation 1
// and CreatedAt and UpdatedAt now, or an error wraps store.ErrExists when
// its name is taken by another pool.
func (s *Store) CreatePool(ctx context.Context, p serving.Pool) (serving.Pool, error) {
	spec, err := json.Marshal(p.Spec)
	if err != nil {
		return serving.Pool{}, fmt.Errorf("encode pool %q: %w", p.Name, err)
	}
	now := s.now()
	out := serving.Pool{Name: p.Name, Spec: p.Spec, Generation: 1, CreatedAt: now, UpdatedAt: now}
	err = s.insert(ctx, fmt.Sprintf("pool %q", p.Name),
		`INSERT INTO pools (`+poolColumns+`) VALUES (?, ?, ?, ?, ?)`,
		p.Name, string(spec), out.Generation, s.time(now), s.time(now))
	if err != nil {
		return serving.Pool{}, fmt.Errorf("create pool %q: %w", p.Name, err)
	}
	return out, nil
}

// GetPool implements store.PoolStore.
func (s *Store) GetPool(ctx context.Context, name string) (serving.Pool, error) {
	p, err := getPool(ctx, s.read(), name, "")
	if err != nil {
		return serving.Pool{}, fmt.Errorf("get pool %q: %w", name, err)
	}
	return p, nil
}

// ListPools implements store.PoolStore: every pool, sorted by name.
func (s *Store) ListPools(ctx context.Context) ([]serving.Pool, error) {
	out, err := list(ctx, s.read(), scanPool, `SELECT `+poolColumns+` FROM pools ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list pools: %w", err)
	}
	return out, nil
}

// UpdatePool implements store.PoolStore: it reads the named pool,
// passes it to fn and writes back what fn left (store.ApplyPoolUpdate),
// all in one transaction that holds the row. fn may be called more than
// once, should the database make the transaction run again.
func (s *Store) UpdatePool(ctx context.Context, name string, fn func(*serving.Pool) error) (serving.Pool, error) {
	var out serving.Pool
	var fnErr error
	err := s.write(ctx, func(tx conn) error {
		fnErr = nil
		old, err := getPool(ctx, tx, name, s.rowLock(ForUpdate))
		if err != nil {
			return err
		}
		var spec []byte
		out, spec, fnErr, err = store.ApplyPoolUpdate(old, fn, s.now())
		if err != nil {
			return err
		}
		_, err = tx.exec(ctx, `UPDATE pools SET spec = ?, generation = ?, updated_at = ? WHERE name = ?`,
			string(spec), out.Generation, s.time(out.UpdatedAt), name)
		return err
	})
	if fnErr != nil {
		return serving.Pool{}, fnErr
	}
	if err != nil {
		return serving.Pool{}, fmt.Errorf("update pool %q: %w", name, err)
	}
	return out, nil
}

// DeletePool implements store.PoolStore; a missing pool is an error
// wrapping store.ErrNotFound.
func (s *Store) DeletePool(ctx context.Context, name string) error {
	res, err := s.exec(ctx, `DELETE FROM pools WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete pool %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete pool %q: %w", name, err)
	} else if n == 0 {
		return fmt.Errorf("delete pool %q: pool %q %w", name, name, store.ErrNotFound)
	}
	return nil
}

// getPool reads one pool; lock is appended to the query.
func getPool(ctx context.Context, c conn, name, lock string) (serving.Pool, error) {
	p, err := scanPool(c.row(ctx, `SELECT `+poolColumns+` FROM pools WHERE name = ?`+lock, name))
	if errors.Is(err, sql.ErrNoRows) {
		return serving.Pool{}, fmt.Errorf("pool %q %w", name, store.ErrNotFound)
	}
	return p, err
}

func scanPool(sc scanner) (serving.Pool, error) {
	var p serving.Pool
	var spec []byte
	if err := sc.Scan(&p.Name, &spec, &p.Generation, timeCol(&p.CreatedAt), timeCol(&p.UpdatedAt)); err != nil {
		return serving.Pool{}, err
	}
	if err := json.Unmarshal(spec, &p.Spec); err != nil {
		return serving.Pool{}, fmt.Errorf("decode spec of pool %q: %w", p.Name, err)
	}
	return p, nil
}
