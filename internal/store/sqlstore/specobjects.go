package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/store"
)

// specTable is a table of named objects whose spec is a JSON column, as a
// deployment's is: route objects and multi-model pools. Its rows have the
// columns specColumns; the type parameter is the object (serving.Route,
// serving.Pool), reached through fields.
type specTable[T any] struct {
	table string // SQL table
	noun  string // what errors call one object: "route", "pool"
	// fields points at the object's stored fields.
	fields func(*T) specFields
	// created is the object as created from what a caller gave: its name
	// and spec only (no status, which is output only).
	created func(in T) T
	// apply is the store package's Apply*Update for T: fn applied to a
	// copy of old, the encoded spec, fn's error and any other.
	apply func(old T, fn func(*T) error, now time.Time) (out T, spec []byte, fnErr, err error)
}

// specFields points at the fields every object of a specTable has.
type specFields struct {
	name       *string
	spec       any // a pointer to the spec, for encoding/json
	generation *int64
	createdAt  *time.Time
	updatedAt  *time.Time
}

const specColumns = `name, spec, generation, created_at, updated_at`

// create stores in with Generation 1 and CreatedAt and UpdatedAt now, or
// fails with an error that wraps store.ErrExists when its name is taken.
func (t *specTable[T]) create(ctx context.Context, s *Store, in T) (T, error) {
	var zero T
	out := t.created(in)
	f := t.fields(&out)
	spec, err := json.Marshal(f.spec)
	if err != nil {
		return zero, fmt.Errorf("encode %s %q: %w", t.noun, *f.name, err)
	}
	now := s.now()
	*f.generation, *f.createdAt, *f.updatedAt = 1, now, now
	err = s.insert(ctx, fmt.Sprintf("%s %q", t.noun, *f.name),
		`INSERT INTO `+t.table+` (`+specColumns+`) VALUES (?, ?, ?, ?, ?)`,
		*f.name, string(spec), *f.generation, s.time(now), s.time(now))
	if err != nil {
		return zero, fmt.Errorf("create %s %q: %w", t.noun, *f.name, err)
	}
	return out, nil
}

// get reads the named object.
func (t *specTable[T]) get(ctx context.Context, s *Store, name string) (T, error) {
	v, err := t.getLocked(ctx, s.read(), name, "")
	if err != nil {
		return v, fmt.Errorf("get %s %q: %w", t.noun, name, err)
	}
	return v, nil
}

// list reads every object, sorted by name.
func (t *specTable[T]) list(ctx context.Context, s *Store) ([]T, error) {
	out, err := list(ctx, s.read(), t.scan, `SELECT `+specColumns+` FROM `+t.table+` ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", t.noun, err)
	}
	return out, nil
}

// update reads the named object, passes it to fn and writes back what fn
// left (t.apply), all in one transaction that holds the row. fn may be
// called more than once, should the database make the transaction run
// again; its own error is returned as it is.
func (t *specTable[T]) update(ctx context.Context, s *Store, name string, fn func(*T) error) (T, error) {
	var out, zero T
	var fnErr error
	err := s.write(ctx, func(tx conn) error {
		fnErr = nil
		old, err := t.getLocked(ctx, tx, name, s.rowLock(ForUpdate))
		if err != nil {
			return err
		}
		var spec []byte
		out, spec, fnErr, err = t.apply(old, fn, s.now())
		if err != nil {
			return err
		}
		f := t.fields(&out)
		_, err = tx.exec(ctx, `UPDATE `+t.table+` SET spec = ?, generation = ?, updated_at = ? WHERE name = ?`,
			string(spec), *f.generation, s.time(*f.updatedAt), name)
		return err
	})
	if fnErr != nil {
		return zero, fnErr
	}
	if err != nil {
		return zero, fmt.Errorf("update %s %q: %w", t.noun, name, err)
	}
	return out, nil
}

// delete removes the named object; a missing one is an error wrapping
// store.ErrNotFound.
func (t *specTable[T]) delete(ctx context.Context, s *Store, name string) error {
	res, err := s.exec(ctx, `DELETE FROM `+t.table+` WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete %s %q: %w", t.noun, name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete %s %q: %w", t.noun, name, err)
	} else if n == 0 {
		return fmt.Errorf("delete %s %q: %s %q %w", t.noun, name, t.noun, name, store.ErrNotFound)
	}
	return nil
}

// getLocked reads one object over c; lock is appended to the query.
func (t *specTable[T]) getLocked(ctx context.Context, c conn, name, lock string) (T, error) {
	v, err := t.scan(c.row(ctx, `SELECT `+specColumns+` FROM `+t.table+` WHERE name = ?`+lock, name))
	if errors.Is(err, sql.ErrNoRows) {
		return v, fmt.Errorf("%s %q %w", t.noun, name, store.ErrNotFound)
	}
	return v, err
}

func (t *specTable[T]) scan(sc scanner) (T, error) {
	var out, zero T
	f := t.fields(&out)
	var spec []byte
	if err := sc.Scan(f.name, &spec, f.generation, timeCol(f.createdAt), timeCol(f.updatedAt)); err != nil {
		return zero, err
	}
	if err := json.Unmarshal(spec, f.spec); err != nil {
		return zero, fmt.Errorf("decode spec of %s %q: %w", t.noun, *f.name, err)
	}
	return out, nil
}
