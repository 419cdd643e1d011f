package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
)

// The model registry's records (registry.Store). Signature, lineage and
// tags are JSONB columns; a never-used version has last_used_at NULL.
//
// Concurrency: a version number comes from bumping the model row's
// latest_version in the inserting transaction; alias moves and deletions
// lock the model row first, so moves of one model's aliases happen one at a
// time and a compare-and-swap never passes on a stale read; version updates
// lock the version row; RecordServing takes a transaction-scoped advisory
// lock on the deployment's name.

var _ registry.Store = (*Store)(nil)

// servingLockClass is the first key of the advisory locks RecordServing
// takes (two-key form, a space apart from migrate's one-key lock).
const servingLockClass = 0x65626273 // "ebbs"

// CreateModel implements registry.Store.
func (s *Store) CreateModel(ctx context.Context, m registry.Model) (registry.Model, error) {
	now := s.now()
	out := registry.Model{Name: m.Name, Description: m.Description, CreatedAt: now, UpdatedAt: now}
	tag, err := s.pool.Exec(ctx,
		`INSERT INTO models (name, description, created_at, updated_at, latest_version) VALUES ($1, $2, $3, $3, 0)
		 ON CONFLICT (name) DO NOTHING`,
		m.Name, m.Description, now)
	if err == nil && tag.RowsAffected() == 0 {
		err = fmt.Errorf("model %q %w", m.Name, store.ErrExists)
	}
	if err != nil {
		return registry.Model{}, fmt.Errorf("create model %q: %w", m.Name, err)
	}
	return out, nil
}

// GetModel implements registry.Store.
func (s *Store) GetModel(ctx context.Context, name string) (registry.Model, error) {
	m, err := getModel(ctx, s.pool, name, "")
	if err != nil {
		return registry.Model{}, fmt.Errorf("get model %q: %w", name, err)
	}
	return m, nil
}

const modelColumns = `name, description, created_at, updated_at, latest_version`

// getModel reads one model; lock is appended to the query.
func getModel(ctx context.Context, q querier, name, lock string) (registry.Model, error) {
	m, err := scanModel(q.QueryRow(ctx, `SELECT `+modelColumns+` FROM models WHERE name = $1 `+lock, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return registry.Model{}, fmt.Errorf("model %q %w", name, store.ErrNotFound)
	}
	return m, err
}

func scanModel(row pgx.Row) (registry.Model, error) {
	var m registry.Model
	if err := row.Scan(&m.Name, &m.Description, &m.CreatedAt, &m.UpdatedAt, &m.LatestVersion); err != nil {
		return registry.Model{}, err
	}
	m.CreatedAt, m.UpdatedAt = m.CreatedAt.UTC(), m.UpdatedAt.UTC()
	return m, nil
}

// prefixEnd returns the least string greater than every string that starts
// with prefix, or "" when there is none or it is not valid UTF-8 (which
// PostgreSQL refuses as a parameter).
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			if end := string(b[:i+1]); utf8.ValidString(end) {
				return end
			}
			return ""
		}
	}
	return ""
}

// ListModels implements registry.Store. The prefix, cursor and limit use
// the primary key's index (byte order, collation "C"), so a page costs the
// same however many models there are.
func (s *Store) ListModels(ctx context.Context, opts registry.ListOptions) ([]registry.Model, error) {
	query := `SELECT ` + modelColumns + ` FROM models WHERE name > $1`
	args := []any{opts.After}
	if opts.Prefix != "" {
		args = append(args, opts.Prefix)
		query += fmt.Sprintf(` AND name >= $%d AND starts_with(name, $%[1]d)`, len(args))
		if end := prefixEnd(opts.Prefix); end != "" {
			args = append(args, end)
			query += fmt.Sprintf(` AND name < $%d`, len(args))
		}
	}
	query += ` ORDER BY name`
	if opts.Limit > 0 {
		args = append(args, opts.Limit)
		query += fmt.Sprintf(` LIMIT $%d`, len(args))
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	out, err := collect(rows, scanModel)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return out, nil
}

// collect scans every row with scan; it returns an empty, non-nil slice
// when there are none.
func collect[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// CreateVersion implements registry.Store. The number comes from bumping
// the model's latest_version in the transaction that inserts the version;
// the row lock that takes orders concurrent creations.
func (s *Store) CreateVersion(ctx context.Context, v registry.Version) (registry.Version, error) {
	sig, err := json.Marshal(v.Signature)
	if err != nil {
		return registry.Version{}, fmt.Errorf("create version of model %q: encode signature: %w", v.Model, err)
	}
	lin, err := json.Marshal(v.Lineage)
	if err != nil {
		return registry.Version{}, fmt.Errorf("create version of model %q: encode lineage: %w", v.Model, err)
	}
	tags, err := json.Marshal(v.Tags)
	if err != nil {
		return registry.Version{}, fmt.Errorf("create version of model %q: encode tags: %w", v.Model, err)
	}
	now := s.now()
	out := v
	out.CreatedAt, out.StateChangedAt, out.LastUsedAt = now, now, time.Time{}
	out.State = registry.StateActive
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`UPDATE models SET latest_version = latest_version + 1, updated_at = $1 WHERE name = $2 RETURNING latest_version`,
			now, v.Model).Scan(&out.Version)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("model %q %w", v.Model, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO model_versions (model, version, artifact_uri, sha256, size,
			packaging, entry, engine, signature, lineage, tags, created_at, created_by, state, state_changed_at, last_used_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $12, NULL)`,
			v.Model, out.Version, v.ArtifactURI, v.SHA256, v.Size, v.Packaging, v.Entry, v.Engine,
			sig, lin, tags, now, v.CreatedBy, string(out.State))
		return err
	})
	if err != nil {
		return registry.Version{}, fmt.Errorf("create version of model %q: %w", v.Model, err)
	}
	return out, nil
}

const versionColumns = `model, version, artifact_uri, sha256, size, packaging, entry, engine, signature,
	lineage, tags, created_at, created_by, state, state_changed_at, last_used_at`

func scanVersion(row pgx.Row) (registry.Version, error) {
	var v registry.Version
	var sig, lin, tags []byte
	var state string
	var used *time.Time
	if err := row.Scan(&v.Model, &v.Version, &v.ArtifactURI, &v.SHA256, &v.Size, &v.Packaging, &v.Entry,
		&v.Engine, &sig, &lin, &tags, &v.CreatedAt, &v.CreatedBy, &state, &v.StateChangedAt, &used); err != nil {
		return registry.Version{}, err
	}
	v.State = registry.State(state)
	if err := json.Unmarshal(sig, &v.Signature); err != nil {
		return registry.Version{}, fmt.Errorf("decode signature of %s:%d: %w", v.Model, v.Version, err)
	}
	if err := json.Unmarshal(lin, &v.Lineage); err != nil {
		return registry.Version{}, fmt.Errorf("decode lineage of %s:%d: %w", v.Model, v.Version, err)
	}
	if err := json.Unmarshal(tags, &v.Tags); err != nil {
		return registry.Version{}, fmt.Errorf("decode tags of %s:%d: %w", v.Model, v.Version, err)
	}
	v.CreatedAt, v.StateChangedAt = v.CreatedAt.UTC(), v.StateChangedAt.UTC()
	if used != nil {
		v.LastUsedAt = used.UTC()
	}
	return v, nil
}

// getVersion reads one version; lock is appended to the query.
func getVersion(ctx context.Context, q querier, model string, version int, lock string) (registry.Version, error) {
	v, err := scanVersion(q.QueryRow(ctx,
		`SELECT `+versionColumns+` FROM model_versions WHERE model = $1 AND version = $2 `+lock, model, version))
	if errors.Is(err, pgx.ErrNoRows) {
		return registry.Version{}, fmt.Errorf("version %s:%d %w", model, version, store.ErrNotFound)
	}
	return v, err
}

// GetVersion implements registry.Store.
func (s *Store) GetVersion(ctx context.Context, model string, version int) (registry.Version, error) {
	v, err := getVersion(ctx, s.pool, model, version, "")
	if err != nil {
		return registry.Version{}, fmt.Errorf("get version: %w", err)
	}
	return v, nil
}

// ListVersions implements registry.Store.
func (s *Store) ListVersions(ctx context.Context, model string, opts registry.VersionListOptions) ([]registry.Version, error) {
	if _, err := getModel(ctx, s.pool, model, ""); err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	query := `SELECT ` + versionColumns + ` FROM model_versions WHERE model = $1 AND version > $2 ORDER BY version`
	args := []any{model, opts.After}
	if opts.Limit > 0 {
		query += ` LIMIT $3`
		args = append(args, opts.Limit)
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list versions of model %q: %w", model, err)
	}
	out, err := collect(rows, scanVersion)
	if err != nil {
		return nil, fmt.Errorf("list versions of model %q: %w", model, err)
	}
	return out, nil
}

// updateVersion reads a version with its row locked, lets fn change it and
// writes back the mutable columns, in one transaction.
func (s *Store) updateVersion(ctx context.Context, model string, version int, fn func(*registry.Version) error) (registry.Version, error) {
	var out registry.Version
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		v, err := getVersion(ctx, tx, model, version, "FOR UPDATE")
		if err != nil {
			return err
		}
		if err := fn(&v); err != nil {
			return err
		}
		tags, err := json.Marshal(v.Tags)
		if err != nil {
			return err
		}
		var used *time.Time
		if !v.LastUsedAt.IsZero() {
			used = &v.LastUsedAt
		}
		_, err = tx.Exec(ctx, `UPDATE model_versions SET state = $1, state_changed_at = $2, last_used_at = $3, tags = $4
			WHERE model = $5 AND version = $6`,
			string(v.State), v.StateChangedAt, used, tags, model, version)
		out = v
		return err
	})
	return out, err
}

// SetVersionState implements registry.Store.
func (s *Store) SetVersionState(ctx context.Context, model string, version int, from, to registry.State, at time.Time) (registry.Version, error) {
	v, err := s.updateVersion(ctx, model, version, func(v *registry.Version) error {
		return registry.ChangeState(v, from, to, at)
	})
	if err != nil {
		return registry.Version{}, fmt.Errorf("set state of version %s:%d to %s: %w", model, version, to, err)
	}
	return v, nil
}

// TouchVersion implements registry.Store.
func (s *Store) TouchVersion(ctx context.Context, model string, version int, at time.Time) error {
	_, err := s.updateVersion(ctx, model, version, func(v *registry.Version) error {
		registry.Touch(v, at)
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch version %s:%d: %w", model, version, err)
	}
	return nil
}

// UpdateVersionTags implements registry.Store.
func (s *Store) UpdateVersionTags(ctx context.Context, model string, version int, set map[string]string, del []string) (registry.Version, error) {
	v, err := s.updateVersion(ctx, model, version, func(v *registry.Version) error {
		registry.ChangeTags(v, set, del)
		return nil
	})
	if err != nil {
		return registry.Version{}, fmt.Errorf("update tags of version %s:%d: %w", model, version, err)
	}
	return v, nil
}

// lockModel locks the model's row for the rest of tx, serialising alias
// changes of the model; ErrNotFound when the model does not exist.
func lockModel(ctx context.Context, tx pgx.Tx, model string) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM models WHERE name = $1 FOR NO KEY UPDATE`, model).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("model %q %w", model, store.ErrNotFound)
	}
	return err
}

// currentAlias returns an alias (zero when it does not exist).
func currentAlias(ctx context.Context, tx pgx.Tx, model, alias string) (registry.Alias, error) {
	a, err := scanAlias(tx.QueryRow(ctx,
		`SELECT model, name, version, updated_at, updated_by FROM model_aliases WHERE model = $1 AND name = $2`, model, alias))
	if errors.Is(err, pgx.ErrNoRows) {
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

func insertMove(ctx context.Context, tx pgx.Tx, m registry.AliasMove) error {
	_, err := tx.Exec(ctx, `INSERT INTO model_alias_moves (model, alias, from_version, to_version, moved_by, moved_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, m.Model, m.Alias, m.From, m.To, m.By, m.At)
	return err
}

// SetAlias implements registry.Store.
func (s *Store) SetAlias(ctx context.Context, model, alias string, to, expectFrom int, by string) (registry.AliasMove, error) {
	move := registry.AliasMove{Model: model, Alias: alias, To: to, By: by, At: s.now()}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockModel(ctx, tx, model); err != nil {
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
		if _, err := tx.Exec(ctx, `INSERT INTO model_aliases (model, name, version, updated_at, updated_by)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model, name) DO UPDATE SET
			version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
			model, alias, to, move.At, by); err != nil {
			return err
		}
		return insertMove(ctx, tx, move)
	})
	if err != nil {
		return registry.AliasMove{}, fmt.Errorf("set alias %s@%s to version %d: %w", model, alias, to, err)
	}
	return move, nil
}

// GetAlias implements registry.Store.
func (s *Store) GetAlias(ctx context.Context, model, alias string) (registry.Alias, error) {
	a, err := scanAlias(s.pool.QueryRow(ctx,
		`SELECT model, name, version, updated_at, updated_by FROM model_aliases WHERE model = $1 AND name = $2`, model, alias))
	if errors.Is(err, pgx.ErrNoRows) {
		err = fmt.Errorf("alias %s@%s %w", model, alias, store.ErrNotFound)
	}
	if err != nil {
		return registry.Alias{}, fmt.Errorf("get alias: %w", err)
	}
	return a, nil
}

func scanAlias(row pgx.Row) (registry.Alias, error) {
	var a registry.Alias
	if err := row.Scan(&a.Model, &a.Name, &a.Version, &a.UpdatedAt, &a.UpdatedBy); err != nil {
		return registry.Alias{}, err
	}
	a.UpdatedAt = a.UpdatedAt.UTC()
	return a, nil
}

// ListAliases implements registry.Store.
func (s *Store) ListAliases(ctx context.Context, model string) ([]registry.Alias, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT model, name, version, updated_at, updated_by FROM model_aliases WHERE model = $1 ORDER BY name`, model)
	if err != nil {
		return nil, fmt.Errorf("list aliases of model %q: %w", model, err)
	}
	out, err := collect(rows, scanAlias)
	if err != nil {
		return nil, fmt.Errorf("list aliases of model %q: %w", model, err)
	}
	return out, nil
}

// DeleteAlias implements registry.Store.
func (s *Store) DeleteAlias(ctx context.Context, model, alias string, expectFrom int, by string) (registry.AliasMove, error) {
	move := registry.AliasMove{Model: model, Alias: alias, By: by, At: s.now()}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockModel(ctx, tx, model); errors.Is(err, store.ErrNotFound) {
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
		if _, err := tx.Exec(ctx, `DELETE FROM model_aliases WHERE model = $1 AND name = $2`, model, alias); err != nil {
			return err
		}
		return insertMove(ctx, tx, move)
	})
	if err != nil {
		return registry.AliasMove{}, fmt.Errorf("delete alias %s@%s: %w", model, alias, err)
	}
	return move, nil
}

// AliasHistory implements registry.Store.
func (s *Store) AliasHistory(ctx context.Context, model, alias string) ([]registry.AliasMove, error) {
	rows, err := s.pool.Query(ctx, `SELECT model, alias, from_version, to_version, moved_by, moved_at
		FROM model_alias_moves WHERE model = $1 AND alias = $2 ORDER BY id`, model, alias)
	if err != nil {
		return nil, fmt.Errorf("history of alias %s@%s: %w", model, alias, err)
	}
	out, err := collect(rows, func(row pgx.Row) (registry.AliasMove, error) {
		var m registry.AliasMove
		err := row.Scan(&m.Model, &m.Alias, &m.From, &m.To, &m.By, &m.At)
		m.At = m.At.UTC()
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("history of alias %s@%s: %w", model, alias, err)
	}
	return out, nil
}

// RecordServing implements registry.Store.
func (s *Store) RecordServing(ctx context.Context, deployment, model string, version int, at time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, int32(servingLockClass), deployment); err != nil {
			return err
		}
		var lastModel string
		var lastVersion int
		err := tx.QueryRow(ctx, `SELECT model, version FROM serving_history WHERE deployment = $1
			ORDER BY id DESC LIMIT 1`, deployment).Scan(&lastModel, &lastVersion)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err == nil && lastModel == model && lastVersion == version {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO serving_history (deployment, model, version, served_at) VALUES ($1, $2, $3, $4)`,
			deployment, model, version, at.UTC().Truncate(time.Microsecond))
		return err
	})
	if err != nil {
		return fmt.Errorf("record that deployment %q serves %s:%d: %w", deployment, model, version, err)
	}
	return nil
}

// ServingHistory implements registry.Store.
func (s *Store) ServingHistory(ctx context.Context, deployment string) ([]registry.ServingRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT deployment, model, version, served_at FROM serving_history
		WHERE deployment = $1 ORDER BY id`, deployment)
	if err != nil {
		return nil, fmt.Errorf("serving history of deployment %q: %w", deployment, err)
	}
	out, err := collect(rows, func(row pgx.Row) (registry.ServingRecord, error) {
		var r registry.ServingRecord
		err := row.Scan(&r.Deployment, &r.Model, &r.Version, &r.At)
		r.At = r.At.UTC()
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("serving history of deployment %q: %w", deployment, err)
	}
	return out, nil
}
