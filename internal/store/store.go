// Package store defines the errors every store implementation returns, so
// callers can tell "not found" from "already exists" from a failure, whatever
// database sits behind. Implementations live in sub-packages (store/sqlite).
package store

import "errors"

var (
	// ErrNotFound means the named record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means a record with that name already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict means the record changed since it was read.
	ErrConflict = errors.New("conflict")
)
