// Package sqlite opens ebb's embedded store: the SQL store (store/sqlstore)
// in one SQLite file, through the pure-Go modernc.org/sqlite driver. It is
// the default store of `ebb up`. This package holds what is SQLite's own:
// the connection settings and the Dialect.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// busyTimeout is how long a statement waits for another connection's (or
// another process's) write lock before failing with SQLITE_BUSY, which the
// store reports as store.ErrUnavailable. A variable only so that tests may
// wait less.
var busyTimeout = 10 * time.Second

// maxIdleConns is how many connections to a database file stay open
// between uses.
const maxIdleConns = 8

// Store is the SQL store; Open returns one on SQLite. The name remains so
// that callers may keep writing *sqlite.Store.
type Store = sqlstore.Store

// Open opens (creating if needed) the SQLite database at path, creating its
// parent directory, and applies any schema migrations not yet recorded in
// the schema_migrations table. The database runs in WAL mode with foreign
// keys on. The path ":memory:" opens a private in-memory database that
// lives until Close. Call Close when done.
//
// The store is named "SQLite at PATH" (PATH made absolute) in its errors;
// when the file cannot be reached, at Open or later, errors wrap
// store.ErrUnavailable.
func Open(ctx context.Context, path string) (*sqlstore.Store, error) {
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	s, err := sqlstore.Open(ctx, db, Dialect{}, Name(path))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

// Name is how the store in the SQLite file at path is named in errors:
// "SQLite at /data/ebb.db", or "SQLite in memory" for ":memory:".
func Name(path string) string {
	if path == ":memory:" {
		return "SQLite in memory"
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return "SQLite at " + path
}

// openDB opens the database at path with the store's settings.
func openDB(path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path: give a file path such as ~/.ebb/ebb.db")
	}
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: database path %q must not contain '?'", path)
	}
	memory := path == ":memory:"
	if dir := filepath.Dir(path); !memory && dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("sqlite: create directory for database: %w", err)
		}
	}
	dsn := path + "?" + strings.Join([]string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()),
		"_pragma=foreign_keys(1)",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(NORMAL)",
		// Write transactions take the write lock at BEGIN, so a
		// read-modify-write never fails upgrading its lock; this is what
		// Dialect.SerialWrites promises.
		"_txlock=immediate",
	}, "&")
	conn, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db := sql.OpenDB(stmtCache{conn})
	if memory {
		// Every connection would open its own empty database.
		db.SetMaxOpenConns(1)
	} else {
		// Keep what concurrent readers opened (and the statements they
		// prepared) rather than the default two: opening one runs the
		// pragmas above, and its statements are parsed anew.
		db.SetMaxIdleConns(maxIdleConns)
	}
	return db, nil
}

// Dialect is SQLite's sqlstore.Dialect. Times are kept as RFC 3339 text
// in UTC (the empty string for no time), JSON as text; write transactions
// run one at a time, so no row or advisory locks are needed.
type Dialect struct{}

var _ sqlstore.Dialect = Dialect{}

// Rebind implements sqlstore.Dialect: SQLite takes ? as it is.
func (Dialect) Rebind(query string) string { return query }

// Columns implements sqlstore.Dialect. TEXT compares by bytes (the BINARY
// collation). An optional time is NOT NULL, the empty string for no time,
// as the registry's last_used_at shipped.
func (Dialect) Columns() sqlstore.Columns {
	return sqlstore.Columns{
		Key:          "TEXT",
		Int64:        "INTEGER",
		Time:         "TEXT",
		OptionalTime: "TEXT NOT NULL",
		JSON:         "TEXT",
		Bytes:        "BLOB",
		Serial:       "INTEGER PRIMARY KEY AUTOINCREMENT",
	}
}

// Time implements sqlstore.Dialect.
func (Dialect) Time(t time.Time) any {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(sqlstore.TimeFormat)
}

// SerialWrites implements sqlstore.Dialect: SQLite has one writer at a
// time, and Open makes write transactions take the lock at BEGIN.
func (Dialect) SerialWrites() bool { return true }

// RowLock implements sqlstore.Dialect; it is never called, since writes
// are serial.
func (Dialect) RowLock(sqlstore.RowLock) string { return "" }

// TxLock implements sqlstore.Dialect; it is never called, since writes are
// serial.
func (Dialect) TxLock(sqlstore.TxLock, string) (string, []any) { return "", nil }

// IsUniqueViolation implements sqlstore.Dialect.
func (Dialect) IsUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// IsUnavailable implements sqlstore.Dialect: the file cannot be opened
// (SQLITE_CANTOPEN: it, or its directory, is missing or unreadable), its
// disk fails (SQLITE_IOERR), another connection or process held the write
// lock for longer than busyTimeout (SQLITE_BUSY, "database is locked"), or
// the file was moved or deleted while open (SQLITE_READONLY_DBMOVED, which
// SQLite gives writes then).
func (Dialect) IsUnavailable(err error) bool {
	e, ok := errors.AsType[*sqlite.Error](err)
	if !ok {
		return false
	}
	if e.Code() == sqlite3.SQLITE_READONLY_DBMOVED {
		return true
	}
	switch e.Code() & 0xff { // the primary result code
	case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY:
		return true
	}
	return false
}

// IsRetryable implements sqlstore.Dialect: never. A statement already waits
// up to busyTimeout for the write lock, and a write transaction holds it
// from BEGIN, so SQLite fails no transaction for having lost a race.
func (Dialect) IsRetryable(error) bool { return false }
