package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
)

// The model registry's records (registry.Store). Signature, lineage and
// tags are JSON columns; a never-used version has last_used_at ''.

var _ registry.Store = (*Store)(nil)

// CreateModel implements registry.Store.
func (s *Store) CreateModel(ctx context.Context, m registry.Model) (registry.Model, error) {
	now := s.now()
	out := registry.Model{Name: m.Name, Description: m.Description, CreatedAt: now, UpdatedAt: now}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM models WHERE name = ?`, m.Name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("model %q %w", m.Name, store.ErrExists)
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO models (name, description, created_at, updated_at, latest_version) VALUES (?, ?, ?, ?, 0)`,
			m.Name, m.Description, formatTime(now), formatTime(now))
		return err
	})
	if err != nil {
		return registry.Model{}, fmt.Errorf("create model %q: %w", m.Name, err)
	}
	return out, nil
}

// GetModel implements registry.Store.
func (s *Store) GetModel(ctx context.Context, name string) (registry.Model, error) {
	m, err := getModel(ctx, s.db, name)
	if err != nil {
		return registry.Model{}, fmt.Errorf("get model %q: %w", name, err)
	}
	return m, nil
}

const modelColumns = `name, description, created_at, updated_at, latest_version`

func getModel(ctx context.Context, q querier, name string) (registry.Model, error) {
	m, err := scanModel(q.QueryRowContext(ctx, `SELECT `+modelColumns+` FROM models WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Model{}, fmt.Errorf("model %q %w", name, store.ErrNotFound)
	}
	return m, err
}

func scanModel(sc scanner) (registry.Model, error) {
	var m registry.Model
	var created, updated string
	if err := sc.Scan(&m.Name, &m.Description, &created, &updated, &m.LatestVersion); err != nil {
		return registry.Model{}, err
	}
	var err error
	if m.CreatedAt, err = parseTime(created); err != nil {
		return registry.Model{}, err
	}
	if m.UpdatedAt, err = parseTime(updated); err != nil {
		return registry.Model{}, err
	}
	return m, nil
}

// prefixEnd returns the least string greater than every string that starts
// with prefix, or "" when there is none.
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

// ListModels implements registry.Store. It uses the primary key's index for
// the prefix, cursor and limit, so a page costs the same however many
// models there are.
func (s *Store) ListModels(ctx context.Context, opts registry.ListOptions) ([]registry.Model, error) {
	query := `SELECT ` + modelColumns + ` FROM models WHERE name > ?`
	args := []any{opts.After}
	if opts.Prefix != "" {
		query += ` AND name >= ?`
		args = append(args, opts.Prefix)
		if end := prefixEnd(opts.Prefix); end != "" {
			query += ` AND name < ?`
			args = append(args, end)
		}
	}
	query += ` ORDER BY name`
	if opts.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, opts.Limit)
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	defer rows.Close()
	out := []registry.Model{}
	for rows.Next() {
		m, err := scanModel(rows)
		if err != nil {
			return nil, fmt.Errorf("list models: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return out, nil
}

// CreateVersion implements registry.Store. The number comes from the
// model's latest_version, read and bumped in the same write transaction.
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
	err = s.tx(ctx, func(tx *sql.Tx) error {
		m, err := getModel(ctx, tx, v.Model)
		if err != nil {
			return err
		}
		out.Version = m.LatestVersion + 1
		if _, err := tx.ExecContext(ctx, `UPDATE models SET latest_version = ?, updated_at = ? WHERE name = ?`,
			out.Version, formatTime(now), v.Model); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO model_versions (model, version, artifact_uri, sha256, size,
			packaging, entry, engine, signature, lineage, tags, created_at, created_by, state, state_changed_at, last_used_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '')`,
			v.Model, out.Version, v.ArtifactURI, v.SHA256, v.Size, v.Packaging, v.Entry, v.Engine,
			string(sig), string(lin), string(tags), formatTime(now), v.CreatedBy, string(out.State), formatTime(now))
		return err
	})
	if err != nil {
		return registry.Version{}, fmt.Errorf("create version of model %q: %w", v.Model, err)
	}
	return out, nil
}

const versionColumns = `model, version, artifact_uri, sha256, size, packaging, entry, engine, signature,
	lineage, tags, created_at, created_by, state, state_changed_at, last_used_at`

func scanVersion(sc scanner) (registry.Version, error) {
	var v registry.Version
	var sig, lin, tags, created, state, changed, used string
	if err := sc.Scan(&v.Model, &v.Version, &v.ArtifactURI, &v.SHA256, &v.Size, &v.Packaging, &v.Entry,
		&v.Engine, &sig, &lin, &tags, &created, &v.CreatedBy, &state, &changed, &used); err != nil {
		return registry.Version{}, err
	}
	v.State = registry.State(state)
	if err := json.Unmarshal([]byte(sig), &v.Signature); err != nil {
		return registry.Version{}, fmt.Errorf("decode signature of %s:%d: %w", v.Model, v.Version, err)
	}
	if err := json.Unmarshal([]byte(lin), &v.Lineage); err != nil {
		return registry.Version{}, fmt.Errorf("decode lineage of %s:%d: %w", v.Model, v.Version, err)
	}
	if err := json.Unmarshal([]byte(tags), &v.Tags); err != nil {
		return registry.Version{}, fmt.Errorf("decode tags of %s:%d: %w", v.Model, v.Version, err)
	}
	var err error
	if v.CreatedAt, err = parseTime(created); err != nil {
		return registry.Version{}, err
	}
	if v.StateChangedAt, err = parseTime(changed); err != nil {
		return registry.Version{}, err
	}
	if used != "" {
		if v.LastUsedAt, err = parseTime(used); err != nil {
			return registry.Version{}, err
		}
	}
	return v, nil
}

func getVersion(ctx context.Context, q querier, model string, version int) (registry.Version, error) {
	v, err := scanVersion(q.QueryRowContext(ctx,
		`SELECT `+versionColumns+` FROM model_versions WHERE model = ? AND version = ?`, model, version))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Version{}, fmt.Errorf("version %s:%d %w", model, version, store.ErrNotFound)
	}
	return v, err
}

// GetVersion implements registry.Store.
func (s *Store) GetVersion(ctx context.Context, model string, version int) (registry.Version, error) {
	v, err := getVersion(ctx, s.db, model, version)
	if err != nil {
		return registry.Version{}, fmt.Errorf("get version: %w", err)
	}
	return v, nil
}

// ListVersions implements registry.Store.
func (s *Store) ListVersions(ctx context.Context, model string, opts registry.VersionListOptions) ([]registry.Version, error) {
	if _, err := getModel(ctx, s.db, model); err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	query := `SELECT ` + versionColumns + ` FROM model_versions WHERE model = ? AND version > ? ORDER BY version`
	args := []any{model, opts.After}
	if opts.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, opts.Limit)
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list versions of model %q: %w", model, err)
	}
	defer rows.Close()
	out := []registry.Version{}
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			return nil, fmt.Errorf("list versions of model %q: %w", model, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list versions of model %q: %w", model, err)
	}
	return out, nil
}

// updateVersion reads a version, lets fn change it and writes back the
// mutable columns, in one transaction.
func (s *Store) updateVersion(ctx context.Context, model string, version int, fn func(*registry.Version) error) (registry.Version, error) {
	var out registry.Version
	err := s.tx(ctx, func(tx *sql.Tx) error {
		v, err := getVersion(ctx, tx, model, version)
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
		used := ""
		if !v.LastUsedAt.IsZero() {
			used = formatTime(v.LastUsedAt)
		}
		_, err = tx.ExecContext(ctx, `UPDATE model_versions SET state = ?, state_changed_at = ?, last_used_at = ?, tags = ?
			WHERE model = ? AND version = ?`,
			string(v.State), formatTime(v.StateChangedAt), used, string(tags), model, version)
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

// currentAlias returns the version an alias points at, 0 when it does not
// exist.
func currentAlias(ctx context.Context, tx *sql.Tx, model, alias string) (int, error) {
	var cur int
	err := tx.QueryRowContext(ctx, `SELECT version FROM model_aliases WHERE model = ? AND name = ?`, model, alias).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return cur, err
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

func insertMove(ctx context.Context, tx *sql.Tx, m registry.AliasMove) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO model_alias_moves (model, alias, from_version, to_version, moved_by, moved_at)
		VALUES (?, ?, ?, ?, ?, ?)`, m.Model, m.Alias, m.From, m.To, m.By, formatTime(m.At))
	return err
}

// SetAlias implements registry.Store.
func (s *Store) SetAlias(ctx context.Context, model, alias string, to, expectFrom int, by string) (registry.AliasMove, error) {
	move := registry.AliasMove{Model: model, Alias: alias, To: to, By: by, At: s.now()}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := getVersion(ctx, tx, model, to); err != nil {
			if _, merr := getModel(ctx, tx, model); merr != nil {
				return merr
			}
			return err
		}
		cur, err := currentAlias(ctx, tx, model, alias)
		if err != nil {
			return err
		}
		if err := checkExpected(model, alias, cur, expectFrom); err != nil {
			return err
		}
		move.From = cur
		if cur == to {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO model_aliases (model, name, version, updated_at, updated_by)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, name) DO UPDATE SET
			version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
			model, alias, to, formatTime(move.At), by); err != nil {
			return err
		}
		return insertMove(ctx, tx, move)
	})
	if err != nil {
		return registry.AliasMove{}, fmt.Errorf("set alias %s@%s to version %d: %w", model, alias, to, err)
	}
	if move.From == move.To {
		if a, err := s.GetAlias(ctx, model, alias); err == nil {
			move.At, move.By = a.UpdatedAt, a.UpdatedBy
		}
	}
	return move, nil
}

// GetAlias implements registry.Store.
func (s *Store) GetAlias(ctx context.Context, model, alias string) (registry.Alias, error) {
	a, err := scanAlias(s.db.QueryRowContext(ctx,
		`SELECT model, name, version, updated_at, updated_by FROM model_aliases WHERE model = ? AND name = ?`, model, alias))
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("alias %s@%s %w", model, alias, store.ErrNotFound)
	}
	if err != nil {
		return registry.Alias{}, fmt.Errorf("get alias: %w", err)
	}
	return a, nil
}

func scanAlias(sc scanner) (registry.Alias, error) {
	var a registry.Alias
	var updated string
	if err := sc.Scan(&a.Model, &a.Name, &a.Version, &updated, &a.UpdatedBy); err != nil {
		return registry.Alias{}, err
	}
	var err error
	a.UpdatedAt, err = parseTime(updated)
	return a, err
}

// ListAliases implements registry.Store.
func (s *Store) ListAliases(ctx context.Context, model string) ([]registry.Alias, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT model, name, version, updated_at, updated_by FROM model_aliases WHERE model = ? ORDER BY name`, model)
	if err != nil {
		return nil, fmt.Errorf("list aliases of model %q: %w", model, err)
	}
	defer rows.Close()
	out := []registry.Alias{}
	for rows.Next() {
		a, err := scanAlias(rows)
		if err != nil {
			return nil, fmt.Errorf("list aliases of model %q: %w", model, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list aliases of model %q: %w", model, err)
	}
	return out, nil
}

// DeleteAlias implements registry.Store.
func (s *Store) DeleteAlias(ctx context.Context, model, alias string, expectFrom int, by string) (registry.AliasMove, error) {
	move := registry.AliasMove{Model: model, Alias: alias, By: by, At: s.now()}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		cur, err := currentAlias(ctx, tx, model, alias)
		if err != nil {
			return err
		}
		if cur == 0 {
			return fmt.Errorf("alias %s@%s %w", model, alias, store.ErrNotFound)
		}
		if err := checkExpected(model, alias, cur, expectFrom); err != nil {
			return err
		}
		move.From = cur
		if _, err := tx.ExecContext(ctx, `DELETE FROM model_aliases WHERE model = ? AND name = ?`, model, alias); err != nil {
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
	rows, err := s.db.QueryContext(ctx, `SELECT model, alias, from_version, to_version, moved_by, moved_at
		FROM model_alias_moves WHERE model = ? AND alias = ? ORDER BY id`, model, alias)
	if err != nil {
		return nil, fmt.Errorf("history of alias %s@%s: %w", model, alias, err)
	}
	defer rows.Close()
	out := []registry.AliasMove{}
	for rows.Next() {
		var m registry.AliasMove
		var at string
		if err := rows.Scan(&m.Model, &m.Alias, &m.From, &m.To, &m.By, &at); err != nil {
			return nil, fmt.Errorf("history of alias %s@%s: %w", model, alias, err)
		}
		if m.At, err = parseTime(at); err != nil {
			return nil, fmt.Errorf("history of alias %s@%s: %w", model, alias, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history of alias %s@%s: %w", model, alias, err)
	}
	return out, nil
}

// RecordServing implements registry.Store.
func (s *Store) RecordServing(ctx context.Context, deployment, model string, version int, at time.Time) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var lastModel string
		var lastVersion int
		err := tx.QueryRowContext(ctx, `SELECT model, version FROM serving_history WHERE deployment = ?
			ORDER BY id DESC LIMIT 1`, deployment).Scan(&lastModel, &lastVersion)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err == nil && lastModel == model && lastVersion == version {
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO serving_history (deployment, model, version, served_at) VALUES (?, ?, ?, ?)`,
			deployment, model, version, formatTime(at.UTC().Truncate(time.Microsecond)))
		return err
	})
	if err != nil {
		return fmt.Errorf("record that deployment %q serves %s:%d: %w", deployment, model, version, err)
	}
	return nil
}

// ServingHistory implements registry.Store.
func (s *Store) ServingHistory(ctx context.Context, deployment string) ([]registry.ServingRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT deployment, model, version, served_at FROM serving_history
		WHERE deployment = ? ORDER BY id`, deployment)
	if err != nil {
		return nil, fmt.Errorf("serving history of deployment %q: %w", deployment, err)
	}
	defer rows.Close()
	out := []registry.ServingRecord{}
	for rows.Next() {
		var r registry.ServingRecord
		var at string
		if err := rows.Scan(&r.Deployment, &r.Model, &r.Version, &at); err != nil {
			return nil, fmt.Errorf("serving history of deployment %q: %w", deployment, err)
		}
		if r.At, err = parseTime(at); err != nil {
			return nil, fmt.Errorf("serving history of deployment %q: %w", deployment, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("serving history of deployment %q: %w", deployment, err)
	}
	return out, nil
}
