package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
)

// The model registry's models and versions (registry.Store) and deleting
// a whole model (registry.ModelDeleter); aliases and serving history are in
// aliases.go. A version's signature, lineage and tags are JSON columns; a
// never-used version has no last_used_at.

// CreateModel implements registry.Store.
func (s *Store) CreateModel(ctx context.Context, m registry.Model) (registry.Model, error) {
	now := s.now()
	out := registry.Model{Name: m.Name, Description: m.Description, CreatedAt: now, UpdatedAt: now}
	err := s.insert(ctx, fmt.Sprintf("model %q", m.Name),
		`INSERT INTO models (name, description, created_at, updated_at, latest_version) VALUES (?, ?, ?, ?, 0)`,
		m.Name, m.Description, s.time(now), s.time(now))
	if err != nil {
		return registry.Model{}, fmt.Errorf("create model %q: %w", m.Name, err)
	}
	return out, nil
}

// GetModel implements registry.Store.
func (s *Store) GetModel(ctx context.Context, name string) (registry.Model, error) {
	m, err := getModel(ctx, s.read(), name)
	if err != nil {
		return registry.Model{}, fmt.Errorf("get model %q: %w", name, err)
	}
	return m, nil
}

const modelColumns = `name, description, created_at, updated_at, latest_version`

func getModel(ctx context.Context, c conn, name string) (registry.Model, error) {
	m, err := scanModel(c.row(ctx, `SELECT `+modelColumns+` FROM models WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Model{}, fmt.Errorf("model %q %w", name, store.ErrNotFound)
	}
	return m, err
}

func scanModel(sc scanner) (registry.Model, error) {
	var m registry.Model
	err := sc.Scan(&m.Name, &m.Description, timeCol(&m.CreatedAt), timeCol(&m.UpdatedAt), &m.LatestVersion)
	return m, err
}

// prefixEnd returns a string greater than every string that starts with
// prefix and not greater than any other string above prefix, or "" when
// there is none. It is the prefix with its last byte increased, exact
// whatever the bytes; when that is not UTF-8 (which PostgreSQL refuses as
// a parameter) but the prefix is, it is the prefix with its last rune
// increased instead, exact for UTF-8 names.
func prefixEnd(prefix string) string {
	end := nextBytes(prefix)
	if utf8.ValidString(end) || !utf8.ValidString(prefix) {
		return end
	}
	return nextRunes(prefix)
}

func nextBytes(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

// nextRunes works as nextBytes on runes; UTF-8 orders its bytes as their
// runes.
func nextRunes(prefix string) string {
	r := []rune(prefix)
	for i := len(r) - 1; i >= 0; i-- {
		switch r[i] {
		case utf8.MaxRune:
			continue
		case 0xD7FF: // next is a surrogate, not a rune
			r[i] = 0xE000
		default:
			r[i]++
		}
		return string(r[:i+1])
	}
	return ""
}

// ListModels implements registry.Store. The prefix, cursor and limit use
// the primary key's index (byte order), so a page costs the same however
// many models there are.
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
	out, err := list(ctx, s.read(), scanModel, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return out, nil
}

// CreateVersion implements registry.Store. The number comes from bumping
// the model's latest_version in the transaction that inserts the version,
// which orders concurrent creations.
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
	err = s.write(ctx, func(tx conn) error {
		err := tx.row(ctx,
			`UPDATE models SET latest_version = latest_version + 1, updated_at = ? WHERE name = ? RETURNING latest_version`,
			s.time(now), v.Model).Scan(&out.Version)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("model %q %w", v.Model, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		_, err = tx.exec(ctx, `INSERT INTO model_versions (`+versionColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			v.Model, out.Version, v.ArtifactURI, v.SHA256, v.Size, v.Packaging, v.Entry, v.Engine,
			string(sig), string(lin), string(tags), s.time(now), v.CreatedBy, string(out.State), s.time(now),
			s.time(time.Time{}))
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
	var sig, lin, tags []byte
	var state string
	if err := sc.Scan(&v.Model, &v.Version, &v.ArtifactURI, &v.SHA256, &v.Size, &v.Packaging, &v.Entry,
		&v.Engine, &sig, &lin, &tags, timeCol(&v.CreatedAt), &v.CreatedBy, &state,
		timeCol(&v.StateChangedAt), timeCol(&v.LastUsedAt)); err != nil {
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
	return v, nil
}

// getVersion reads one version; lock is appended to the query.
func getVersion(ctx context.Context, c conn, model string, version int, lock string) (registry.Version, error) {
	v, err := scanVersion(c.row(ctx,
		`SELECT `+versionColumns+` FROM model_versions WHERE model = ? AND version = ?`+lock, model, version))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Version{}, fmt.Errorf("version %s:%d %w", model, version, store.ErrNotFound)
	}
	return v, err
}

// GetVersion implements registry.Store.
func (s *Store) GetVersion(ctx context.Context, model string, version int) (registry.Version, error) {
	v, err := getVersion(ctx, s.read(), model, version, "")
	if err != nil {
		return registry.Version{}, fmt.Errorf("get version: %w", err)
	}
	return v, nil
}

// ListVersions implements registry.Store.
func (s *Store) ListVersions(ctx context.Context, model string, opts registry.VersionListOptions) ([]registry.Version, error) {
	if _, err := getModel(ctx, s.read(), model); err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	query := `SELECT ` + versionColumns + ` FROM model_versions WHERE model = ? AND version > ? ORDER BY version`
	args := []any{model, opts.After}
	if opts.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, opts.Limit)
	}
	out, err := list(ctx, s.read(), scanVersion, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list versions of model %q: %w", model, err)
	}
	return out, nil
}

// updateVersion reads a version, holding its row, lets fn change it and
// writes back the mutable columns, in one transaction.
func (s *Store) updateVersion(ctx context.Context, model string, version int, fn func(*registry.Version) error) (registry.Version, error) {
	var out registry.Version
	err := s.write(ctx, func(tx conn) error {
		v, err := getVersion(ctx, tx, model, version, s.rowLock(ForUpdate))
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
		_, err = tx.exec(ctx, `UPDATE model_versions SET state = ?, state_changed_at = ?, last_used_at = ?, tags = ?
			WHERE model = ? AND version = ?`,
			string(v.State), s.time(v.StateChangedAt), s.time(v.LastUsedAt), string(tags), model, version)
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

// DeleteModel implements registry.ModelDeleter. In one transaction it
// deletes the model's alias history, its aliases, its versions and the
// model; serving history stays, as the history of the deployments that
// served the model's versions. The name can then be created again, with
// versions numbered from 1.
func (s *Store) DeleteModel(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx conn) error {
		if err := s.lockModel(ctx, tx, name, ForUpdate); err != nil {
			return err
		}
		// Referencing rows first: aliases name versions, versions name the
		// model.
		for _, query := range []string{
			`DELETE FROM model_alias_moves WHERE model = ?`,
			`DELETE FROM model_aliases WHERE model = ?`,
			`DELETE FROM model_versions WHERE model = ?`,
			`DELETE FROM models WHERE name = ?`,
		} {
			if _, err := tx.exec(ctx, query, name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete model %q: %w", name, err)
	}
	return nil
}
