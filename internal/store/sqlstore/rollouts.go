package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ebb-ml/ebb/internal/store"
)

// Rollouts (store.Rollout): canary and shadow rollouts of deployments,
// whose spec and state are JSON columns the store does not look into. The
// partial unique index rollouts_active keeps one rollout of each kind
// active per deployment, also against stores in other processes.
//
// Deleting a deployment leaves its rollouts, as it leaves its serving
// history: whoever deletes a deployment calls DeleteRollouts (in the
// cluster home deployments are not in this database at all).

// RolloutsListed is how many of a deployment's most recent rollouts
// ListRollouts returns, besides any older one still active.
const RolloutsListed = 50

const rolloutColumns = `id, deployment, kind, active, spec, state, revision, created_at, updated_at`

// CreateRollout stores r as a new rollout with Revision 1 and CreatedAt and
// UpdatedAt set to now; r's Revision and times are ignored. When r.ID is
// empty the store makes one: "<deployment>-<kind>-<unix nanoseconds>". An
// active r fails with an error wrapping store.ErrExists when a rollout of
// the same kind of the same deployment is active already, however many
// stores race to create one; so does an ID that is taken.
func (s *Store) CreateRollout(ctx context.Context, r store.Rollout) (store.Rollout, error) {
	if r.Deployment == "" || r.Kind == "" {
		return store.Rollout{}, errors.New("create rollout: its deployment and kind are required")
	}
	what := fmt.Sprintf("%s rollout of %q", r.Kind, r.Deployment)
	spec, state, err := rolloutJSON(r)
	if err != nil {
		return store.Rollout{}, fmt.Errorf("create %s: %w", what, err)
	}
	if r.ID == "" {
		r.ID = fmt.Sprintf("%s-%s-%d", r.Deployment, r.Kind, s.Now().UnixNano())
	}
	now := s.now()
	out := store.Rollout{ID: r.ID, Deployment: r.Deployment, Kind: r.Kind, Active: r.Active,
		Spec: nullToEmpty(r.Spec), State: nullToEmpty(r.State), Revision: 1, CreatedAt: now, UpdatedAt: now}
	// A rollout active already makes the insert do nothing; a taken ID is
	// a unique violation.
	res, err := s.exec(ctx, `INSERT INTO rollouts (`+rolloutColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (deployment, kind) WHERE active = 1 DO NOTHING`,
		out.ID, out.Deployment, out.Kind, boolInt(out.Active), spec, state, out.Revision, s.time(now), s.time(now))
	if s.d.IsUniqueViolation(err) {
		return store.Rollout{}, fmt.Errorf("create %s: rollout %q %w", what, out.ID, store.ErrExists)
	}
	if err != nil {
		return store.Rollout{}, fmt.Errorf("create %s: %w", what, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return store.Rollout{}, fmt.Errorf("create %s: %w", what, err)
	} else if n == 0 {
		return store.Rollout{}, activeExists(out.Kind, out.Deployment)
	}
	return out, nil
}

// GetRollout returns the rollout with the given ID, or an error wrapping
// store.ErrNotFound.
func (s *Store) GetRollout(ctx context.Context, id string) (store.Rollout, error) {
	r, err := getRollout(ctx, s.read(), id, "")
	if err != nil {
		return store.Rollout{}, fmt.Errorf("get rollout %q: %w", id, err)
	}
	return r, nil
}

// ActiveRollout returns the active rollout of the given kind of the
// deployment, or an error wrapping store.ErrNotFound when none is active.
func (s *Store) ActiveRollout(ctx context.Context, deployment, kind string) (store.Rollout, error) {
	r, err := scanRollout(s.read().row(ctx,
		`SELECT `+rolloutColumns+` FROM rollouts WHERE deployment = ? AND kind = ? AND active = 1`, deployment, kind))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Rollout{}, fmt.Errorf("no %s rollout of %q is active: %w", kind, deployment, store.ErrNotFound)
	}
	if err != nil {
		return store.Rollout{}, fmt.Errorf("get the active %s rollout of %q: %w", kind, deployment, err)
	}
	return r, nil
}

// ListRollouts returns the rollouts of the deployment, or of every
// deployment when deployment is "", newest first: of each deployment the
// RolloutsListed most recent, and any older one that is still active.
func (s *Store) ListRollouts(ctx context.Context, deployment string) ([]store.Rollout, error) {
	where, args := "", []any{}
	if deployment != "" {
		where, args = " WHERE deployment = ?", append(args, deployment)
	}
	out, err := list(ctx, s.read(), scanRollout,
		`SELECT `+rolloutColumns+` FROM (
			SELECT seq, `+rolloutColumns+`, row_number() OVER (PARTITION BY deployment ORDER BY seq DESC) AS n
			FROM rollouts`+where+`
		) AS recent WHERE n <= ? OR active = 1 ORDER BY seq DESC`,
		append(args, RolloutsListed)...)
	if err != nil {
		if deployment == "" {
			return nil, fmt.Errorf("list rollouts: %w", err)
		}
		return nil, fmt.Errorf("list rollouts of %q: %w", deployment, err)
	}
	return out, nil
}

// UpdateRollout reads the rollout with the given ID, passes it to fn and
// writes back what fn left, all in one transaction that holds the row, so
// concurrent updates (from this process or another) never lose each
// other's changes. fn may change Active, Spec and State: changes to
// Revision and times are ignored, and changing ID, Deployment or Kind is an
// error. For a compare-and-swap, fn compares the Revision it is given with
// the one its caller read and returns store.ErrConflict when they differ.
// When fn returns an error nothing is written and that error is returned
// unwrapped. Revision increases by one and UpdatedAt is set to now. A
// missing rollout yields an error wrapping store.ErrNotFound; making a
// rollout active while another of its kind is yields one wrapping
// store.ErrExists. fn may be called more than once, should the database
// make the transaction run again.
func (s *Store) UpdateRollout(ctx context.Context, id string, fn func(*store.Rollout) error) (store.Rollout, error) {
	var out store.Rollout
	var fnErr error
	err := s.write(ctx, func(tx conn) error {
		fnErr = nil
		old, err := getRollout(ctx, tx, id, s.rowLock(ForUpdate))
		if err != nil {
			return err
		}
		r := old
		if err := fn(&r); err != nil {
			fnErr = err
			return err
		}
		if r.ID != old.ID || r.Deployment != old.Deployment || r.Kind != old.Kind {
			return fmt.Errorf("cannot change the ID, deployment or kind of a rollout (to %q, %q, %q): create a new one",
				r.ID, r.Deployment, r.Kind)
		}
		spec, state, err := rolloutJSON(r)
		if err != nil {
			return err
		}
		out = store.Rollout{ID: old.ID, Deployment: old.Deployment, Kind: old.Kind, Active: r.Active,
			Spec: nullToEmpty(r.Spec), State: nullToEmpty(r.State), Revision: old.Revision + 1,
			CreatedAt: old.CreatedAt, UpdatedAt: s.now()}
		_, err = tx.exec(ctx, `UPDATE rollouts SET active = ?, spec = ?, state = ?, revision = ?, updated_at = ? WHERE id = ?`,
			boolInt(out.Active), spec, state, out.Revision, s.time(out.UpdatedAt), id)
		if s.d.IsUniqueViolation(err) {
			return activeExists(out.Kind, out.Deployment)
		}
		return err
	})
	if fnErr != nil {
		return store.Rollout{}, fnErr
	}
	if err != nil {
		return store.Rollout{}, fmt.Errorf("update rollout %q: %w", id, err)
	}
	return out, nil
}

// DeleteRollouts deletes every rollout of the deployment, active or not;
// a deployment with none is not an error.
func (s *Store) DeleteRollouts(ctx context.Context, deployment string) error {
	if _, err := s.exec(ctx, `DELETE FROM rollouts WHERE deployment = ?`, deployment); err != nil {
		return fmt.Errorf("delete the rollouts of %q: %w", deployment, err)
	}
	return nil
}

// activeExists is the error for a second active rollout of a kind.
func activeExists(kind, deployment string) error {
	return &existsError{fmt.Sprintf("a %s rollout of %q is already active: finish or abort it first", kind, deployment)}
}

// existsError is an error that wraps store.ErrExists with its own words.
type existsError struct{ msg string }

func (e *existsError) Error() string { return e.msg }
func (e *existsError) Unwrap() error { return store.ErrExists }

// getRollout reads one rollout; lock is appended to the query.
func getRollout(ctx context.Context, c conn, id, lock string) (store.Rollout, error) {
	r, err := scanRollout(c.row(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE id = ?`+lock, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Rollout{}, fmt.Errorf("rollout %q %w", id, store.ErrNotFound)
	}
	return r, err
}

func scanRollout(sc scanner) (store.Rollout, error) {
	var r store.Rollout
	var active int64
	var spec, state []byte
	if err := sc.Scan(&r.ID, &r.Deployment, &r.Kind, &active, &spec, &state, &r.Revision,
		timeCol(&r.CreatedAt), timeCol(&r.UpdatedAt)); err != nil {
		return store.Rollout{}, err
	}
	r.Active = active != 0
	r.Spec, r.State = nullToEmpty(spec), nullToEmpty(state)
	return r, nil
}

// rolloutJSON returns r's Spec and State as arguments for JSON columns:
// JSON null when empty, an error when not JSON.
func rolloutJSON(r store.Rollout) (spec, state string, err error) {
	doc := func(what string, raw json.RawMessage) (string, error) {
		if len(raw) == 0 {
			return "null", nil
		}
		if !json.Valid(raw) {
			return "", fmt.Errorf("the rollout's %s is not valid JSON: %.40q", what, raw)
		}
		return string(raw), nil
	}
	if spec, err = doc("spec", r.Spec); err != nil {
		return "", "", err
	}
	if state, err = doc("state", r.State); err != nil {
		return "", "", err
	}
	return spec, state, nil
}

// nullToEmpty returns raw, or nil for JSON null: what an empty Spec or
// State is stored as reads back empty.
func nullToEmpty(raw []byte) json.RawMessage {
	if t := bytes.TrimSpace(raw); len(t) == 0 || string(t) == "null" {
		return nil
	}
	return raw
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
