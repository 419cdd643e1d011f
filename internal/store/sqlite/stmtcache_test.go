package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStmtCache runs queries on one connection of a database opened as
// the store opens it: a query run again reuses its statement, the same
// query run while its rows are still open gets a statement of its own and
// both read their rows right, and queries past the bound still run.
func TestStmtCache(t *testing.T) {
	ctx := context.Background()
	db, err := openDB(filepath.Join(t.TempDir(), "cache.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := c.ExecContext(ctx, `INSERT INTO t (k, v) VALUES (?, ?)`, i, string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	cached := func() (n int, busy int) {
		t.Helper()
		if err := c.Raw(func(dc any) error {
			cc := dc.(*cachingConn)
			cc.mu.Lock()
			defer cc.mu.Unlock()
			for _, s := range cc.stmts {
				n++
				if s.busy {
					busy++
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n, busy
	}
	if n, busy := cached(); n != 2 || busy != 0 {
		t.Fatalf("after CREATE and 3 INSERTs: %d statements kept, %d busy; want 2 kept, 0 busy", n, busy)
	}

	// The same query, nested: the outer rows stay right while the inner
	// query runs on a statement of its own.
	const q = `SELECT k, v FROM t WHERE k >= ? ORDER BY k`
	outer, err := c.QueryContext(ctx, q, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for outer.Next() {
		var k int
		var v string
		if err := outer.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		var inner []string
		rows, err := c.QueryContext(ctx, q, k)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k2 int
			var v2 string
			if err := rows.Scan(&k2, &v2); err != nil {
				t.Fatal(err)
			}
			inner = append(inner, v2)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		got = append(got, v+":"+strings.Join(inner, ""))
	}
	if err := outer.Err(); err != nil {
		t.Fatal(err)
	}
	outer.Close()
	if want := []string{"a:abc", "b:bc", "c:c"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("nested reads = %q, want %q", got, want)
	}
	if n, busy := cached(); n != 3 || busy != 0 {
		t.Fatalf("after the nested query: %d statements kept, %d busy; want 3 kept, 0 busy", n, busy)
	}

	// Past the bound, queries run and are not kept.
	for i := range maxCachedStmts + 5 {
		var v sql.NullString
		if err := c.QueryRowContext(ctx, `SELECT v FROM t WHERE k = ? AND ? >= 0`, 1, i).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "SELECT v FROM t WHERE k = ? -- "+strconv.Itoa(i), 1).Scan(&v); err != nil || v.String != "b" {
			t.Fatalf("query %d: %q, %v", i, v.String, err)
		}
	}
	if n, busy := cached(); n != maxCachedStmts || busy != 0 {
		t.Fatalf("after %d distinct queries: %d statements kept, %d busy; want %d kept, 0 busy", maxCachedStmts+5, n, busy, maxCachedStmts)
	}
}
