package sqlstore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/ebb-ml/ebb/internal/store/pgtest"
	"github.com/ebb-ml/ebb/internal/store/postgres"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// The store's own tests run against every database it supports.

func TestMain(m *testing.M) { pgtest.Main(m) }

// backend is one database the store runs on.
type backend struct {
	name string
	// dialect names the database: "sqlite" or "postgres".
	dialect string
	// d is the package's Dialect.
	d sqlstore.Dialect
	// newDB returns where a new, empty database is: a path or a DSN.
	newDB func(t *testing.T) string
	// open is the package's Open.
	open func(ctx context.Context, where string) (*sqlstore.Store, error)
	// driver is the database/sql driver that opens where directly, to set
	// up or inspect a database; "" when another connection would not see
	// the store's database (SQLite's :memory:).
	driver string
}

// shared reports whether several stores, as several processes, can open
// one database.
func (b backend) shared() bool { return b.driver != "" }

var backends = []backend{
	{
		name:    "sqlite",
		dialect: "sqlite",
		d:       sqlite.Dialect{},
		newDB:   func(t *testing.T) string { return filepath.Join(t.TempDir(), "ebb.db") },
		open:    sqlite.Open,
		driver:  "sqlite",
	},
	{
		name:    "sqlite-memory",
		dialect: "sqlite",
		d:       sqlite.Dialect{},
		newDB:   func(*testing.T) string { return ":memory:" },
		open:    sqlite.Open,
	},
	{
		name:    "postgres",
		dialect: "postgres",
		d:       postgres.Dialect{},
		newDB:   func(t *testing.T) string { return pgtest.Start(t) },
		open:    postgres.Open,
		driver:  "pgx",
	},
}

// each runs fn as a subtest for every backend; shared backends only when
// onlyShared is set.
func each(t *testing.T, onlyShared bool, fn func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range backends {
		if onlyShared && !b.shared() {
			continue
		}
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

// openT opens a store on the database at where, closed at cleanup.
func (b backend) openT(t *testing.T, where string) *sqlstore.Store {
	t.Helper()
	s, err := b.open(context.Background(), where)
	if err != nil {
		t.Fatalf("Open(%q): %v", where, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// raw opens the database at where with database/sql alone.
func (b backend) raw(t *testing.T, where string) *sql.DB {
	t.Helper()
	db, err := sql.Open(b.driver, where)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
