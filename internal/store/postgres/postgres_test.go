package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// The store itself is tested in store/sqlstore, against SQLite and
// PostgreSQL alike; these tests cover what is PostgreSQL's own.

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestOpenErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := pgtest.Start(t)
	for _, tt := range []struct {
		name, dsn, want string
		unavailable     bool // the error wraps store.ErrUnavailable
	}{
		{"empty", "", "empty DSN", false},
		{"garbage", "postgres://%zz", "invalid DSN", false},
		{"missing database", strings.Replace(dsn, "/t", "/nosuchdb_t", 1), "cannot connect", false},
		{"secret kept", "postgres://u:hunter2@127.0.0.1:1/ebb?sslmode=disable&connect_timeout=5",
			"postgres: cannot connect to 127.0.0.1:1/ebb: ", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(ctx, tt.dsn)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded, want an error", tt.dsn)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open(%q) error = %v, want it to contain %q", tt.dsn, err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Open error shows the password: %v", err)
			}
			if got := errors.Is(err, store.ErrUnavailable); got != tt.unavailable {
				t.Errorf("Open(%q) error %v wraps store.ErrUnavailable: %v, want %v", tt.dsn, err, got, tt.unavailable)
			}
		})
	}
}

func TestName(t *testing.T) {
	for _, tt := range []struct {
		host string
		port uint16
		db   string
		want string
	}{
		{"db.example", 5432, "ebb", "PostgreSQL at db.example:5432/ebb"},
		{"::1", 5433, "ebb", "PostgreSQL at [::1]:5433/ebb"},
		{"/var/run/postgresql", 5432, "ebb", "PostgreSQL at /var/run/postgresql:5432/ebb"},
	} {
		if got := Name(tt.host, tt.port, tt.db); got != tt.want {
			t.Errorf("Name(%q, %d, %q) = %q, want %q", tt.host, tt.port, tt.db, got, tt.want)
		}
	}
}

// TestIsUnavailable checks which errors, that a real server and real
// connections give, the store reports as store.ErrUnavailable: those the
// dialect recognises and those any driver gives alike.
func TestIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dsn := pgtest.Start(t)
	db := openRaw(t, dsn)
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (k int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	// A role allowed one connection, for "too many connections".
	role := fmt.Sprintf("limited_%d", time.Now().UnixNano())
	if _, err := db.ExecContext(ctx, `CREATE ROLE `+role+` LOGIN CONNECTION LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.ExecContext(context.Background(), `DROP ROLE `+role) })
	roleDSN := strings.Replace(dsn, "postgres://postgres@", "postgres://"+role+"@", 1)
	if roleDSN == dsn {
		t.Fatalf("cannot put role into DSN %s", dsn)
	}

	for _, tt := range []struct {
		name string
		err  func(t *testing.T) error
		want bool
	}{
		{"connection refused", func(t *testing.T) error {
			return openRaw(t, "postgres://u:pw@"+closedAddr(t)+"/ebb?sslmode=disable").PingContext(ctx)
		}, true},
		{"connect timeout", func(t *testing.T) error {
			// A server that accepts connections and never answers.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					t.Cleanup(func() { c.Close() })
				}
			}()
			return openRaw(t, "postgres://u@"+ln.Addr().String()+"/ebb?sslmode=disable&connect_timeout=1").PingContext(ctx)
		}, true},
		{"too many connections", func(t *testing.T) error {
			rdb := openRaw(t, roleDSN)
			held, err := rdb.Conn(ctx)
			if err != nil {
				t.Fatalf("first connection of %s: %v", role, err)
			}
			defer held.Close()
			return openRaw(t, roleDSN).PingContext(ctx)
		}, true},
		{"session terminated", func(t *testing.T) error {
			conn, err := openRaw(t, dsn).Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var pid int
			if err := conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
				t.Fatal(err)
			}
			// The backend may still be exiting; the next query sees the
			// FATAL 57P01 or the closed connection.
			_, err = conn.ExecContext(ctx, `SELECT 1`)
			return err
		}, true},
		{"missing database", func(t *testing.T) error {
			return openRaw(t, strings.Replace(dsn, "/t", "/nosuchdb_t", 1)).PingContext(ctx)
		}, false},
		{"unique violation", func(t *testing.T) error {
			_, err := db.ExecContext(ctx, `INSERT INTO t VALUES (1), (1)`)
			return err
		}, false},
		{"syntax error", func(t *testing.T) error {
			_, err := db.ExecContext(ctx, `SELEC 1`)
			return err
		}, false},
		{"cancelled", func(t *testing.T) error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := db.ExecContext(cctx, `SELECT 1`)
			return err
		}, false},
		{"statement timeout", func(t *testing.T) error {
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, `SET statement_timeout = 10`); err != nil {
				t.Fatal(err)
			}
			_, err = conn.ExecContext(ctx, `SELECT pg_sleep(1)`)
			return err
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err(t)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			got := sqlstore.Unavailable(context.Background(), Dialect{}, "the db", err)
			if errors.Is(got, store.ErrUnavailable) != tt.want {
				t.Errorf("%v: reported as %v, want store.ErrUnavailable: %v", err, got, tt.want)
			}
		})
	}
	if (Dialect{}).IsUnavailable(nil) {
		t.Errorf("IsUnavailable(nil) = true")
	}
}

// openRaw opens dsn with database/sql and pgx's driver alone.
func openRaw(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestOpenPoolSettings checks that pgxpool's settings in the DSN, which
// the store took when it used pgxpool, are still accepted rather than sent
// to the server as unknown parameters.
func TestOpenPoolSettings(t *testing.T) {
	dsn := pgtest.Start(t) + "&pool_max_conns=2&pool_max_conn_lifetime=1h&pool_max_conn_idle_time=5m"
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open with pool settings: %v", err)
	}
	s.Close()
}

func TestRebind(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE b = ? AND c > ?`, `SELECT a FROM t WHERE b = $1 AND c > $2`},
		{`INSERT INTO t VALUES (?, '?', "?", ?)`, `INSERT INTO t VALUES ($1, '?', "?", $2)`},
		{`SELECT 'it''s ?' || ?`, `SELECT 'it''s ?' || $1`},
		{`UPDATE t SET v = ? WHERE k = ?` + strings.Repeat(` OR k = ?`, 9), `UPDATE t SET v = $1 WHERE k = $2 OR k = $3 OR k = $4 OR k = $5 OR k = $6 OR k = $7 OR k = $8 OR k = $9 OR k = $10 OR k = $11`},
	} {
		if got := (Dialect{}).Rebind(tt.in); got != tt.want {
			t.Errorf("Rebind(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
