// Package store defines the errors every store implementation returns, so
// callers can tell "not found" from "already exists" from a failure, whatever
// database sits behind. Implementations live in sub-packages (store/sqlite).
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

var (
	// ErrNotFound means the named record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means a record with that name already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict means the record changed since it was read.
	ErrConflict = errors.New("conflict")
)

// ApplyUpdate is the rule every store's UpdateDeployment follows, inside its
// own transaction: fn edits a copy of old; only its Spec is kept (Name may
// not change); Generation increases when the Spec changed; UpdatedAt is now.
// It returns the deployment to write and its spec as JSON. fnErr is fn's own
// error, which stores return unwrapped; err is any other failure.
func ApplyUpdate(old serving.Deployment, fn func(*serving.Deployment) error, now time.Time) (out serving.Deployment, spec []byte, fnErr, err error) {
	d := old
	if err := fn(&d); err != nil {
		return serving.Deployment{}, nil, err, err
	}
	if d.Name != old.Name {
		return serving.Deployment{}, nil, nil, fmt.Errorf("cannot rename deployment %q to %q: delete it and create a new one", old.Name, d.Name)
	}
	oldSpec, err := json.Marshal(old.Spec)
	if err != nil {
		return serving.Deployment{}, nil, nil, err
	}
	spec, err = json.Marshal(d.Spec)
	if err != nil {
		return serving.Deployment{}, nil, nil, fmt.Errorf("encode spec: %w", err)
	}
	out = serving.Deployment{Name: old.Name, Spec: d.Spec, Generation: old.Generation,
		CreatedAt: old.CreatedAt, UpdatedAt: now}
	if string(oldSpec) != string(spec) {
		out.Generation++
	}
	return out, spec, nil, nil
}
