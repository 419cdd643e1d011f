package sqlstore

import "time"

// A Dialect is what differs between the databases a Store runs on; the
// queries do not. Both SQLite and PostgreSQL take the same SQL for all the
// store does, upserts (INSERT ... ON CONFLICT ... DO UPDATE) and
// UPDATE ... RETURNING included, so each query is written once, with ?
// placeholders. store/sqlite and store/postgres each provide one.
type Dialect interface {
	// Rebind rewrites a query written with ? placeholders into the
	// database's own ($1, $2, ... for PostgreSQL). The store calls it once
	// per distinct query and keeps the result.
	Rebind(query string) string

	// Columns returns the column types the migrations are written with.
	Columns() Columns

	// Time returns t, already UTC and truncated to the microsecond, as the
	// argument for a time column. The zero time stands for "no time" and
	// is written as the database's empty value for an OptionalTime column
	// (the empty string in SQLite, NULL in PostgreSQL).
	Time(t time.Time) any

	// SerialWrites reports that the database lets one write transaction
	// run at a time and that the driver starts write transactions by
	// taking the write lock (SQLite with BEGIN IMMEDIATE). The store then
	// queues its own writers behind a mutex, so they do not contend for
	// the lock, and takes no row or advisory locks: a write transaction
	// already excludes every other from its start.
	SerialWrites() bool

	// RowLock returns the clause that, appended to a SELECT in a write
	// transaction, locks the rows it reads until the transaction ends
	// ("FOR UPDATE"). Only called when SerialWrites is false.
	RowLock(l RowLock) string

	// TxLock returns a statement (? placeholders) and its arguments that
	// take lock l on key, held until the transaction ends. Only called
	// when SerialWrites is false.
	TxLock(l TxLock, key string) (query string, args []any)

	// IsUniqueViolation reports whether err is the violation of a primary
	// key or unique constraint; the store reports it as store.ErrExists.
	IsUniqueViolation(err error) bool

	// IsRetryable reports whether a write transaction failed only because
	// a concurrent one won (a serialization failure or a deadlock), so that
	// running it again from the start may succeed.
	IsRetryable(err error) bool

	// IsUnavailable reports whether err means that the database cannot be
	// reached or is not taking work now (shutting down, starting up, out
	// of connections, its file unreachable, locked by another process for
	// longer than the store waits), rather than that this request failed.
	// The store reports such errors as store.ErrUnavailable, naming the
	// database. It recognises what every driver reports alike itself (a
	// bad connection, a network error, a refused or reset connection; see
	// Unavailable), and never asks about an error of a cancelled context.
	IsUnavailable(err error) bool
}

// Columns are the column types, as DDL spells them, that migrations use
// for each kind of value (as {{.Key}}, {{.Time}} and so on).
type Columns struct {
	// Key is text compared and sorted by its bytes, whatever the database's
	// collation: names and IDs.
	Key string
	// Int64 is a 64-bit integer.
	Int64 string
	// Time is a time that is always set; the store writes it through
	// Dialect.Time and reads back UTC.
	Time string
	// OptionalTime is a time that may be unset (the zero time.Time).
	OptionalTime string
	// JSON is a JSON document; the store writes it as a string.
	JSON string
	// Bytes is binary data.
	Bytes string
	// Serial is an auto-incrementing 64-bit primary key: the column's whole
	// definition.
	Serial string
}

// RowLock is how a SELECT in a write transaction locks the rows it reads.
type RowLock int

const (
	// ForUpdate locks rows that the transaction will update or delete.
	ForUpdate RowLock = iota + 1
	// ForNoKeyUpdate locks rows whose keys will not change, so others may
	// still insert rows that reference them.
	ForNoKeyUpdate
	// ForUpdateSkipLocked locks rows as ForUpdate does, skipping rows
	// another transaction holds: several workers claiming queued requests
	// at once each take different ones instead of waiting in line
	// (queue.go).
	ForUpdateSkipLocked
)

// TxLock names an exclusive lock a write transaction may take on a key for
// the rest of the transaction, where no row to lock exists yet.
type TxLock int

const (
	// MigrationLock is held, with an empty key, while the schema
	// migrations are checked and applied.
	MigrationLock TxLock = iota + 1
	// ServingLock is held on a deployment's name while a record is added to
	// its serving history.
	ServingLock
)
