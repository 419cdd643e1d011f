package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are the schema changes in the order they apply; migration i
// brings the schema to version i+1. Append only: never edit or reorder a
// migration that has shipped.
var migrations = []string{
	// 1: deployments and replica handles. replicas.deployment has no foreign
	// key on purpose: a replica started just before its deployment was
	// deleted must still be recorded, so that it can be found and stopped.
	`CREATE TABLE deployments (
		name       TEXT PRIMARY KEY,
		spec       TEXT NOT NULL,
		generation INTEGER NOT NULL,
		created_at TEXT NOT NULL,
		updated_at TEXT NOT NULL
	);
	CREATE TABLE replicas (
		id         TEXT PRIMARY KEY,
		deployment TEXT NOT NULL,
		handle     TEXT NOT NULL
	);
	CREATE INDEX replicas_by_deployment ON replicas (deployment);`,
}

// migrate applies the migrations not yet recorded in schema_migrations, each
// in its own transaction together with its record.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at TEXT NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for v := 1; v <= len(migrations); v++ {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			var current sql.NullInt64
			if err := tx.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&current); err != nil {
				return err
			}
			if current.Int64 > int64(len(migrations)) {
				return fmt.Errorf("database schema version %d is newer than this ebb knows (%d): upgrade ebb", current.Int64, len(migrations))
			}
			if current.Int64 >= int64(v) {
				return nil // applied earlier, perhaps by another process just now
			}
			if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				v, formatTime(s.now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("apply schema migration %d: %w", v, err)
		}
	}
	return nil
}
