// Package postgres is ebb's shared store: deployments and replica handles in
// a PostgreSQL database, through pgx. Several ebb processes may share one
// database, which makes the control plane's state as available as the
// database is. `ebb up --store-dsn postgres://...` selects it instead of the
// embedded SQLite store; both keep the same contract (see store/storetest).
//
// Only what the user asked for (a deployment's Spec) and bookkeeping
// (generation, times) are stored; a deployment's Status is observed live by
// the control loop and never written here.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Store keeps deployments and replica handles in a PostgreSQL database. All
// methods are safe for concurrent use, also by several processes sharing the
// database. Times it records are UTC and kept to the microsecond.
type Store struct {
	// Now is the clock used for CreatedAt and UpdatedAt. Open sets it to
	// time.Now; tests may replace it before the first call.
	Now func() time.Time

	pool *pgxpool.Pool
}

// Open connects to the PostgreSQL database named by dsn, a URL
// (postgres://user:password@host:5432/db?sslmode=disable) or a key=value
// string as libpq takes, and applies any schema migrations not yet recorded
// in the schema_migrations table. The database must exist. Call Close when
// done.
func Open(ctx context.Context, dsn string) (*Store, error) {
	if dsn == "" {
		return nil, errors.New("postgres: empty DSN: give a URL such as postgres://user:password@host:5432/ebb")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message redacts the password.
		return nil, fmt.Errorf("postgres: invalid DSN: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: cannot connect to %s: %w (is the server running, and are the DSN's user, password and database right?)", where, err)
	}
	s := &Store{Now: time.Now, pool: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open %s: %w", where, err)
	}
	return s, nil
}

// Close closes the store's connections, waiting for those in use to be
// returned. Calls after Close fail. It always returns nil; the error is
// there so that every store closes alike.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// now returns the store clock's time in UTC, truncated to the microsecond
// (PostgreSQL's precision) so that a value read back equals the value
// written.
func (s *Store) now() time.Time {
	return s.Now().UTC().Truncate(time.Microsecond)
}

// CreateDeployment stores d as a new deployment with Generation 1 and
// CreatedAt and UpdatedAt set to now; d's Generation, times and Status are
// ignored. It returns the stored deployment, or an error wrapping
// store.ErrExists when the name is taken.
func (s *Store) CreateDeployment(ctx context.Context, d serving.Deployment) (serving.Deployment, error) {
	spec, err := json.Marshal(d.Spec)
	if err != nil {
		return serving.Deployment{}, fmt.Errorf("encode deployment %q: %w", d.Name, err)
	}
	now := s.now()
	out := serving.Deployment{Name: d.Name, Spec: d.Spec, Generation: 1, CreatedAt: now, UpdatedAt: now}
	tag, err := s.pool.Exec(ctx,
		`INSERT INTO deployments (name, spec, generation, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
		 ON CONFLICT (name) DO NOTHING`,
		d.Name, spec, out.Generation, now)
	if err == nil && tag.RowsAffected() == 0 {
		err = fmt.Errorf("deployment %q %w", d.Name, store.ErrExists)
	}
	if err != nil {
		return serving.Deployment{}, fmt.Errorf("create deployment %q: %w", d.Name, err)
	}
	return out, nil
}

// GetDeployment returns the named deployment with a zero Status, or an error
// wrapping store.ErrNotFound.
func (s *Store) GetDeployment(ctx context.Context, name string) (serving.Deployment, error) {
	d, err := getDeployment(ctx, s.pool, name, "")
	if err != nil {
		return serving.Deployment{}, fmt.Errorf("get deployment %q: %w", name, err)
	}
	return d, nil
}

// ListDeployments returns every deployment sorted by name, each with a zero
// Status.
func (s *Store) ListDeployments(ctx context.Context) ([]serving.Deployment, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT name, spec, generation, created_at, updated_at FROM deployments ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	defer rows.Close()
	out := []serving.Deployment{}
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, fmt.Errorf("list deployments: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return out, nil
}

// UpdateDeployment reads the named deployment, passes it to fn and writes
// back what fn left, all in one transaction holding the row's lock, so
// concurrent updates (from this process or another) never lose each other's
// changes. fn may change Spec only: changes to Generation, times and Status
// are ignored, and changing Name is an error. When fn returns an error
// nothing is written and that error is returned unwrapped. Generation
// increases by one when Spec changed; UpdatedAt is set to now. A missing
// deployment yields an error wrapping store.ErrNotFound.
func (s *Store) UpdateDeployment(ctx context.Context, name string, fn func(*serving.Deployment) error) (serving.Deployment, error) {
	var out serving.Deployment
	var fnErr error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		old, err := getDeployment(ctx, tx, name, "FOR UPDATE")
		if err != nil {
			return err
		}
		var newSpec []byte
		out, newSpec, fnErr, err = store.ApplyUpdate(old, fn, s.now())
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx,
			`UPDATE deployments SET spec = $1, generation = $2, updated_at = $3 WHERE name = $4`,
			newSpec, out.Generation, out.UpdatedAt, name)
		return err
	})
	if fnErr != nil {
		return serving.Deployment{}, fnErr
	}
	if err != nil {
		return serving.Deployment{}, fmt.Errorf("update deployment %q: %w", name, err)
	}
	return out, nil
}

// DeleteDeployment deletes the named deployment and its replica records, or
// returns an error wrapping store.ErrNotFound.
func (s *Store) DeleteDeployment(ctx context.Context, name string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM deployments WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("deployment %q %w", name, store.ErrNotFound)
		}
		_, err = tx.Exec(ctx, `DELETE FROM replicas WHERE deployment = $1`, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete deployment %q: %w", name, err)
	}
	return nil
}

// PutReplica records h, replacing any record with the same h.Spec.ID. The
// deployment h belongs to need not exist: a replica started just before its
// deployment was deleted must still be recorded so that it can be stopped.
func (s *Store) PutReplica(ctx context.Context, h replica.Handle) error {
	if h.Spec.ID == "" {
		return errors.New("put replica: handle has an empty Spec.ID")
	}
	b, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("put replica %q: encode handle: %w", h.Spec.ID, err)
	}
	_, err = s.pool.Exec(ctx,
		`INSERT INTO replicas (id, deployment, handle) VALUES ($1, $2, $3)
		 ON CONFLICT (id) DO UPDATE SET deployment = excluded.deployment, handle = excluded.handle`,
		h.Spec.ID, h.Spec.Deployment, b)
	if err != nil {
		return fmt.Errorf("put replica %q: %w", h.Spec.ID, err)
	}
	return nil
}

// DeleteReplica deletes the replica record with the given ID; deleting a
// missing record is not an error.
func (s *Store) DeleteReplica(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM replicas WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete replica %q: %w", id, err)
	}
	return nil
}

// ListReplicas returns every recorded replica handle, sorted by ID.
func (s *Store) ListReplicas(ctx context.Context) ([]replica.Handle, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, handle FROM replicas ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	defer rows.Close()
	out := []replica.Handle{}
	for rows.Next() {
		var id string
		var raw []byte
		if err := rows.Scan(&id, &raw); err != nil {
			return nil, fmt.Errorf("list replicas: %w", err)
		}
		var h replica.Handle
		if err := json.Unmarshal(raw, &h); err != nil {
			return nil, fmt.Errorf("list replicas: decode replica %q: %w", id, err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	return out, nil
}

// querier is what *pgxpool.Pool and pgx.Tx share.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// getDeployment reads one deployment; lock is appended to the query ("" or
// "FOR UPDATE").
func getDeployment(ctx context.Context, q querier, name, lock string) (serving.Deployment, error) {
	row := q.QueryRow(ctx,
		`SELECT name, spec, generation, created_at, updated_at FROM deployments WHERE name = $1 `+lock, name)
	d, err := scanDeployment(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return serving.Deployment{}, fmt.Errorf("deployment %q %w", name, store.ErrNotFound)
	}
	return d, err
}

func scanDeployment(row pgx.Row) (serving.Deployment, error) {
	var d serving.Deployment
	var spec []byte
	if err := row.Scan(&d.Name, &spec, &d.Generation, &d.CreatedAt, &d.UpdatedAt); err != nil {
		return serving.Deployment{}, err
	}
	if err := json.Unmarshal(spec, &d.Spec); err != nil {
		return serving.Deployment{}, fmt.Errorf("decode spec of deployment %q: %w", d.Name, err)
	}
	d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	return d, nil
}
