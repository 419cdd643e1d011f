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

	// 2: the model registry (registry.go): models, versions, aliases, alias
	// moves and which version served each deployment when.
	`CREATE TABLE models (
		name           TEXT PRIMARY KEY,
		description    TEXT NOT NULL,
		created_at     TEXT NOT NULL,
		updated_at     TEXT NOT NULL,
		latest_version INTEGER NOT NULL
	);
	CREATE TABLE model_versions (
		model            TEXT NOT NULL REFERENCES models (name),
		version          INTEGER NOT NULL,
		artifact_uri     TEXT NOT NULL,
		sha256           TEXT NOT NULL,
		size             INTEGER NOT NULL,
		packaging        TEXT NOT NULL,
		entry            TEXT NOT NULL,
		engine           TEXT NOT NULL,
		signature        TEXT NOT NULL,
		lineage          TEXT NOT NULL,
		tags             TEXT NOT NULL,
		created_at       TEXT NOT NULL,
		created_by       TEXT NOT NULL,
		state            TEXT NOT NULL,
		state_changed_at TEXT NOT NULL,
		last_used_at     TEXT NOT NULL,
		PRIMARY KEY (model, version)
	);
	CREATE TABLE model_aliases (
		model      TEXT NOT NULL REFERENCES models (name),
		name       TEXT NOT NULL,
		version    INTEGER NOT NULL,
		updated_at TEXT NOT NULL,
		updated_by TEXT NOT NULL,
		PRIMARY KEY (model, name),
		FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
	);
	CREATE TABLE model_alias_moves (
		id           INTEGER PRIMARY KEY AUTOINCREMENT,
		model        TEXT NOT NULL,
		alias        TEXT NOT NULL,
		from_version INTEGER NOT NULL,
		to_version   INTEGER NOT NULL,
		moved_by     TEXT NOT NULL,
		moved_at     TEXT NOT NULL
	);
	CREATE INDEX model_alias_moves_by_alias ON model_alias_moves (model, alias, id);
	CREATE TABLE serving_history (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		deployment TEXT NOT NULL,
		model      TEXT NOT NULL,
		version    INTEGER NOT NULL,
		served_at  TEXT NOT NULL
	);
	CREATE INDEX serving_history_by_deployment ON serving_history (deployment, id);`,
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
