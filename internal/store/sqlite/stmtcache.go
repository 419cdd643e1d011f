package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"sync"
)

// maxCachedStmts bounds the statements one connection keeps prepared. The
// store's queries are constants, a few dozen of them; a query built at run
// time beyond the bound is prepared and finalized per use, as without the
// cache.
const maxCachedStmts = 256

// stmtCache is a driver.Connector whose connections keep the statements
// they prepare, by query text, and run them again without parsing and
// planning them anew. modernc.org/sqlite prepares and finalizes a
// statement for every query database/sql hands it; on the async queue's
// hot path that was a quarter of ebb's CPU.
//
// Its connections do not implement driver.QueryerContext or
// driver.ExecerContext, so database/sql prepares every query through
// PrepareContext and closes the statement when done with it (after the
// last row, for a query): a cached statement's Close only returns it to
// its connection. A statement still in use (its rows not yet closed) is
// never handed out twice: the second user gets a statement of its own.
// SQLite itself prepares a cached statement again when the schema
// changed under it.
type stmtCache struct {
	driver.Connector
}

// Connect implements driver.Connector.
func (c stmtCache) Connect(ctx context.Context) (driver.Conn, error) {
	inner, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return newCachingConn(inner)
}

// innerConn is what a modernc.org/sqlite connection provides and a
// cachingConn passes on.
type innerConn interface {
	driver.Conn
	driver.ConnPrepareContext
	driver.ConnBeginTx
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

func newCachingConn(c driver.Conn) (*cachingConn, error) {
	inner, ok := c.(innerConn)
	if !ok {
		c.Close()
		return nil, errors.New("sqlite: the driver's connection lacks the methods the statement cache needs")
	}
	return &cachingConn{inner: inner, stmts: make(map[string]*cachedStmt)}, nil
}

// cachingConn is one connection of a stmtCache.
type cachingConn struct {
	inner innerConn
	// mu guards stmts; database/sql uses a connection from one goroutine
	// at a time, so it is never contended.
	mu    sync.Mutex
	stmts map[string]*cachedStmt
}

// cachedStmt is a prepared statement a cachingConn keeps, or one it
// prepared past its bound (kept false), which Close finalizes.
type cachedStmt struct {
	driver.Stmt
	conn *cachingConn
	kept bool
	busy bool
}

var (
	_ driver.Conn               = (*cachingConn)(nil)
	_ driver.ConnPrepareContext = (*cachingConn)(nil)
	_ driver.ConnBeginTx        = (*cachingConn)(nil)
	_ driver.Pinger             = (*cachingConn)(nil)
	_ driver.SessionResetter    = (*cachingConn)(nil)
	_ driver.Validator          = (*cachingConn)(nil)
	_ driver.StmtExecContext    = (*cachedStmt)(nil)
	_ driver.StmtQueryContext   = (*cachedStmt)(nil)
)

// PrepareContext implements driver.ConnPrepareContext: the kept statement
// for query when it is free, else a new one.
func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	c.mu.Lock()
	if s, ok := c.stmts[query]; ok && !s.busy {
		s.busy = true
		c.mu.Unlock()
		return s, nil
	}
	c.mu.Unlock()
	ds, err := c.inner.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s := &cachedStmt{Stmt: ds, conn: c, busy: true}
	c.mu.Lock()
	if _, ok := c.stmts[query]; !ok && len(c.stmts) < maxCachedStmts {
		s.kept = true
		c.stmts[query] = s
	}
	c.mu.Unlock()
	return s, nil
}

// Prepare implements driver.Conn.
func (c *cachingConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// Close finalizes the kept statements and closes the connection.
func (c *cachingConn) Close() error {
	c.mu.Lock()
	var errs []error
	for _, s := range c.stmts {
		errs = append(errs, s.Stmt.Close())
	}
	c.stmts = nil
	c.mu.Unlock()
	return errors.Join(append(errs, c.inner.Close())...)
}

// Begin implements driver.Conn.
func (c *cachingConn) Begin() (driver.Tx, error) {
	return c.inner.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx implements driver.ConnBeginTx.
func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.inner.BeginTx(ctx, opts)
}

// Ping implements driver.Pinger.
func (c *cachingConn) Ping(ctx context.Context) error { return c.inner.Ping(ctx) }

// ResetSession implements driver.SessionResetter.
func (c *cachingConn) ResetSession(ctx context.Context) error { return c.inner.ResetSession(ctx) }

// IsValid implements driver.Validator.
func (c *cachingConn) IsValid() bool { return c.inner.IsValid() }

// Close returns a kept statement to its connection, or finalizes one that
// is not kept.
func (s *cachedStmt) Close() error {
	if !s.kept {
		return s.Stmt.Close()
	}
	s.conn.mu.Lock()
	s.busy = false
	s.conn.mu.Unlock()
	return nil
}

// ExecContext implements driver.StmtExecContext.
func (s *cachedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	ec, ok := s.Stmt.(driver.StmtExecContext)
	if !ok {
		return nil, errors.New("sqlite: the driver's statement lacks ExecContext")
	}
	return ec.ExecContext(ctx, args)
}

// QueryContext implements driver.StmtQueryContext.
func (s *cachedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	qc, ok := s.Stmt.(driver.StmtQueryContext)
	if !ok {
		return nil, errors.New("sqlite: the driver's statement lacks QueryContext")
	}
	return qc.QueryContext(ctx, args)
}
