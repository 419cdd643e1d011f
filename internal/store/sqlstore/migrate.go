package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/store"
)

// migrations are the schema changes in the order they apply; migration i
// brings the schema to version i+1. Each names its column types by kind
// ({{.Key}}, {{.Time}}, ...; see renderDDL and the dialect's Columns), so
// one migration serves every database. Append only:
// never edit or reorder a migration that has shipped, since databases
// already at its version never run it again.
//
// Versions 1 and 2 are those that the separate SQLite and PostgreSQL stores
// shipped before this package; rendered for each dialect they are the DDL
// that store ran, so a database either of them made is already at version
// 2 and opens as it is (compat_test.go checks the schemas match).
var migrations = []string{
	// 1: deployments and replica handles. replicas.deployment has no foreign
	// key on purpose: a replica started just before its deployment was
	// deleted must still be recorded, so that it can be found and stopped.
	`CREATE TABLE deployments (
		name       {{.Key}} PRIMARY KEY,
		spec       {{.JSON}} NOT NULL,
		generation {{.Int64}} NOT NULL,
		created_at {{.Time}} NOT NULL,
		updated_at {{.Time}} NOT NULL
	);
	CREATE TABLE replicas (
		id         {{.Key}} PRIMARY KEY,
		deployment TEXT NOT NULL,
		handle     {{.JSON}} NOT NULL
	);
	CREATE INDEX replicas_by_deployment ON replicas (deployment);`,

	// 2: the model registry (registry.go): models, versions, aliases, alias
	// moves and which version served each deployment when.
	`CREATE TABLE models (
		name           {{.Key}} PRIMARY KEY,
		description    TEXT NOT NULL,
		created_at     {{.Time}} NOT NULL,
		updated_at     {{.Time}} NOT NULL,
		latest_version INTEGER NOT NULL
	);
	CREATE TABLE model_versions (
		model            {{.Key}} NOT NULL REFERENCES models (name),
		version          INTEGER NOT NULL,
		artifact_uri     TEXT NOT NULL,
		sha256           TEXT NOT NULL,
		size             {{.Int64}} NOT NULL,
		packaging        TEXT NOT NULL,
		entry            TEXT NOT NULL,
		engine           TEXT NOT NULL,
		signature        {{.JSON}} NOT NULL,
		lineage          {{.JSON}} NOT NULL,
		tags             {{.JSON}} NOT NULL,
		created_at       {{.Time}} NOT NULL,
		created_by       TEXT NOT NULL,
		state            TEXT NOT NULL,
		state_changed_at {{.Time}} NOT NULL,
		last_used_at     {{.OptionalTime}},
		PRIMARY KEY (model, version)
	);
	CREATE TABLE model_aliases (
		model      {{.Key}} NOT NULL REFERENCES models (name),
		name       {{.Key}} NOT NULL,
		version    INTEGER NOT NULL,
		updated_at {{.Time}} NOT NULL,
		updated_by TEXT NOT NULL,
		PRIMARY KEY (model, name),
		FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
	);
	CREATE TABLE model_alias_moves (
		id           {{.Serial}},
		model        TEXT NOT NULL,
		alias        TEXT NOT NULL,
		from_version INTEGER NOT NULL,
		to_version   INTEGER NOT NULL,
		moved_by     TEXT NOT NULL,
		moved_at     {{.Time}} NOT NULL
	);
	CREATE INDEX model_alias_moves_by_alias ON model_alias_moves (model, alias, id);
	CREATE TABLE serving_history (
		id         {{.Serial}},
		deployment TEXT NOT NULL,
		model      TEXT NOT NULL,
		version    INTEGER NOT NULL,
		served_at  {{.Time}} NOT NULL
	);
	CREATE INDEX serving_history_by_deployment ON serving_history (deployment, id);`,

	// 3: API tokens (tokens.go). hash is the SHA-256 of the token's secret;
	// the secret itself is never stored.
	`CREATE TABLE tokens (
		id         {{.Key}} PRIMARY KEY,
		name       TEXT NOT NULL,
		hash       TEXT NOT NULL,
		scopes     {{.JSON}} NOT NULL,
		created_at {{.Time}} NOT NULL,
		created_by TEXT NOT NULL,
		expires_at {{.OptionalTime}}
	);`,

	// 4: canary and shadow rollouts (rollouts.go). seq orders them by
	// creation; active is 1 or 0 (a boolean both databases index alike).
	// The partial unique index lets one rollout of each kind be active per
	// deployment, however many stores race to create one. deployment has
	// no foreign key: in the cluster home deployments are not in this
	// database.
	`CREATE TABLE rollouts (
		seq        {{.Serial}},
		id         {{.Key}} NOT NULL UNIQUE,
		deployment TEXT NOT NULL,
		kind       TEXT NOT NULL,
		active     INTEGER NOT NULL CHECK (active IN (0, 1)),
		spec       {{.JSON}} NOT NULL,
		state      {{.JSON}} NOT NULL,
		revision   {{.Int64}} NOT NULL,
		created_at {{.Time}} NOT NULL,
		updated_at {{.Time}} NOT NULL
	);
	CREATE UNIQUE INDEX rollouts_active ON rollouts (deployment, kind) WHERE active = 1;
	CREATE INDEX rollouts_by_deployment ON rollouts (deployment, seq);`,

	// 5: route objects, shard groups (routes.go). The deployments a
	// route names are in its spec, with no foreign key: a route may name
	// a deployment not created yet, and in the cluster home routes are
	// not in this database at all.
	`CREATE TABLE routes (
		name       {{.Key}} PRIMARY KEY,
		spec       {{.JSON}} NOT NULL,
		generation {{.Int64}} NOT NULL,
		created_at {{.Time}} NOT NULL,
		updated_at {{.Time}} NOT NULL
	);`,

	// 6: the tenant a token's requests count against (auth.Token.Tenant);
	// '' for tokens made before tenants: their tenant is their name.
	`ALTER TABLE tokens ADD COLUMN tenant TEXT NOT NULL DEFAULT '';`,

	// 7: tenant limits (limits.go), one row per (tenant, deployment), the
	// tenant-wide limit with deployment ''. deployment has no foreign key:
	// a limit may name a deployment not created yet, or a route object,
	// and in the cluster home deployments are not in this database.
	`CREATE TABLE limits (
		tenant     {{.Key}} NOT NULL,
		deployment {{.Key}} NOT NULL,
		spec       {{.JSON}} NOT NULL,
		generation {{.Int64}} NOT NULL,
		created_at {{.Time}} NOT NULL,
		updated_at {{.Time}} NOT NULL,
		PRIMARY KEY (tenant, deployment)
	);`,

	// 8: the durable async queue (queue.go): one row per request, its
	// lease, its result and its callback's delivery. Times that queries
	// compare (leases, expiry, callback schedule) are Int64 Unix
	// microseconds, which order alike in both databases (SQLite's text
	// times do not order by value). body and result_body are empty when
	// the payload is in the artifact store (body_ref, result_body_ref).
	`CREATE TABLE async_requests (
		seq                  {{.Serial}},
		id                   {{.Key}} NOT NULL UNIQUE,
		tenant               {{.Key}} NOT NULL,
		deployment           {{.Key}} NOT NULL,
		version              TEXT NOT NULL,
		priority             INTEGER NOT NULL,
		content_type         TEXT NOT NULL,
		header_length        {{.Int64}} NOT NULL,
		header               {{.JSON}} NOT NULL,
		body                 {{.Bytes}} NOT NULL,
		body_ref             TEXT NOT NULL,
		callback             TEXT NOT NULL,
		created_us           {{.Int64}} NOT NULL,
		deadline_us          {{.Int64}} NOT NULL,
		result_ttl_us        {{.Int64}} NOT NULL,
		state                TEXT NOT NULL,
		attempts             INTEGER NOT NULL,
		lease_token          TEXT NOT NULL,
		lease_until_us       {{.Int64}} NOT NULL,
		expires_us           {{.Int64}} NOT NULL,
		result_status        INTEGER NOT NULL,
		result_content_type  TEXT NOT NULL,
		result_header_length {{.Int64}} NOT NULL,
		result_body          {{.Bytes}} NOT NULL,
		result_body_ref      TEXT NOT NULL,
		completed_us         {{.Int64}} NOT NULL,
		cb_state             TEXT NOT NULL,
		cb_attempts          INTEGER NOT NULL,
		cb_token             TEXT NOT NULL,
		cb_next_us           {{.Int64}} NOT NULL,
		cb_error             TEXT NOT NULL
	);
	CREATE INDEX async_requests_claim ON async_requests (deployment, state, priority, seq);
	CREATE INDEX async_requests_pending ON async_requests (state, deployment);
	CREATE INDEX async_requests_by_tenant ON async_requests (tenant, seq);
	CREATE INDEX async_requests_expiry ON async_requests (expires_us);
	CREATE INDEX async_requests_callbacks ON async_requests (cb_state, cb_next_us);`,

	// 9: batch inference jobs (jobs.go) and the checkpoints of their
	// chunks, one row per finished chunk, keyed by (job, id) so that a
	// chunk recorded twice is recorded once. seq orders jobs by
	// submission. job_chunks.job has no foreign key: DeleteJob removes a
	// job's chunks with it, in one transaction.
	`CREATE TABLE jobs (
		seq        {{.Serial}},
		name       {{.Key}} NOT NULL UNIQUE,
		spec       {{.JSON}} NOT NULL,
		status     {{.JSON}} NOT NULL,
		generation {{.Int64}} NOT NULL,
		created_at {{.Time}} NOT NULL,
		updated_at {{.Time}} NOT NULL
	);
	CREATE TABLE job_chunks (
		job          {{.Key}} NOT NULL,
		id           {{.Key}} NOT NULL,
		chunk_index  {{.Int64}} NOT NULL,
		row_count    {{.Int64}} NOT NULL,
		skipped_rows {{.Int64}} NOT NULL,
		done_at      {{.Time}} NOT NULL,
		PRIMARY KEY (job, id)
	);`,

	// 10: claims of async requests take the highest priority first, then
	// the oldest: an index in that order, so a claim reads the first rows
	// instead of sorting every pending one (a backlog of 20,000 took 26 ms
	// a claim).
	`DROP INDEX async_requests_claim;
	CREATE INDEX async_requests_claim_order ON async_requests (deployment, state, priority DESC, seq);`,

	// 11: multi-model pools (pools.go), whose spec is a JSON column as a
	// deployment's is. The deployments that a pool hosts name it in their
	// spec, with no foreign key: a deployment may name a pool not created
	// yet, and the admin API keeps a pool that hosts models from being
	// deleted.
	`CREATE TABLE pools (
		name       {{.Key}} PRIMARY KEY,
		spec       {{.JSON}} NOT NULL,
		generation {{.Int64}} NOT NULL,
		created_at {{.Time}} NOT NULL,
		updated_at {{.Time}} NOT NULL
	);`,

	// 12: the async queue's indexes on a state hold only the rows in the
	// state their queries ask for: the pending requests of a deployment
	// in claim order (claims, depths and the bound on them), and the
	// callbacks due. A request leaves them when it completes, and one
	// without a callback never enters the second, so a request's
	// completion rewrites two index entries instead of eight, and the
	// indexes stay the size of the backlog, not of the results kept.
	// The pending index ends with state (always 'pending' there) so that
	// counting a deployment's pending requests reads the index alone.
	`DROP INDEX async_requests_claim_order;
	DROP INDEX async_requests_pending;
	DROP INDEX async_requests_callbacks;
	CREATE INDEX async_requests_pending_order ON async_requests (deployment, priority DESC, seq, state) WHERE state = 'pending';
	CREATE INDEX async_requests_callbacks_due ON async_requests (cb_next_us) WHERE cb_state = 'pending';`,
}

// schemaMigrations records the applied migrations, one row a version.
const schemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	applied_at {{.Time}} NOT NULL
)`

// renderDDL renders a migration for the dialect's columns: each {{.Kind}}
// becomes the column type cols gives that kind; an unknown kind, or "{{"
// that opens no kind, is an error. (Not text/template: executing one makes
// the linker keep every exported method of every type in the binary, in
// case a template calls it, which makes ebb's binary, and what each process
// maps of it, about a third larger.)
func renderDDL(ddl string, cols Columns) (string, error) {
	kinds := map[string]string{"Key": cols.Key, "Int64": cols.Int64, "Time": cols.Time, "OptionalTime": cols.OptionalTime,
		"JSON": cols.JSON, "Bytes": cols.Bytes, "Serial": cols.Serial}
	var b strings.Builder
	for rest := ddl; ; {
		before, after, found := strings.Cut(rest, "{{")
		b.WriteString(before)
		if !found {
			return b.String(), nil
		}
		kind, tail, ok := strings.Cut(after, "}}")
		name, dotted := strings.CutPrefix(kind, ".")
		typ, known := kinds[name]
		if !ok || !dotted || !known {
			return "", fmt.Errorf("migration DDL: %q is not a column kind: write {{.KIND}}, KIND one of %s", "{{"+kind+"}}", strings.Join(slices.Sorted(maps.Keys(kinds)), ", "))
		}
		b.WriteString(typ)
		rest = tail
	}
}

// migrate applies the migrations not yet recorded in schema_migrations, each
// in its own write transaction together with its record. The dialect's
// MigrationLock (or SQLite's write lock) makes processes that open the same
// database at once apply each migration once.
// openWrite runs fn as s.write does, again while the database reports
// itself unavailable, for up to about two seconds: several processes that
// open a new SQLite file at once race to set it up (its WAL mode), and
// SQLite answers a loser SQLITE_BUSY at once, without waiting its busy
// timeout. A database that stays unreachable fails as before.
func (s *Store) openWrite(ctx context.Context, fn func(conn) error) error {
	for attempt := 1; ; attempt++ {
		err := s.write(ctx, fn)
		if err == nil || !errors.Is(err, store.ErrUnavailable) || attempt == 40 || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(20+rand.IntN(30)) * time.Millisecond):
		}
	}
}

func (s *Store) migrate(ctx context.Context) error {
	cols := s.d.Columns()
	table, err := renderDDL(schemaMigrations, cols)
	if err != nil {
		return fmt.Errorf("render schema_migrations: %w", err)
	}
	for v := 1; v <= len(migrations); v++ {
		ddl, err := renderDDL(migrations[v-1], cols)
		if err != nil {
			return fmt.Errorf("render schema migration %d: %w", v, err)
		}
		err = s.openWrite(ctx, func(tx conn) error {
			if err := tx.lock(ctx, MigrationLock, ""); err != nil {
				return err
			}
			if _, err := tx.exec(ctx, table); err != nil {
				return fmt.Errorf("create schema_migrations: %w", err)
			}
			var current int
			if err := tx.row(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
				return err
			}
			if current > len(migrations) {
				return fmt.Errorf("database schema version %d is newer than this ebb knows (%d): upgrade ebb", current, len(migrations))
			}
			if current >= v {
				return nil // applied earlier, perhaps by another process just now
			}
			if _, err := tx.exec(ctx, ddl); err != nil {
				return err
			}
			_, err := tx.exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				v, s.time(s.now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("apply schema migration %d: %w", v, err)
		}
	}
	return nil
}
