package registry

import (
	"fmt"
	"time"

	"github.com/ebb-ml/ebb/internal/store"
)

// The changes a Store makes to a stored version, as pure functions, so that
// every Store applies them alike inside its own read-modify-write.

// ChangeState moves v from state from to state to at a time; it fails with
// store.ErrConflict when v is not in state from.
func ChangeState(v *Version, from, to State, at time.Time) error {
	if v.State != from {
		return fmt.Errorf("version %s:%d is %s, not %s: %w", v.Model, v.Version, v.State, from, store.ErrConflict)
	}
	v.State, v.StateChangedAt = to, at.UTC().Truncate(time.Microsecond)
	return nil
}

// Touch records that v was used at a time; an older time changes nothing.
func Touch(v *Version, at time.Time) {
	if at = at.UTC().Truncate(time.Microsecond); at.After(v.LastUsedAt) {
		v.LastUsedAt = at
	}
}

// ChangeTags sets the tags in set and removes those in del.
func ChangeTags(v *Version, set map[string]string, del []string) {
	if v.Tags == nil {
		v.Tags = map[string]string{}
	}
	for k, val := range set {
		v.Tags[k] = val
	}
	for _, k := range del {
		delete(v.Tags, k)
	}
}
