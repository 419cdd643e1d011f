// Package sqlstore is ebb's one SQL store: deployments, replica handles and
// the model registry in a database reached through database/sql, the same
// queries whichever database it is. What differs between databases (bind
// placeholders, DDL types, how times are kept, locking and error codes) is
// a small Dialect; store/sqlite (the embedded default of `ebb up`) and
// store/postgres (a database several ebb processes share) each provide one
// and an Open that connects and returns a *Store.
//
// Only what the user asked for (a deployment's Spec) and bookkeeping
// (generation, times) are stored; a deployment's Status is observed live by
// the control loop and never written here.
//
// Concurrency. Every read-modify-write runs in one transaction. On SQLite
// write transactions run one at a time (Dialect.SerialWrites): they take the
// database's write lock at BEGIN, and writers in this process queue behind a
// mutex first. On PostgreSQL they run at READ COMMITTED and lock what they
// read: UpdateDeployment and the version updates lock the row (FOR UPDATE);
// alias moves and deletions lock the model's row first, so moves of one
// model's aliases happen one at a time and a compare-and-swap never passes
// on a stale read; a version number comes from bumping the model row's
// latest_version in the inserting transaction; DeleteModel locks the
// model's row FOR UPDATE, so it waits for the alias moves and version
// creations of that model under way, and those that come after it find no
// model; RecordServing and the
// migrations take transaction-scoped advisory locks; CreateRollout leaves
// to a partial unique index that one rollout of a kind is active per
// deployment (INSERT ... ON CONFLICT DO NOTHING waits for a racing insert). A transaction that
// fails only because a concurrent one won (a serialization failure or
// deadlock) is run again, at most maxAttempts times.
//
// Adding records (tokens, rollouts, queues...): append a migration (see
// migrate.go) written once with the Columns' types; write each query once,
// with ? placeholders; create with insert, so that a unique violation is
// store.ErrExists; read-modify-write in write, locking the rows read with
// rowLock. A difference between the databases that none of these covers
// belongs in Dialect.
//
// Unreachable database. When the database cannot be reached or is not
// taking work (down, restarting, out of connections, its file unreachable,
// locked by another process for longer than the store waits), every method
// returns an error wrapping store.ErrUnavailable whose message begins with
// the store's Name ("PostgreSQL at db.example:5432/ebb: ..."), so that the
// admin API answers 503 and says which database to look at. The query
// helpers below do this once for every query: a new query gets it by using
// them. A cancelled or expired context is the caller's doing and is
// returned as it is.
package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
)

// maxAttempts bounds how many times a write transaction runs when the
// dialect says its failure may be retried.
const maxAttempts = 3

var (
	_ registry.Store        = (*Store)(nil)
	_ registry.ModelDeleter = (*Store)(nil)
)

// Store keeps deployments, replica handles and the model registry in a SQL
// database. All methods are safe for concurrent use, also by several
// processes sharing the database. Times it records are UTC and kept to the
// microsecond.
type Store struct {
	// Now is the clock used for the times the store sets. Open sets it to
	// time.Now; tests may replace it before the first call.
	Now func() time.Time

	db   *sql.DB
	d    Dialect
	name string

	// queries maps a query as written (? placeholders) to the dialect's.
	queries sync.Map

	// writeMu queues this process's writers when the dialect has serial
	// writes, so that they never wait on each other inside the database;
	// the database's own lock still orders writers in other processes.
	writeMu sync.Mutex
	// comb queues writers to share transactions (combine.go).
	comb combiner
}

// Open returns a Store on db, whose SQL dialect is d, after applying the
// schema migrations that the schema_migrations table does not list yet.
// name names the database for a person, in errors that say it cannot be
// reached: "PostgreSQL at db.example:5432/ebb", "SQLite at /data/ebb.db";
// it must hold no secret. The Store owns db from then on and closes it in
// Close; when Open fails, db is the caller's to close.
func Open(ctx context.Context, db *sql.DB, d Dialect, name string) (*Store, error) {
	s := &Store{Now: time.Now, db: db, d: d, name: name}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Close closes the database, waiting for connections in use to be
// returned. Calls after Close fail.
func (s *Store) Close() error { return s.db.Close() }

// Name names the database for a person, as Open was given it; errors
// wrapping store.ErrUnavailable begin with it.
func (s *Store) Name() string { return s.name }

// Unavailable returns err, from a query to the database that name names,
// as an error wrapping store.ErrUnavailable and naming the database
// ("name: err: store unavailable") when it means that the database cannot
// be reached or is not taking work: a failure any driver reports alike (a
// bad connection, a network error, a refused, reset or broken connection)
// or one dialect d recognises (Dialect.IsUnavailable). Otherwise, and
// whenever ctx is done (then the caller gave up, and the database may be
// fine), it returns err as it is. An error already wrapping
// store.ErrUnavailable is returned as it is.
//
// Such a failure leaves nothing written: a statement or transaction that
// did not reach the database, or whose connection broke before COMMIT
// completed, is rolled back by the database. (Only a connection lost in
// the instant between the server committing and the client hearing so
// leaves a committed transaction reported as failed; no client can tell.)
func Unavailable(ctx context.Context, d Dialect, name string, err error) error {
	if err == nil || ctx.Err() != nil || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	if !connFailure(err) && !d.IsUnavailable(err) {
		return err
	}
	return fmt.Errorf("%s: %v: %w", name, err, store.ErrUnavailable)
}

// connFailure reports errors that every database/sql driver gives alike
// when its connection to the database failed.
func connFailure(err error) bool {
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	for _, target := range []error{driver.ErrBadConn, syscall.ECONNREFUSED, syscall.ECONNRESET,
		syscall.ECONNABORTED, syscall.EPIPE, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// unavailable is Unavailable for this store's database. Every query helper
// passes its errors through it.
func (s *Store) unavailable(ctx context.Context, err error) error {
	return Unavailable(ctx, s.d, s.name, err)
}

// now returns the store clock's time in UTC, truncated to the microsecond
// (PostgreSQL's precision) so that a value read back equals the value
// written.
func (s *Store) now() time.Time {
	return s.Now().UTC().Truncate(time.Microsecond)
}

// time returns t as a query argument for a time column.
func (s *Store) time(t time.Time) any { return s.d.Time(t) }

// rebind returns query in the dialect's placeholders.
func (s *Store) rebind(query string) string {
	if q, ok := s.queries.Load(query); ok {
		return q.(string)
	}
	q := s.d.Rebind(query)
	s.queries.Store(query, q)
	return q
}

// rowLock returns the clause that locks the rows a SELECT reads in a write
// transaction, or "" where write transactions are serial.
func (s *Store) rowLock(l RowLock) string {
	if s.d.SerialWrites() {
		return ""
	}
	return " " + s.d.RowLock(l)
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// conn runs queries written with ? placeholders on the database or in a
// transaction.
type conn struct {
	s *Store
	q querier
	// shared, when set, is the context of every statement instead of the
	// caller's: in a transaction several writers share (combine.go), one
	// writer's cancellation must not interrupt a statement, which would
	// roll back the others' writes with it.
	shared context.Context
}

// ctx returns the context a statement runs with.
func (c conn) ctx(ctx context.Context) context.Context {
	if c.shared != nil {
		return c.shared
	}
	return ctx
}

func (c conn) row(ctx context.Context, query string, args ...any) row {
	ctx = c.ctx(ctx)
	return row{ctx: ctx, s: c.s, r: c.q.QueryRowContext(ctx, c.s.rebind(query), args...)}
}

// rows runs a query; list reads its rows.
func (c conn) rows(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = c.ctx(ctx)
	rows, err := c.q.QueryContext(ctx, c.s.rebind(query), args...)
	return rows, c.s.unavailable(ctx, err)
}

func (c conn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = c.ctx(ctx)
	res, err := c.q.ExecContext(ctx, c.s.rebind(query), args...)
	return res, c.s.unavailable(ctx, err)
}

// row is the one row a query returns, as *sql.Row, whose Scan reports an
// unreachable database as store.ErrUnavailable. sql.ErrNoRows is returned
// as it is.
type row struct {
	ctx context.Context
	s   *Store
	r   *sql.Row
}

func (r row) Scan(dest ...any) error { return r.s.unavailable(r.ctx, r.r.Scan(dest...)) }

// lock takes the dialect's transaction lock l on key, where write
// transactions are not already serial.
func (c conn) lock(ctx context.Context, l TxLock, key string) error {
	if c.s.d.SerialWrites() {
		return nil
	}
	query, args := c.s.d.TxLock(l, key)
	_, err := c.exec(ctx, query, args...)
	return err
}

// read returns the database, for reads outside a transaction.
func (s *Store) read() conn { return conn{s: s, q: s.db} }

// lockWrites queues behind this process's other writers where the dialect
// wants that; call the returned function when done.
func (s *Store) lockWrites() (unlock func()) {
	if !s.d.SerialWrites() {
		return func() {}
	}
	s.writeMu.Lock()
	return s.writeMu.Unlock
}

// exec runs one writing statement on its own.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	defer s.lockWrites()()
	return s.read().exec(ctx, query, args...)
}

// insert runs one INSERT on its own. When it violates a unique constraint
// the error wraps store.ErrExists and names what exists ("model \"m\"").
func (s *Store) insert(ctx context.Context, what, query string, args ...any) error {
	_, err := s.exec(ctx, query, args...)
	if s.d.IsUniqueViolation(err) {
		return fmt.Errorf("%s %w", what, store.ErrExists)
	}
	return err
}

// write runs fn in one write transaction and commits when fn returns nil.
// When the transaction fails in a way the dialect says may be retried, it
// runs fn again in a new one: fn must not keep state between calls.
//
// Where writes are serial (SQLite), writers that wait at the same time
// share one transaction (combine.go).
func (s *Store) write(ctx context.Context, fn func(tx conn) error) error {
	if s.d.SerialWrites() {
		return s.writeCombined(ctx, fn)
	}
	return s.retried(ctx, func() error { return s.writeOnce(ctx, fn) })
}

func (s *Store) writeOnce(ctx context.Context, fn func(tx conn) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(conn{s: s, q: tx}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// scanner is what *sql.Row and *sql.Rows share.
type scanner interface {
	Scan(dest ...any) error
}

// list runs a query and scans every row with scan; it returns an empty,
// non-nil slice when there are none.
func list[T any](ctx context.Context, c conn, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := c.rows(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, c.s.unavailable(ctx, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, c.s.unavailable(ctx, err)
	}
	return out, nil
}

// TimeFormat is how a dialect that keeps times as text (SQLite) writes
// them.
const TimeFormat = time.RFC3339Nano

// timeCol scans a time column into t, in UTC: a time (PostgreSQL) or text
// in TimeFormat (SQLite); NULL or the empty string is the zero time.
func timeCol(t *time.Time) sql.Scanner { return timeScanner{t} }

type timeScanner struct{ t *time.Time }

func (s timeScanner) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*s.t = time.Time{}
	case time.Time:
		*s.t = v.UTC()
	case string:
		return s.parse(v)
	case []byte:
		return s.parse(string(v))
	default:
		return fmt.Errorf("stored time has type %T, want a time or text", src)
	}
	return nil
}

func (s timeScanner) parse(v string) error {
	if v == "" {
		*s.t = time.Time{}
		return nil
	}
	t, err := time.Parse(TimeFormat, v)
	if err != nil {
		return fmt.Errorf("stored time %q: %w", v, err)
	}
	*s.t = t.UTC()
	return nil
}
