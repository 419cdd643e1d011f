package sqlstore

import (
	"context"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Multi-model pools (store.PoolStore), a specTable. Nothing here ties a
// pool to the deployments that name it: the admin API keeps a pool that
// hosts models from being deleted.

var _ store.PoolStore = (*Store)(nil)

var poolTable = &specTable[serving.Pool]{
	table: "pools",
	noun:  "pool",
	fields: func(p *serving.Pool) specFields {
		return specFields{&p.Name, &p.Spec, &p.Generation, &p.CreatedAt, &p.UpdatedAt}
	},
	created: func(p serving.Pool) serving.Pool { return serving.Pool{Name: p.Name, Spec: p.Spec} },
	apply:   store.ApplyPoolUpdate,
}

// CreatePool implements store.PoolStore: p is stored with Generation 1
// and CreatedAt and UpdatedAt now, or an error wraps store.ErrExists when
// its name is taken by another pool.
func (s *Store) CreatePool(ctx context.Context, p serving.Pool) (serving.Pool, error) {
	return poolTable.create(ctx, s, p)
}

// GetPool implements store.PoolStore.
func (s *Store) GetPool(ctx context.Context, name string) (serving.Pool, error) {
	return poolTable.get(ctx, s, name)
}

// ListPools implements store.PoolStore: every pool, sorted by name.
func (s *Store) ListPools(ctx context.Context) ([]serving.Pool, error) {
	return poolTable.list(ctx, s)
}

// UpdatePool implements store.PoolStore: it reads the named pool,
// passes it to fn and writes back what fn left (store.ApplyPoolUpdate),
// all in one transaction that holds the row. fn may be called more than
// once, should the database make the transaction run again.
func (s *Store) UpdatePool(ctx context.Context, name string, fn func(*serving.Pool) error) (serving.Pool, error) {
	return poolTable.update(ctx, s, name, fn)
}

// DeletePool implements store.PoolStore; a missing pool is an error
// wrapping store.ErrNotFound.
func (s *Store) DeletePool(ctx context.Context, name string) error {
	return poolTable.delete(ctx, s, name)
}
