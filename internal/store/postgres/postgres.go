// Package postgres opens ebb's shared store: the SQL store (store/sqlstore)
// in a PostgreSQL database, through pgx's database/sql driver. Several ebb
// processes may share one database, which makes the control plane's state
// as available as the database is. `ebb up --store-dsn postgres://...`
// selects it instead of the embedded SQLite store. This package holds what
// is PostgreSQL's own: connecting and the Dialect.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// Store is the SQL store; Open returns one on PostgreSQL. The name remains
// so that callers may keep writing *postgres.Store.
type Store = sqlstore.Store

// Open connects to the PostgreSQL database named by dsn, a URL
// (postgres://user:password@host:5432/db?sslmode=disable) or a key=value
// string as libpq takes, and applies any schema migrations not yet recorded
// in the schema_migrations table. The database must exist. The DSN may set
// pgxpool's pool_max_conns, pool_max_conn_lifetime and
// pool_max_conn_idle_time, which size the connection pool as they did when
// the store used pgxpool. Call Close when done.
//
// The store is named "PostgreSQL at HOST:PORT/DATABASE" in its errors
// (never with the user or password); when the database cannot be reached,
// at Open or later, errors wrap store.ErrUnavailable.
func Open(ctx context.Context, dsn string) (*sqlstore.Store, error) {
	if dsn == "" {
		return nil, errors.New("postgres: empty DSN: give a URL such as postgres://user:password@host:5432/ebb")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message redacts the password.
		return nil, fmt.Errorf("postgres: invalid DSN: %w", err)
	}
	db := stdlib.OpenDB(*cfg.ConnConfig)
	db.SetMaxOpenConns(int(cfg.MaxConns))
	db.SetMaxIdleConns(int(cfg.MaxConns))
	db.SetConnMaxLifetime(cfg.MaxConnLifetime)
	db.SetConnMaxIdleTime(cfg.MaxConnIdleTime)
	where := address(cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if errors.Is(sqlstore.Unavailable(ctx, Dialect{}, where, err), store.ErrUnavailable) {
			return nil, fmt.Errorf("postgres: cannot connect to %s: %w: %w (is the server running?)", where, err, store.ErrUnavailable)
		}
		return nil, fmt.Errorf("postgres: cannot connect to %s: %w (are the DSN's user, password and database right?)", where, err)
	}
	s, err := sqlstore.Open(ctx, db, Dialect{}, "PostgreSQL at "+where)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: open %s: %w", where, err)
	}
	return s, nil
}

// Name is how the store on database db of the server at host and port is
// named in errors: "PostgreSQL at db.example:5432/ebb". host may be a
// unix socket's directory.
func Name(host string, port uint16, db string) string {
	return "PostgreSQL at " + address(host, port, db)
}

// address is host:port/db.
func address(host string, port uint16, db string) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port))) + "/" + db
}

// Advisory lock keys. They are those the store took before sqlstore, so
// that processes of either kind sharing a database still exclude each
// other.
const (
	// migrationLock is the one-key lock taken while migrating.
	migrationLock = 0x6562625f6d696772 // "ebb_migr"
	// servingLockClass is the first key of the two-key locks RecordServing
	// takes on a deployment's name (a space apart from migrationLock).
	servingLockClass = 0x65626273 // "ebbs"
)

// PostgreSQL error codes (SQLSTATE) the dialect classifies.
const (
	uniqueViolation      = "23505"
	serializationFailure = "40001"
	deadlockDetected     = "40P01"

	// Class 08, connection exception, is all unavailability.
	connectionExceptionClass = "08"
	// The server is shutting down (fast or immediate shutdown, or
	// pg_terminate_backend).
	adminShutdown = "57P01"
	// The server is restarting after another backend crashed.
	crashShutdown = "57P02"
	// The server is starting up, shutting down or in recovery.
	cannotConnectNow = "57P03"
	// max_connections (or a role's or database's limit) is reached.
	tooManyConnections = "53300"
)

// Dialect is PostgreSQL's sqlstore.Dialect. Names and IDs use the "C"
// collation so that they sort by bytes, as in SQLite, whatever the
// database's default collation; times are TIMESTAMPTZ (NULL for no time),
// JSON is JSONB. Write transactions run at READ COMMITTED and lock the
// rows they read, or take advisory locks.
type Dialect struct{}

var _ sqlstore.Dialect = Dialect{}

// Rebind implements sqlstore.Dialect: the n-th ? outside quotes becomes $n.
func (Dialect) Rebind(query string) string {
	var b strings.Builder
	n := 0
	var quote rune // the quote we are inside, or 0
	for _, r := range query {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '?':
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Columns implements sqlstore.Dialect.
func (Dialect) Columns() sqlstore.Columns {
	return sqlstore.Columns{
		Key:          `TEXT COLLATE "C"`,
		Int64:        "BIGINT",
		Time:         "TIMESTAMPTZ",
		OptionalTime: "TIMESTAMPTZ",
		JSON:         "JSONB",
		Bytes:        "BYTEA",
		Serial:       "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
	}
}

// Time implements sqlstore.Dialect.
func (Dialect) Time(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// SerialWrites implements sqlstore.Dialect: PostgreSQL runs write
// transactions concurrently.
func (Dialect) SerialWrites() bool { return false }

// RowLock implements sqlstore.Dialect.
func (Dialect) RowLock(l sqlstore.RowLock) string {
	switch l {
	case sqlstore.ForUpdate:
		return "FOR UPDATE"
	case sqlstore.ForNoKeyUpdate:
		return "FOR NO KEY UPDATE"
	case sqlstore.ForUpdateSkipLocked:
		return "FOR UPDATE SKIP LOCKED"
	}
	panic(fmt.Sprintf("postgres: unknown row lock %d", l))
}

// TxLock implements sqlstore.Dialect with transaction-scoped advisory
// locks.
func (Dialect) TxLock(l sqlstore.TxLock, key string) (string, []any) {
	switch l {
	case sqlstore.MigrationLock:
		return `SELECT pg_advisory_xact_lock(?)`, []any{int64(migrationLock)}
	case sqlstore.ServingLock:
		return `SELECT pg_advisory_xact_lock(?, hashtext(?))`, []any{int32(servingLockClass), key}
	}
	panic(fmt.Sprintf("postgres: unknown transaction lock %d", l))
}

// IsUniqueViolation implements sqlstore.Dialect.
func (Dialect) IsUniqueViolation(err error) bool { return hasCode(err, uniqueViolation) }

// IsRetryable implements sqlstore.Dialect: serialization failures and
// deadlocks.
func (Dialect) IsRetryable(err error) bool {
	return hasCode(err, serializationFailure) || hasCode(err, deadlockDetected)
}

// IsUnavailable implements sqlstore.Dialect: a connection exception (class
// 08); the server shutting down, restarting after a crash or not yet
// accepting connections (57P01, 57P02, 57P03); too many connections
// (53300); a connection that pgx found closed; and a connection attempt
// that failed without the server answering, such as a dial error, a
// connect_timeout or the server hanging up. A connection refused by the
// server for a reason of its own (a wrong password, a missing database) is
// not: retrying will not help.
func (Dialect) IsUnavailable(err error) bool {
	if e, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch e.Code {
		case adminShutdown, crashShutdown, cannotConnectNow, tooManyConnections:
			return true
		}
		return strings.HasPrefix(e.Code, connectionExceptionClass)
	}
	if errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF)
	}
	return false
}

func hasCode(err error, code string) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == code
}
