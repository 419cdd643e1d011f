package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Deployments and replica handles (store/storetest's Store). A
// deployment's spec and a replica's handle are JSON columns.

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
	err = s.insert(ctx, fmt.Sprintf("deployment %q", d.Name),
		`INSERT INTO deployments (name, spec, generation, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
		d.Name, string(spec), out.Generation, s.time(now), s.time(now))
	if err != nil {
		return serving.Deployment{}, fmt.Errorf("create deployment %q: %w", d.Name, err)
	}
	return out, nil
}

// GetDeployment returns the named deployment with a zero Status, or an error
// wrapping store.ErrNotFound.
func (s *Store) GetDeployment(ctx context.Context, name string) (serving.Deployment, error) {
	d, err := getDeployment(ctx, s.read(), name, "")
	if err != nil {
		return serving.Deployment{}, fmt.Errorf("get deployment %q: %w", name, err)
	}
	return d, nil
}

// ListDeployments returns every deployment sorted by name, each with a zero
// Status.
func (s *Store) ListDeployments(ctx context.Context) ([]serving.Deployment, error) {
	out, err := list(ctx, s.read(), scanDeployment,
		`SELECT `+deploymentColumns+` FROM deployments ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return out, nil
}

// DeploymentsStamp returns a value that changes whenever a deployment is
// created, changed or deleted: their count, their generations summed and
// their newest update, read without their specs. A loop that lists every
// deployment now and then (ebb up's drift monitor and prediction log)
// lists again only when it moved, which with thousands of deployments
// saves decoding them all every few seconds.
func (s *Store) DeploymentsStamp(ctx context.Context) (string, error) {
	var n, gens int64
	var newest time.Time
	err := s.read().row(ctx, `SELECT COUNT(*), COALESCE(SUM(generation), 0), MAX(updated_at) FROM deployments`).
		Scan(&n, &gens, timeCol(&newest))
	if err != nil {
		return "", fmt.Errorf("read the deployments' stamp: %w", err)
	}
	return fmt.Sprintf("%d/%d/%d", n, gens, newest.UnixNano()), nil
}

// UpdateDeployment reads the named deployment, passes it to fn and writes
// back what fn left, all in one transaction that holds the row, so
// concurrent updates (from this process or another) never lose each
// other's changes. fn may change Spec only: changes to Generation, times
// and Status are ignored, and changing Name is an error. When fn returns an
// error nothing is written and that error is returned unwrapped.
// Generation increases by one when Spec changed; UpdatedAt is set to now.
// A missing deployment yields an error wrapping store.ErrNotFound. fn may
// be called more than once, should the database make the transaction run
// again.
func (s *Store) UpdateDeployment(ctx context.Context, name string, fn func(*serving.Deployment) error) (serving.Deployment, error) {
	var out serving.Deployment
	var fnErr error
	err := s.write(ctx, func(tx conn) error {
		old, err := getDeployment(ctx, tx, name, s.rowLock(ForUpdate))
		if err != nil {
			return err
		}
		var newSpec []byte
		out, newSpec, fnErr, err = store.ApplyUpdate(old, fn, s.now())
		if err != nil {
			return err
		}
		_, err = tx.exec(ctx,
			`UPDATE deployments SET spec = ?, generation = ?, updated_at = ? WHERE name = ?`,
			string(newSpec), out.Generation, s.time(out.UpdatedAt), name)
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
	err := s.write(ctx, func(tx conn) error {
		res, err := tx.exec(ctx, `DELETE FROM deployments WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("deployment %q %w", name, store.ErrNotFound)
		}
		_, err = tx.exec(ctx, `DELETE FROM replicas WHERE deployment = ?`, name)
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
	_, err = s.exec(ctx,
		`INSERT INTO replicas (id, deployment, handle) VALUES (?, ?, ?)
		 ON CONFLICT (id) DO UPDATE SET deployment = excluded.deployment, handle = excluded.handle`,
		h.Spec.ID, h.Spec.Deployment, string(b))
	if err != nil {
		return fmt.Errorf("put replica %q: %w", h.Spec.ID, err)
	}
	return nil
}

// DeleteReplica deletes the replica record with the given ID; deleting a
// missing record is not an error.
func (s *Store) DeleteReplica(ctx context.Context, id string) error {
	if _, err := s.exec(ctx, `DELETE FROM replicas WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete replica %q: %w", id, err)
	}
	return nil
}

// ListReplicas returns every recorded replica handle, sorted by ID.
func (s *Store) ListReplicas(ctx context.Context) ([]replica.Handle, error) {
	out, err := list(ctx, s.read(), func(sc scanner) (replica.Handle, error) {
		var id string
		var raw []byte
		if err := sc.Scan(&id, &raw); err != nil {
			return replica.Handle{}, err
		}
		var h replica.Handle
		if err := json.Unmarshal(raw, &h); err != nil {
			return replica.Handle{}, fmt.Errorf("decode replica %q: %w", id, err)
		}
		return h, nil
	}, `SELECT id, handle FROM replicas ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	return out, nil
}

const deploymentColumns = `name, spec, generation, created_at, updated_at`

// getDeployment reads one deployment; lock is appended to the query.
func getDeployment(ctx context.Context, c conn, name, lock string) (serving.Deployment, error) {
	d, err := scanDeployment(c.row(ctx, `SELECT `+deploymentColumns+` FROM deployments WHERE name = ?`+lock, name))
	if errors.Is(err, sql.ErrNoRows) {
		return serving.Deployment{}, fmt.Errorf("deployment %q %w", name, store.ErrNotFound)
	}
	return d, err
}

func scanDeployment(sc scanner) (serving.Deployment, error) {
	var d serving.Deployment
	var spec []byte
	if err := sc.Scan(&d.Name, &spec, &d.Generation, timeCol(&d.CreatedAt), timeCol(&d.UpdatedAt)); err != nil {
		return serving.Deployment{}, err
	}
	if err := json.Unmarshal(spec, &d.Spec); err != nil {
		return serving.Deployment{}, fmt.Errorf("decode spec of deployment %q: %w", d.Name, err)
	}
	return d, nil
}
