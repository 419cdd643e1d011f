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

// Tenant limits (store.LimitStore), keyed by (tenant, deployment), the
// tenant-wide one with deployment ''. A limit's bounds are a JSON column,
// as a route's spec is, so that a bound added later needs no migration.

var _ store.LimitStore = (*Store)(nil)

const limitColumns = `tenant, deployment, spec, generation, created_at, updated_at`

// limitSpec is what the spec column holds of a limit: its bounds.
type limitSpec struct {
	Rate        float64 `json:"rate,omitempty"`
	Burst       int32   `json:"burst,omitempty"`
	Concurrency int32   `json:"concurrency,omitempty"`
	Share       int32   `json:"share,omitempty"`
}

// GetLimit implements store.LimitStore.
func (s *Store) GetLimit(ctx context.Context, tenant, deployment string) (serving.Limit, error) {
	l, err := scanLimit(s.read().row(ctx, `SELECT `+limitColumns+` FROM limits WHERE tenant = ? AND deployment = ?`, tenant, deployment))
	if errors.Is(err, sql.ErrNoRows) {
		key := serving.LimitKey{Tenant: tenant, Deployment: deployment}
		return serving.Limit{}, fmt.Errorf("limit of %s %w", key, store.ErrNotFound)
	}
	if err != nil {
		return serving.Limit{}, fmt.Errorf("get limit: %w", err)
	}
	return l, nil
}

// ListLimits implements store.LimitStore: every limit, sorted by tenant,
// then deployment (bytewise: the tenant-wide one first).
func (s *Store) ListLimits(ctx context.Context) ([]serving.Limit, error) {
	out, err := list(ctx, s.read(), scanLimit, `SELECT `+limitColumns+` FROM limits ORDER BY tenant, deployment`)
	if err != nil {
		return nil, fmt.Errorf("list limits: %w", err)
	}
	return out, nil
}

// PutLimit implements store.LimitStore with one upsert: a new limit is
// generation 1; replacing one adds one to its generation and keeps its
// CreatedAt.
func (s *Store) PutLimit(ctx context.Context, l serving.Limit) (serving.Limit, bool, error) {
	spec, err := json.Marshal(limitSpec{Rate: l.Rate, Burst: l.Burst, Concurrency: l.Concurrency, Share: l.Share})
	if err != nil {
		return serving.Limit{}, false, fmt.Errorf("encode limit: %w", err)
	}
	now := s.now()
	out := l
	out.UpdatedAt = now
	err = s.write(ctx, func(tx conn) error {
		return tx.row(ctx, `INSERT INTO limits (`+limitColumns+`) VALUES (?, ?, ?, 1, ?, ?)
			ON CONFLICT (tenant, deployment) DO UPDATE
			SET spec = excluded.spec, generation = limits.generation + 1, updated_at = excluded.updated_at
			RETURNING generation, created_at`,
			l.Tenant, l.Deployment, string(spec), s.time(now), s.time(now)).Scan(&out.Generation, timeCol(&out.CreatedAt))
	})
	if err != nil {
		return serving.Limit{}, false, fmt.Errorf("put limit of %s: %w", l.Key(), err)
	}
	return out, out.Generation == 1, nil
}

// DeleteLimit implements store.LimitStore.
func (s *Store) DeleteLimit(ctx context.Context, tenant, deployment string) error {
	key := serving.LimitKey{Tenant: tenant, Deployment: deployment}
	res, err := s.exec(ctx, `DELETE FROM limits WHERE tenant = ? AND deployment = ?`, tenant, deployment)
	if err != nil {
		return fmt.Errorf("delete limit of %s: %w", key, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete limit of %s: %w", key, err)
	} else if n == 0 {
		return fmt.Errorf("delete limit: limit of %s %w", key, store.ErrNotFound)
	}
	return nil
}

func scanLimit(sc scanner) (serving.Limit, error) {
	var l serving.Limit
	var spec []byte
	if err := sc.Scan(&l.Tenant, &l.Deployment, &spec, &l.Generation, timeCol(&l.CreatedAt), timeCol(&l.UpdatedAt)); err != nil {
		return serving.Limit{}, err
	}
	var ls limitSpec
	if err := json.Unmarshal(spec, &ls); err != nil {
		return serving.Limit{}, fmt.Errorf("decode limit of %s: %w", l.Key(), err)
	}
	l.Rate, l.Burst, l.Concurrency, l.Share = ls.Rate, ls.Burst, ls.Concurrency, ls.Share
	return l, nil
}
