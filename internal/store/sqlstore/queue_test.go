package sqlstore_test

import (
	"context"
	"database/sql"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ebb-ml/ebb/internal/queue/queuetest"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
	"github.com/ebb-ml/ebb/internal/store/postgres"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// TestQueueConformance runs the queue suite on SQLite (a file, taken down
// by another process holding its write lock beyond the busy timeout) and
// PostgreSQL (reached through a loopback proxy, taken down by cutting it).
func TestQueueConformance(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		queuetest.Run(t, func(t *testing.T, o queuetest.Options) queuetest.Harness {
			path := filepath.Join(t.TempDir(), "ebb.db")
			// The store's own settings, with a short busy timeout.
			db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(200)&_pragma=foreign_keys(1)"+
				"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
			if err != nil {
				t.Fatal(err)
			}
			s, err := sqlstore.Open(t.Context(), db, sqlite.Dialect{}, sqlite.Name(path))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			s.Now = o.Clock.Now
			return queuetest.Harness{
				Queue: s.Queue(sqlstore.QueueOptions{MaxDepth: o.MaxDepth}),
				Down:  func(t *testing.T) { holdWriteLock(t, path) },
			}
		})
	})
	t.Run("postgres", func(t *testing.T) {
		queuetest.Run(t, func(t *testing.T, o queuetest.Options) queuetest.Harness {
			p := newProxy(t, pgtest.Start(t))
			s, err := postgres.Open(t.Context(), p.dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			s.Now = o.Clock.Now
			return queuetest.Harness{
				Queue: s.Queue(sqlstore.QueueOptions{MaxDepth: o.MaxDepth}),
				Down:  func(*testing.T) { p.cut() },
			}
		})
	})
}

// holdWriteLock takes the write lock of the SQLite file at path, as
// another process would, until the test ends.
func holdWriteLock(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.ExecContext(context.Background(), `ROLLBACK`)
		conn.Close()
		db.Close()
	})
}

// proxy forwards loopback TCP connections to a database until cut, when
// it closes its listener and every connection: the database is then
// unreachable, as behind a failed network.
type proxy struct {
	dsn string
	ln  net.Listener

	mu    sync.Mutex
	conns []net.Conn
	dead  bool
}

func newProxy(t *testing.T, dsn string) *proxy {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	u.Host = ln.Addr().String()
	p := &proxy{dsn: u.String(), ln: ln}
	t.Cleanup(p.cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, d) {
				return
			}
			go func() { io.Copy(d, c); d.Close() }()
			go func() { io.Copy(c, d); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dead = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
