package postgres

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
	"github.com/ebb-ml/ebb/internal/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func openT(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openT(t, pgtest.Start(t))
	})
}

// TestConformanceTwoStores runs the suite against a store whose reads and
// writes alternate between two Stores on one database, as two ebb processes
// sharing it would.
func TestConformanceTwoStores(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		dsn := pgtest.Start(t)
		return &alternating{stores: [2]*Store{openT(t, dsn), openT(t, dsn)}}
	})
}

// alternating sends each call to the next of its stores in turn.
type alternating struct {
	mu     sync.Mutex
	n      int
	stores [2]*Store
}

func (a *alternating) next() *Store {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	return a.stores[a.n%2]
}

func (a *alternating) CreateDeployment(ctx context.Context, d serving.Deployment) (serving.Deployment, error) {
	return a.next().CreateDeployment(ctx, d)
}
func (a *alternating) GetDeployment(ctx context.Context, name string) (serving.Deployment, error) {
	return a.next().GetDeployment(ctx, name)
}
func (a *alternating) ListDeployments(ctx context.Context) ([]serving.Deployment, error) {
	return a.next().ListDeployments(ctx)
}
func (a *alternating) UpdateDeployment(ctx context.Context, name string, fn func(*serving.Deployment) error) (serving.Deployment, error) {
	return a.next().UpdateDeployment(ctx, name, fn)
}
func (a *alternating) DeleteDeployment(ctx context.Context, name string) error {
	return a.next().DeleteDeployment(ctx, name)
}
func (a *alternating) PutReplica(ctx context.Context, h replica.Handle) error {
	return a.next().PutReplica(ctx, h)
}
func (a *alternating) DeleteReplica(ctx context.Context, id string) error {
	return a.next().DeleteReplica(ctx, id)
}
func (a *alternating) ListReplicas(ctx context.Context) ([]replica.Handle, error) {
	return a.next().ListReplicas(ctx)
}

func schemaVersions(t *testing.T, s *Store) []int {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("query schema_migrations: %v", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatalf("query schema_migrations: %v", err)
	}
	return versions
}

func allVersions() []int {
	var want []int
	for i := range migrations {
		want = append(want, i+1)
	}
	return want
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	s := openT(t, dsn)
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

	s2 := openT(t, dsn)
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
	if diff := cmp.Diff(allVersions(), schemaVersions(t, s2)); diff != "" {
		t.Errorf("schema_migrations after two opens (-want +got):\n%s", diff)
	}
}

// TestOpenConcurrent opens one new database from several stores at once, as
// ebb processes starting together would: each migration applies once.
func TestOpenConcurrent(t *testing.T) {
	dsn := pgtest.Start(t)
	const n = 6
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = Open(context.Background(), dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		stores[i].Close()
	}
	if t.Failed() {
		return
	}
	s := openT(t, dsn)
	if diff := cmp.Diff(allVersions(), schemaVersions(t, s)); diff != "" {
		t.Errorf("schema_migrations after concurrent opens (-want +got):\n%s", diff)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	dsn := pgtest.Start(t)
	s := openT(t, dsn)
	if _, err := s.pool.Exec(context.Background(), `INSERT INTO schema_migrations (version, applied_at) VALUES (999, now())`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(context.Background(), dsn)
	if err == nil {
		s2.Close()
		t.Fatalf("Open of a database with schema version 999 succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "upgrade ebb") {
		t.Errorf("Open error = %v, want it to say to upgrade ebb", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := pgtest.Start(t)
	for _, tt := range []struct {
		name, dsn, want string
	}{
		{"empty", "", "empty DSN"},
		{"garbage", "postgres://%zz", "invalid DSN"},
		{"missing database", strings.Replace(dsn, "/t", "/nosuchdb_t", 1), "cannot connect"},
		{"secret kept", "postgres://u:hunter2@127.0.0.1:1/ebb?sslmode=disable&connect_timeout=5", "cannot connect"},
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
		})
	}
}

func TestClock(t *testing.T) {
	ctx := context.Background()
	s := openT(t, pgtest.Start(t))
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
	s := openT(t, pgtest.Start(t))
	_, err := s.GetDeployment(ctx, "x")
	if !errors.Is(err, store.ErrNotFound) || errors.Is(err, pgx.ErrNoRows) {
		t.Errorf("GetDeployment(missing) = %v; want store.ErrNotFound and not pgx.ErrNoRows", err)
	}
	if want := `get deployment "x": deployment "x" not found`; err == nil || err.Error() != want {
		t.Errorf("GetDeployment(missing) message = %v, want %q", err, want)
	}
}

// TestListByteOrder checks that names sort by bytes, as in the SQLite
// store, whatever the database's collation.
func TestListByteOrder(t *testing.T) {
	ctx := context.Background()
	s := openT(t, pgtest.Start(t))
	for _, name := range []string{"b", "a-2", "B", "a1", "a"} {
		if _, err := s.CreateDeployment(ctx, storetest.Deployment(name)); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.ListDeployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range list {
		got = append(got, d.Name)
	}
	if diff := cmp.Diff([]string{"B", "a", "a-2", "a1", "b"}, got); diff != "" {
		t.Errorf("ListDeployments order (-want +got):\n%s", diff)
	}
}
