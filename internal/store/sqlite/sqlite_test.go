package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// The store itself is tested in store/sqlstore, against SQLite and
// PostgreSQL alike; these tests cover what is SQLite's own.

func TestOpenDBPragmas(t *testing.T) {
	db, err := openDB(filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tt := range []struct{ pragma, want string }{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "10000"},
		{"synchronous", "1"}, // NORMAL
	} {
		var got string
		if err := db.QueryRow("PRAGMA " + tt.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tt := range []struct{ path, want string }{
		{"", "sqlite: empty database path: give a file path such as ~/.ebb/ebb.db"},
		{"/tmp/x?mode=ro", `sqlite: database path "/tmp/x?mode=ro" must not contain '?'`},
	} {
		s, err := Open(context.Background(), tt.path)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", tt.path)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("Open(%q) error = %q, want %q", tt.path, err, tt.want)
		}
	}
}

func TestTime(t *testing.T) {
	if got := (Dialect{}).Time(time.Time{}); got != "" {
		t.Errorf("Time(zero) = %q, want the empty string", got)
	}
	at := time.Date(2025, 6, 1, 10, 0, 0, 123000, time.FixedZone("X", 3*3600))
	if got, want := (Dialect{}).Time(at), "2025-06-01T07:00:00.000123Z"; got != want {
		t.Errorf("Time(%v) = %q, want %q", at, got, want)
	}
}

func TestName(t *testing.T) {
	abs, err := filepath.Abs("ebb.db")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, want string }{
		{"/data/ebb.db", "SQLite at /data/ebb.db"},
		{"ebb.db", "SQLite at " + abs},
		{":memory:", "SQLite in memory"},
	} {
		if got := Name(tt.path); got != tt.want {
			t.Errorf("Name(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// shortBusyTimeout makes stores opened until the test ends wait d for
// another connection's write lock.
func shortBusyTimeout(t *testing.T, d time.Duration) {
	old := busyTimeout
	busyTimeout = d
	t.Cleanup(func() { busyTimeout = old })
}

// lockWrites takes the write lock of the database at path in a connection
// of its own, as another process would, until the test ends.
func lockWrites(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	t.Cleanup(func() {
		tx.Rollback()
		db.Close()
	})
}

// TestIsUnavailable checks which errors, that real SQLite files give, the
// store reports as store.ErrUnavailable.
func TestIsUnavailable(t *testing.T) {
	shortBusyTimeout(t, 50*time.Millisecond)
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		err  func(t *testing.T) error
		want bool
	}{
		{"file is a directory", func(t *testing.T) error {
			db, err := openDB(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			return db.PingContext(ctx)
		}, true},
		{"directory missing", func(t *testing.T) error {
			db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "gone", "ebb.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			return db.PingContext(ctx)
		}, true},
		{"locked beyond the busy timeout", func(t *testing.T) error {
			path := filepath.Join(t.TempDir(), "ebb.db")
			db, err := openDB(path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.ExecContext(ctx, `CREATE TABLE t (k INTEGER PRIMARY KEY)`); err != nil {
				t.Fatal(err)
			}
			lockWrites(t, path)
			_, err = db.ExecContext(ctx, `INSERT INTO t VALUES (1)`)
			return err
		}, true},
		{"not a database", func(t *testing.T) error {
			path := filepath.Join(t.TempDir(), "ebb.db")
			if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 100), 0o644); err != nil {
				t.Fatal(err)
			}
			db, err := openDB(path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			_, err = db.ExecContext(ctx, `CREATE TABLE t (k INTEGER)`)
			return err
		}, false},
		{"unique violation", func(t *testing.T) error {
			db, err := openDB(":memory:")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			_, err = db.ExecContext(ctx, `CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (1)`)
			return err
		}, false},
		{"syntax error", func(t *testing.T) error {
			db, err := openDB(":memory:")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			_, err = db.ExecContext(ctx, `SELEC 1`)
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
}

// TestLockedUnavailable checks a store whose database another process
// keeps locked for writing: its writes fail, after the busy timeout, with
// errors wrapping store.ErrUnavailable that name the file, and write
// nothing; its reads still work (WAL readers do not wait for writers); once
// the lock is gone the same writes succeed.
func TestLockedUnavailable(t *testing.T) {
	shortBusyTimeout(t, 100*time.Millisecond)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ebb.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := serving.Deployment{Name: "before", Spec: serving.Spec{Model: "m"}}
	if _, err := s.CreateDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}

	writes := []struct {
		name string
		call func() error
	}{
		{"CreateDeployment", func() error {
			_, err := s.CreateDeployment(ctx, serving.Deployment{Name: "during", Spec: serving.Spec{Model: "m"}})
			return err
		}},
		{"UpdateDeployment", func() error {
			_, err := s.UpdateDeployment(ctx, "before", func(d *serving.Deployment) error {
				d.Spec.Model = "changed"
				return nil
			})
			return err
		}},
		{"DeleteDeployment", func() error { return s.DeleteDeployment(ctx, "before") }},
		{"CreateModel", func() error {
			_, err := s.CreateModel(ctx, registry.Model{Name: "during"})
			return err
		}},
	}
	t.Run("locked", func(t *testing.T) {
		lockWrites(t, path)
		for _, w := range writes {
			err := w.call()
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s while locked = %v, want an error wrapping store.ErrUnavailable", w.name, err)
				continue
			}
			if want := "SQLite at " + path + ": "; !strings.Contains(err.Error(), want) {
				t.Errorf("%s while locked = %q, want it to name the store (%q)", w.name, err, want)
			}
		}
		if ds, err := s.ListDeployments(ctx); err != nil || len(ds) != 1 {
			t.Errorf("ListDeployments while locked = %d deployments, %v; want 1, nil", len(ds), err)
		}
	})
	// The subtest's cleanup released the lock.
	ds, err := s.ListDeployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Name != "before" || ds[0].Generation != 1 {
		t.Errorf("deployments after the failed writes = %+v, want only \"before\" at generation 1", ds)
	}
	if ms, err := s.ListModels(ctx, registry.ListOptions{}); err != nil || len(ms) != 0 {
		t.Errorf("models after the failed writes = %+v, %v; want none", ms, err)
	}
	for _, w := range writes {
		if err := w.call(); err != nil {
			t.Errorf("%s after the lock went = %v, want success", w.name, err)
		}
	}
}
