package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, for a database to write to
)

func TestPrefixEnd(t *testing.T) {
	tests := []struct{ in, want string }{
		{"m-", "m."},
		{"a", "b"},
		{"a\xff", "b"},
		{"\xff", ""},
		{"", ""},
		{"é", "ê"},                     // c3 a9 -> c3 aa
		{"\u00ff", "\u0100"},           // c3 bf -> c3 c0 is not UTF-8: the next rune instead
		{"x\u00ff", "x\u0100"},         // likewise
		{"\u007f", "\u0080"},           // 7f -> 80 is not UTF-8
		{"\ud7ff", "\ue000"},           // the next rune skips the surrogates
		{"a\U0010ffff", "b"},           // no rune after the last
		{"\U0010ffff", ""},             // nothing sorts after every string starting with it
		{"\xc3", "\xc4"},               // not UTF-8 in: bytes out
		{"a\xc3\xbf\xff", "a\xc3\xc0"}, // likewise
	}
	for _, tt := range tests {
		if got := prefixEnd(tt.in); got != tt.want {
			t.Errorf("prefixEnd(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestPrefixEndRange checks, over strings of runes where byte-wise bounds
// go wrong, that a UTF-8 string starts with a prefix exactly when it lies
// in [prefix, prefixEnd(prefix)), the range ListModels asks for.
func TestPrefixEndRange(t *testing.T) {
	alphabet := []string{"a", "\u007f", "\u0080", "\u00bf", "\u00c0", "\u00ff", "\u0100", "\ud7ff", "\ue000", "\U0010ffff"}
	strs := []string{""}
	for _, a := range alphabet {
		strs = append(strs, a)
		for _, b := range alphabet {
			strs = append(strs, a+b)
		}
	}
	for _, prefix := range strs[1:] {
		end := prefixEnd(prefix)
		for _, s := range strs {
			inRange := s >= prefix && (end == "" || s < end)
			if want := strings.HasPrefix(s, prefix); inRange != want {
				t.Errorf("prefix %q, end %q: %q in range = %v, has prefix = %v", prefix, end, s, inRange, want)
			}
		}
	}
}

func TestTimeCol(t *testing.T) {
	at := time.Date(2025, 6, 1, 7, 0, 0, 123456000, time.UTC)
	for _, tt := range []struct {
		name    string
		src     any
		want    time.Time
		wantErr string
	}{
		{"null", nil, time.Time{}, ""},
		{"empty text", "", time.Time{}, ""},
		{"text", "2025-06-01T07:00:00.123456Z", at, ""},
		{"bytes", []byte("2025-06-01T10:00:00.123456+03:00"), at, ""},
		{"time", at.In(time.FixedZone("X", 3600)), at, ""},
		{"bad text", "yesterday", time.Time{}, `stored time "yesterday"`},
		{"number", int64(7), time.Time{}, "stored time has type int64"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := time.Unix(1, 0)
			err := timeCol(&got).Scan(tt.src)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Scan(%v) = %v, want an error containing %q", tt.src, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Scan(%v): %v", tt.src, err)
			}
			if got != tt.want || got.Location() != time.UTC {
				t.Errorf("Scan(%v) = %v, want %v in UTC", tt.src, got, tt.want)
			}
		})
	}
}

var errRace = errors.New("lost a race")

// raceDialect is SQLite's dialect, as far as write needs one, where
// errRace may be retried.
type raceDialect struct{ Dialect }

func (raceDialect) Rebind(q string) string       { return q }
func (raceDialect) SerialWrites() bool           { return true }
func (raceDialect) IsRetryable(err error) bool   { return errors.Is(err, errRace) }
func (raceDialect) IsUniqueViolation(error) bool { return false }
func (raceDialect) IsUnavailable(error) bool     { return false }

// TestWriteRetries checks that a write transaction the dialect calls
// retryable runs again, from a clean start, at most maxAttempts times.
func TestWriteRetries(t *testing.T) {
	for _, tt := range []struct {
		name      string
		failures  int   // times fn fails before it succeeds
		failWith  error // what it fails with
		wantCalls int
		wantErr   error
		wantRows  int
	}{
		{"no failure", 0, errRace, 1, nil, 1},
		{"retried", maxAttempts - 1, errRace, maxAttempts, nil, 1},
		{"too many", maxAttempts, errRace, maxAttempts, errRace, 0},
		{"not retryable", 1, sql.ErrConnDone, 1, sql.ErrConnDone, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			db, err := sql.Open("sqlite", ":memory:")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(1)
			if _, err := db.Exec(`CREATE TABLE t (x INTEGER)`); err != nil {
				t.Fatal(err)
			}
			s := &Store{Now: time.Now, db: db, d: raceDialect{}}
			calls := 0
			err = s.write(ctx, func(tx conn) error {
				calls++
				if _, err := tx.exec(ctx, `INSERT INTO t (x) VALUES (?)`, calls); err != nil {
					return err
				}
				if calls <= tt.failures {
					return tt.failWith
				}
				return nil
			})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("write = %v, want %v", err, tt.wantErr)
			}
			if calls != tt.wantCalls {
				t.Errorf("fn ran %d times, want %d", calls, tt.wantCalls)
			}
			var rows []int
			r, err := db.Query(`SELECT x FROM t`)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for r.Next() {
				var x int
				r.Scan(&x)
				rows = append(rows, x)
			}
			if len(rows) != tt.wantRows || (tt.wantRows == 1 && rows[0] != calls) {
				t.Errorf("rows after write = %v, want only the last attempt's (%d)", rows, calls)
			}
		})
	}
}

// TestMigrationsRender checks that every migration renders, leaving no
// template action; compat_test.go checks what they render to.
func TestMigrationsRender(t *testing.T) {
	cols := Columns{Key: "K", Int64: "I", Time: "T", OptionalTime: "O", JSON: "J", Bytes: "B", Serial: "S"}
	for i, m := range append([]string{schemaMigrations}, migrations...) {
		ddl, err := renderDDL(m, cols)
		if err != nil {
			t.Errorf("migration %d: %v", i, err)
		}
		if strings.Contains(ddl, "{{") {
			t.Errorf("migration %d still has a template action:\n%s", i, ddl)
		}
	}
	got, err := renderDDL("CREATE TABLE t (a {{.Key}}, b {{.Time}},\n\tc {{.OptionalTime}} NOT NULL, {{.Serial}}){{.JSON}}{{.Bytes}}{{.Int64}}", cols)
	if want := "CREATE TABLE t (a K, b T,\n\tc O NOT NULL, S)JBI"; err != nil || got != want {
		t.Errorf("renderDDL = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{`{{.Nope}}`, `{{Key}}`, `a {{.Key`, `{{ .Key }}`, `{{}}`} {
		if got, err := renderDDL(bad, cols); err == nil {
			t.Errorf("renderDDL(%q) = %q, want an error", bad, got)
		}
	}
}
