package sqlstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
	"github.com/ebb-ml/ebb/internal/store/storetest"
)

// Databases made before this package: testdata/v2-sqlite.sql and
// v2-postgres.sql are dumps of databases that the separate SQLite and
// PostgreSQL stores (schema version 2) created and filled with one of each
// kind of record; v2-records.json is what those stores read back from
// them, the same for both.

// records is every record of the v2 databases, as the store reads them.
type records struct {
	Deployments []serving.Deployment
	Replicas    []replica.Handle
	Models      []registry.Model
	Versions    []registry.Version
	Aliases     []registry.Alias
	History     []registry.AliasMove
	Serving     []registry.ServingRecord
}

func readRecords(t *testing.T, s *sqlstore.Store) records {
	t.Helper()
	ctx := context.Background()
	var r records
	var err error
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	r.Deployments, err = s.ListDeployments(ctx)
	check("ListDeployments", err)
	r.Replicas, err = s.ListReplicas(ctx)
	check("ListReplicas", err)
	r.Models, err = s.ListModels(ctx, registry.ListOptions{})
	check("ListModels", err)
	for _, m := range []string{"diabetes", "iris"} {
		vs, err := s.ListVersions(ctx, m, registry.VersionListOptions{})
		check("ListVersions", err)
		r.Versions = append(r.Versions, vs...)
		as, err := s.ListAliases(ctx, m)
		check("ListAliases", err)
		r.Aliases = append(r.Aliases, as...)
	}
	for _, a := range []string{"champion", "old"} {
		h, err := s.AliasHistory(ctx, "diabetes", a)
		check("AliasHistory", err)
		r.History = append(r.History, h...)
	}
	r.Serving, err = s.ServingHistory(ctx, "diabetes")
	check("ServingHistory", err)
	return r
}

// loadV2 returns a database made from the backend's v2 dump.
func loadV2(t *testing.T, b backend) string {
	t.Helper()
	dump, err := os.ReadFile(filepath.Join("testdata", "v2-"+b.dialect+".sql"))
	if err != nil {
		t.Fatal(err)
	}
	where := b.newDB(t)
	db := b.raw(t, where)
	if _, err := db.Exec(string(dump)); err != nil {
		t.Fatalf("load the v2 %s dump: %v", b.dialect, err)
	}
	db.Close() // the dump changes its session's settings
	return where
}

// TestOpenV2Database opens a database made by the store of schema version
// 2 and checks that the store reads every record as that store did, that
// the schema is the one the store creates today, and that the store can
// write to it.
func TestOpenV2Database(t *testing.T) {
	each(t, true, func(t *testing.T, b backend) {
		ctx := context.Background()
		where := loadV2(t, b)
		s := b.openT(t, where)

		raw, err := os.ReadFile(filepath.Join("testdata", "v2-records.json"))
		if err != nil {
			t.Fatal(err)
		}
		var want records
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, readRecords(t, s), storetestOpts); diff != "" {
			t.Errorf("records of the v2 database (-want +got):\n%s", diff)
		}

		fresh := b.newDB(t)
		b.openT(t, fresh).Close()
		if diff := cmp.Diff(schema(t, b, fresh), schema(t, b, where)); diff != "" {
			t.Errorf("schema of the v2 database (-new database +v2 database):\n%s", diff)
		}

		// Writes: new rows after the old ones (ids continue), no time set
		// and then set, unique violations still reported.
		at := time.Date(2025, 4, 1, 0, 0, 0, 1000, time.UTC)
		v, err := s.CreateVersion(ctx, registry.Version{Model: "iris", ArtifactURI: "file:///iris2.json", SHA256: "01", Engine: "trees"})
		if err != nil || v.Version != 2 {
			t.Fatalf("CreateVersion(iris) = version %d, %v; want version 2", v.Version, err)
		}
		if err := s.TouchVersion(ctx, "diabetes", 2, at); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetVersion(ctx, "diabetes", 2); err != nil || !got.LastUsedAt.Equal(at) {
			t.Errorf("LastUsedAt of diabetes:2 after TouchVersion = %v, %v; want %v", got.LastUsedAt, err, at)
		}
		if _, err := s.SetAlias(ctx, "diabetes", "champion", 1, 2, "dave"); err != nil {
			t.Fatal(err)
		}
		if h, err := s.AliasHistory(ctx, "diabetes", "champion"); err != nil || len(h) != 3 || h[2].By != "dave" {
			t.Errorf("AliasHistory(diabetes@champion) = %+v, %v; want the two old moves and dave's", h, err)
		}
		if err := s.RecordServing(ctx, "diabetes", "diabetes", 1, at); err != nil {
			t.Fatal(err)
		}
		if h, err := s.ServingHistory(ctx, "diabetes"); err != nil || len(h) != 3 {
			t.Errorf("ServingHistory(diabetes) = %+v, %v; want three records", h, err)
		}
		if d, err := s.UpdateDeployment(ctx, "iris", func(d *serving.Deployment) error {
			d.Spec.Scaling.MaxReplicas = 5
			return nil
		}); err != nil || d.Generation != 2 {
			t.Errorf("UpdateDeployment(iris) = generation %d, %v; want 2", d.Generation, err)
		}
		if _, err := s.CreateDeployment(ctx, storetest.Deployment("iris")); !errors.Is(err, store.ErrExists) {
			t.Errorf("CreateDeployment(iris) = %v, want store.ErrExists", err)
		}
		if _, err := s.CreateModel(ctx, registry.Model{Name: "diabetes"}); !errors.Is(err, store.ErrExists) {
			t.Errorf("CreateModel(diabetes) = %v, want store.ErrExists", err)
		}
		// Tables of later migrations are there and empty.
		if rs, err := s.ListRollouts(ctx, ""); err != nil || len(rs) != 0 {
			t.Errorf("ListRollouts of the v2 database = %v, %v; want none", rs, err)
		}
		if _, err := s.CreateRollout(ctx, storetest.Rollout("iris", store.RolloutCanary)); err != nil {
			t.Errorf("CreateRollout(iris) = %v", err)
		}
	})
}

// storetestOpts compares replica state semantically, since a database may
// reformat the JSON it keeps.
var storetestOpts = cmp.Comparer(func(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	return cmp.Equal(x, y)
})

// schema returns the database's schema as text to compare.
func schema(t *testing.T, b backend, where string) string {
	t.Helper()
	switch b.dialect {
	case "sqlite":
		rows, err := b.raw(t, where).Query(`SELECT type, name, sql FROM sqlite_master ORDER BY type, name`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out strings.Builder
		for rows.Next() {
			var typ, name string
			var sql *string
			if err := rows.Scan(&typ, &name, &sql); err != nil {
				t.Fatal(err)
			}
			out.WriteString(typ + " " + name + "\n")
			if sql != nil {
				out.WriteString(strings.Join(strings.Fields(*sql), " ") + "\n")
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out.String()
	case "postgres":
		bin, err := pgtest.BinDir()
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(filepath.Join(bin, "pg_dump"), "--schema-only", "--no-owner", "--no-privileges", where).Output()
		if err != nil {
			t.Fatalf("pg_dump: %v", err)
		}
		var keep []string
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(line, `\`) { // \restrict KEY differs every time
				keep = append(keep, line)
			}
		}
		return strings.Join(keep, "\n")
	}
	t.Fatalf("no schema dump for %s", b.dialect)
	return ""
}
