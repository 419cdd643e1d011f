package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrationLock is the key of the transaction-scoped advisory lock that
// serialises migrations among ebb processes sharing one database.
const migrationLock = 0x6562625f6d696772 // "ebb_migr"

// migrations are the schema changes in the order they apply; migration i
// brings the schema to version i+1. Append only: never edit or reorder a
// migration that has shipped.
var migrations = []string{
	// 1: deployments and replica handles. replicas.deployment has no foreign
	// key on purpose: a replica started just before its deployment was
	// deleted must still be recorded, so that it can be found and stopped.
	//
	// Names and IDs use the "C" collation so that they sort by bytes, as in
	// the SQLite store, whatever the database's default collation.
	`CREATE TABLE deployments (
		name       TEXT COLLATE "C" PRIMARY KEY,
		spec       JSONB NOT NULL,
		generation BIGINT NOT NULL,
		created_at TIMESTAMPTZ NOT NULL,
		updated_at TIMESTAMPTZ NOT NULL
	);
	CREATE TABLE replicas (
		id         TEXT COLLATE "C" PRIMARY KEY,
		deployment TEXT NOT NULL,
		handle     JSONB NOT NULL
	);
	CREATE INDEX replicas_by_deployment ON replicas (deployment);`,

	// 2: the model registry (registry.go): models, versions, aliases, alias
	// moves and which version served each deployment when. last_used_at is
	// NULL for a version never used.
	`CREATE TABLE models (
		name           TEXT COLLATE "C" PRIMARY KEY,
		description    TEXT NOT NULL,
		created_at     TIMESTAMPTZ NOT NULL,
		updated_at     TIMESTAMPTZ NOT NULL,
		latest_version INTEGER NOT NULL
	);
	CREATE TABLE model_versions (
		model            TEXT COLLATE "C" NOT NULL REFERENCES models (name),
		version          INTEGER NOT NULL,
		artifact_uri     TEXT NOT NULL,
		sha256           TEXT NOT NULL,
		size             BIGINT NOT NULL,
		packaging        TEXT NOT NULL,
		entry            TEXT NOT NULL,
		engine           TEXT NOT NULL,
		signature        JSONB NOT NULL,
		lineage          JSONB NOT NULL,
		tags             JSONB NOT NULL,
		created_at       TIMESTAMPTZ NOT NULL,
		created_by       TEXT NOT NULL,
		state            TEXT NOT NULL,
		state_changed_at TIMESTAMPTZ NOT NULL,
		last_used_at     TIMESTAMPTZ,
		PRIMARY KEY (model, version)
	);
	CREATE TABLE model_aliases (
		model      TEXT COLLATE "C" NOT NULL REFERENCES models (name),
		name       TEXT COLLATE "C" NOT NULL,
		version    INTEGER NOT NULL,
		updated_at TIMESTAMPTZ NOT NULL,
		updated_by TEXT NOT NULL,
		PRIMARY KEY (model, name),
		FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
	);
	CREATE TABLE model_alias_moves (
		id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		model        TEXT NOT NULL,
		alias        TEXT NOT NULL,
		from_version INTEGER NOT NULL,
		to_version   INTEGER NOT NULL,
		moved_by     TEXT NOT NULL,
		moved_at     TIMESTAMPTZ NOT NULL
	);
	CREATE INDEX model_alias_moves_by_alias ON model_alias_moves (model, alias, id);
	CREATE TABLE serving_history (
		id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		deployment TEXT NOT NULL,
		model      TEXT NOT NULL,
		version    INTEGER NOT NULL,
		served_at  TIMESTAMPTZ NOT NULL
	);
	CREATE INDEX serving_history_by_deployment ON serving_history (deployment, id);`,
}

// migrate applies the migrations not yet recorded in schema_migrations, each
// in its own transaction together with its record. An advisory lock makes
// processes that open the same database at once apply each migration once.
func (s *Store) migrate(ctx context.Context) error {
	for v := 1; v <= len(migrations); v++ {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version    INTEGER PRIMARY KEY,
				applied_at TIMESTAMPTZ NOT NULL
			)`); err != nil {
				return fmt.Errorf("create schema_migrations: %w", err)
			}
			var current int
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
				return err
			}
			if current > len(migrations) {
				return fmt.Errorf("database schema version %d is newer than this ebb knows (%d): upgrade ebb", current, len(migrations))
			}
			if current >= v {
				return nil // applied earlier, perhaps by another process just now
			}
			if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, v, s.now())
			return err
		})
		if err != nil {
			return fmt.Errorf("apply schema migration %d: %w", v, err)
		}
	}
	return nil
}
