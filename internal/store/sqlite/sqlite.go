// Package sqlite is ebb's embedded store: deployments and replica handles in
// one SQLite file, through the pure-Go modernc.org/sqlite driver. It is the
// default store of `ebb up`.
//
// Only what the user asked for (a deployment's Spec) and bookkeeping
// (generation, times) are stored; a deployment's Status is observed live by
// the control loop and never written here.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// busyTimeout is how long a statement waits for another connection's (or
// another process's) write lock before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Store keeps deployments and replica handles in a SQLite database. All
// methods are safe for concurrent use. Times it records are UTC and kept to
// the microsecond.
type Store struct {
	// Now is the clock used for CreatedAt and UpdatedAt. Open sets it to
	// time.Now; tests may replace it before the first call.
	Now func() time.Time

	db *sql.DB

	// writeMu serialises this process's write transactions so they never
	// wait on each other inside SQLite; busy_timeout still covers writers in
	// other processes.
	writeMu sync.Mutex
}

// Open opens (creating if needed) the SQLite database at path, creating its
// parent directory, and applies any schema migrations not yet recorded in
// the schema_migrations table. The database runs in WAL mode with foreign
// keys on. The path ":memory:" opens a private in-memory database that
// lives until Close. Call Close when done.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path: give a file path such as ~/.ebb/ebb.db")
	}
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: database path %q must not contain '?'", path)
	}
	memory := path == ":memory:"
	if dir := filepath.Dir(path); !memory && dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("sqlite: create directory for database: %w", err)
		}
	}
	dsn := path + "?" + strings.Join([]string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()),
		"_pragma=foreign_keys(1)",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(NORMAL)",
		// Write transactions take the write lock at BEGIN, so a
		// read-modify-write never fails upgrading its lock.
		"_txlock=immediate",
	}, "&")
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if memory {
		// Every connection would open its own empty database.
		db.SetMaxOpenConns(1)
	}
	s := &Store{Now: time.Now, db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database. Calls after Close fail.
func (s *Store) Close() error { return s.db.Close() }

// now returns the store clock's time in UTC, truncated to the microsecond so
// that a value read back equals the value written.
func (s *Store) now() time.Time {
	return s.Now().UTC().Truncate(time.Microsecond)
}

// tx runs fn in one write transaction and commits when fn returns nil.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

const timeFormat = time.RFC3339Nano

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeFormat, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %w", s, err)
	}
	return t.UTC(), nil
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
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM deployments WHERE name = ?`, d.Name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("deployment %q %w", d.Name, store.ErrExists)
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO deployments (name, spec, generation, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
			d.Name, string(spec), out.Generation, formatTime(now), formatTime(now))
		return err
	})
	if err != nil {
		return serving.Deployment{}, fmt.Errorf("create deployment %q: %w", d.Name, err)
	}
	return out, nil
}

// GetDeployment returns the named deployment with a zero Status, or an error
// wrapping store.ErrNotFound.
func (s *Store) GetDeployment(ctx context.Context, name string) (serving.Deployment, error) {
	d, err := getDeployment(ctx, s.db, name)
	if err != nil {
		return serving.Deployment{}, fmt.Errorf("get deployment %q: %w", name, err)
	}
	return d, nil
}

// ListDeployments returns every deployment sorted by name, each with a zero
// Status.
func (s *Store) ListDeployments(ctx context.Context) ([]serving.Deployment, error) {
	rows, err := s.db.QueryContext(ctx,
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
// back what fn left, all in one transaction, so concurrent updates never
// lose each other's changes. fn may change Spec only: changes to Generation,
// times and Status are ignored, and changing Name is an error. When fn
// returns an error nothing is written and that error is returned unwrapped.
// Generation increases by one when Spec changed; UpdatedAt is set to now.
// A missing deployment yields an error wrapping store.ErrNotFound.
func (s *Store) UpdateDeployment(ctx context.Context, name string, fn func(*serving.Deployment) error) (serving.Deployment, error) {
	var out serving.Deployment
	var fnErr error
	err := s.tx(ctx, func(tx *sql.Tx) error {
		old, err := getDeployment(ctx, tx, name)
		if err != nil {
			return err
		}
		var newSpec []byte
		out, newSpec, fnErr, err = store.ApplyUpdate(old, fn, s.now())
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`UPDATE deployments SET spec = ?, generation = ?, updated_at = ? WHERE name = ?`,
			string(newSpec), out.Generation, formatTime(out.UpdatedAt), name)
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
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM deployments WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("deployment %q %w", name, store.ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM replicas WHERE deployment = ?`, name)
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
	err = s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO replicas (id, deployment, handle) VALUES (?, ?, ?)
			 ON CONFLICT (id) DO UPDATE SET deployment = excluded.deployment, handle = excluded.handle`,
			h.Spec.ID, h.Spec.Deployment, string(b))
		return err
	})
	if err != nil {
		return fmt.Errorf("put replica %q: %w", h.Spec.ID, err)
	}
	return nil
}

// DeleteReplica deletes the replica record with the given ID; deleting a
// missing record is not an error.
func (s *Store) DeleteReplica(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM replicas WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete replica %q: %w", id, err)
	}
	return nil
}

// ListReplicas returns every recorded replica handle, sorted by ID.
func (s *Store) ListReplicas(ctx context.Context) ([]replica.Handle, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, handle FROM replicas ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	defer rows.Close()
	out := []replica.Handle{}
	for rows.Next() {
		var id, raw string
		if err := rows.Scan(&id, &raw); err != nil {
			return nil, fmt.Errorf("list replicas: %w", err)
		}
		var h replica.Handle
		if err := json.Unmarshal([]byte(raw), &h); err != nil {
			return nil, fmt.Errorf("list replicas: decode replica %q: %w", id, err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	return out, nil
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type scanner interface {
	Scan(dest ...any) error
}

func getDeployment(ctx context.Context, q querier, name string) (serving.Deployment, error) {
	row := q.QueryRowContext(ctx,
		`SELECT name, spec, generation, created_at, updated_at FROM deployments WHERE name = ?`, name)
	d, err := scanDeployment(row)
	if errors.Is(err, sql.ErrNoRows) {
		return serving.Deployment{}, fmt.Errorf("deployment %q %w", name, store.ErrNotFound)
	}
	return d, err
}

func scanDeployment(sc scanner) (serving.Deployment, error) {
	var d serving.Deployment
	var spec, created, updated string
	if err := sc.Scan(&d.Name, &spec, &d.Generation, &created, &updated); err != nil {
		return serving.Deployment{}, err
	}
	if err := json.Unmarshal([]byte(spec), &d.Spec); err != nil {
		return serving.Deployment{}, fmt.Errorf("decode spec of deployment %q: %w", d.Name, err)
	}
	var err error
	if d.CreatedAt, err = parseTime(created); err != nil {
		return serving.Deployment{}, err
	}
	if d.UpdatedAt, err = parseTime(updated); err != nil {
		return serving.Deployment{}, err
	}
	return d, nil
}
