package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/storetest"
)

func openT(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openT(t, filepath.Join(t.TempDir(), "ebb.db"))
	})
}

func TestConformanceInMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openT(t, ":memory:")
	})
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nested", "dir", "ebb.db") // parents do not exist yet
	s := openT(t, path)
	created, err := s.CreateDeployment(ctx, storetest.Deployment("diabetes"))
	if err != nil {
		t.Fatalf("CreateDeployment: %v", err)
	}
	updated, err := s.UpdateDeployment(ctx, "diabetes", func(d *serving.Deployment) error {
		d.Spec.Scaling.MinReplicas = 1
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateDeployment: %v", err)
	}
	h := replica.Handle{Spec: replica.Spec{ID: "r1", Deployment: "diabetes"}, Backend: "process", Endpoint: "http://127.0.0.1:1"}
	if err := s.PutReplica(ctx, h); err != nil {
		t.Fatalf("PutReplica: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s2 := openT(t, path)
	got, err := s2.GetDeployment(ctx, "diabetes")
	if err != nil {
		t.Fatalf("GetDeployment after reopen: %v", err)
	}
	if diff := cmp.Diff(updated, got); diff != "" {
		t.Errorf("deployment after reopen (-want +got):\n%s", diff)
	}
	if got.CreatedAt != created.CreatedAt {
		t.Errorf("CreatedAt after reopen = %v, want %v", got.CreatedAt, created.CreatedAt)
	}
	reps, err := s2.ListReplicas(ctx)
	if err != nil {
		t.Fatalf("ListReplicas after reopen: %v", err)
	}
	if diff := cmp.Diff([]replica.Handle{h}, reps); diff != "" {
		t.Errorf("replicas after reopen (-want +got):\n%s", diff)
	}

	var versions []int
	rows, err := s2.db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("query schema_migrations: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	var want []int
	for i := range migrations {
		want = append(want, i+1)
	}
	if diff := cmp.Diff(want, versions); diff != "" {
		t.Errorf("schema_migrations after two opens (-want +got):\n%s", diff)
	}
}

func TestPragmas(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "ebb.db"))
	for _, tt := range []struct{ pragma, want string }{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "10000"},
	} {
		var got string
		if err := s.db.QueryRow("PRAGMA " + tt.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
		}
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ebb.db")
	s := openT(t, path)
	if _, err := s.db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'x')`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s2, err := Open(context.Background(), path); err == nil {
		s2.Close()
		t.Fatalf("Open of a database with schema version 999 succeeded, want an error")
	}
}

func TestClock(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "ebb.db"))
	loc := time.FixedZone("X", 3*3600)
	now := time.Date(2025, 6, 1, 10, 0, 0, 123456789, loc)
	s.Now = func() time.Time { return now }

	created, err := s.CreateDeployment(ctx, storetest.Deployment("diabetes"))
	if err != nil {
		t.Fatalf("CreateDeployment: %v", err)
	}
	wantCreated := time.Date(2025, 6, 1, 7, 0, 0, 123456000, time.UTC)
	if created.CreatedAt != wantCreated || created.UpdatedAt != wantCreated {
		t.Errorf("CreatedAt, UpdatedAt = %v, %v; want %v (UTC, microseconds)", created.CreatedAt, created.UpdatedAt, wantCreated)
	}

	now = now.Add(time.Minute)
	updated, err := s.UpdateDeployment(ctx, "diabetes", func(d *serving.Deployment) error {
		d.Spec.Model = "other.json"
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateDeployment: %v", err)
	}
	if want := wantCreated.Add(time.Minute); updated.UpdatedAt != want || updated.CreatedAt != wantCreated {
		t.Errorf("after update CreatedAt, UpdatedAt = %v, %v; want %v, %v", updated.CreatedAt, updated.UpdatedAt, wantCreated, want)
	}
	got, err := s.GetDeployment(ctx, "diabetes")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(updated, got); diff != "" {
		t.Errorf("GetDeployment (-want +got):\n%s", diff)
	}
}

func TestErrorsWrap(t *testing.T) {
	ctx := context.Background()
	s := openT(t, filepath.Join(t.TempDir(), "ebb.db"))
	_, err := s.GetDeployment(ctx, "x")
	if !errors.Is(err, store.ErrNotFound) || errors.Is(err, sql.ErrNoRows) {
		t.Errorf("GetDeployment(missing) = %v; want store.ErrNotFound and not sql.ErrNoRows", err)
	}
	if want := `get deployment "x": deployment "x" not found`; err == nil || err.Error() != want {
		t.Errorf("GetDeployment(missing) message = %v, want %q", err, want)
	}
}
