package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/registry/registrytest"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
	"github.com/ebb-ml/ebb/internal/store/storetest"
)

func TestStoreConformance(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		storetest.Run(t, func(t *testing.T) storetest.Store {
			return b.openT(t, b.newDB(t))
		})
	})
}

func TestRegistryConformance(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		registrytest.Run(t, func(t *testing.T) registry.Store {
			return b.openT(t, b.newDB(t))
		})
	})
}

// TestStoreConformanceTwoStores runs the suite against a store whose reads
// and writes alternate between two Stores on one database, as two ebb
// processes sharing it would.
func TestStoreConformanceTwoStores(t *testing.T) {
	each(t, true, func(t *testing.T, b backend) {
		storetest.Run(t, func(t *testing.T) storetest.Store {
			where := b.newDB(t)
			return &alternating{stores: [2]*sqlstore.Store{b.openT(t, where), b.openT(t, where)}}
		})
	})
}

// alternating sends each call to the next of its stores in turn.
type alternating struct {
	mu     sync.Mutex
	n      int
	stores [2]*sqlstore.Store
}

func (a *alternating) next() *sqlstore.Store {
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
func (a *alternating) DeploymentsStamp(ctx context.Context) (string, error) {
	return a.next().DeploymentsStamp(ctx)
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

// schemaVersions returns the versions schema_migrations lists.
func schemaVersions(t *testing.T, db *sql.DB) []int {
	t.Helper()
	rows, err := db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("query schema_migrations: %v", err)
	}
	defer rows.Close()
	var versions []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return versions
}

// allVersions returns 1 to sqlstore.SchemaVersion.
func allVersions() []int {
	var want []int
	for v := 1; v <= sqlstore.SchemaVersion; v++ {
		want = append(want, v)
	}
	return want
}

func TestReopenKeepsData(t *testing.T) {
	each(t, true, func(t *testing.T, b backend) {
		ctx := context.Background()
		where := b.newDB(t)
		if b.name == "sqlite" {
			where = strings.Replace(where, "ebb.db", "nested/dir/ebb.db", 1) // parents do not exist yet
		}
		s := b.openT(t, where)
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

		s2 := b.openT(t, where)
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
		if diff := cmp.Diff(allVersions(), schemaVersions(t, b.raw(t, where))); diff != "" {
			t.Errorf("schema_migrations after two opens (-want +got):\n%s", diff)
		}
	})
}

// TestOpenConcurrent opens one new database from several stores at once, as
// ebb processes starting together would: each migration applies once.
func TestOpenConcurrent(t *testing.T) {
	each(t, true, func(t *testing.T, b backend) {
		where := b.newDB(t)
		const n = 6
		stores := make([]*sqlstore.Store, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { stores[i], errs[i] = b.open(context.Background(), where) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Open %d: %v", i, err)
				continue
			}
			stores[i].Close()
		}
		if diff := cmp.Diff(allVersions(), schemaVersions(t, b.raw(t, where))); diff != "" {
			t.Errorf("schema_migrations after concurrent opens (-want +got):\n%s", diff)
		}
	})
}

func TestNewerSchemaRefused(t *testing.T) {
	each(t, true, func(t *testing.T, b backend) {
		where := b.newDB(t)
		b.openT(t, where).Close()
		if _, err := b.raw(t, where).Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (999, CURRENT_TIMESTAMP)`); err != nil {
			t.Fatal(err)
		}
		s, err := b.open(context.Background(), where)
		if err == nil {
			s.Close()
			t.Fatalf("Open of a database with schema version 999 succeeded, want an error")
		}
		if want := fmt.Sprintf("database schema version 999 is newer than this ebb knows (%d): upgrade ebb", sqlstore.SchemaVersion); !strings.Contains(err.Error(), want) {
			t.Errorf("Open error = %v, want it to say %q", err, want)
		}
	})
}

func TestClock(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.openT(t, b.newDB(t))
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
	})
}

func TestErrorsWrap(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.openT(t, b.newDB(t))
		_, err := s.GetDeployment(ctx, "x")
		if !errors.Is(err, store.ErrNotFound) || errors.Is(err, sql.ErrNoRows) {
			t.Errorf("GetDeployment(missing) = %v; want store.ErrNotFound and not sql.ErrNoRows", err)
		}
		if want := `get deployment "x": deployment "x" not found`; err == nil || err.Error() != want {
			t.Errorf("GetDeployment(missing) message = %v, want %q", err, want)
		}
		if _, err := s.CreateModel(ctx, registry.Model{Name: "m"}); err != nil {
			t.Fatal(err)
		}
		_, err = s.CreateModel(ctx, registry.Model{Name: "m"})
		if want := `create model "m": model "m" already exists`; err == nil || err.Error() != want || !errors.Is(err, store.ErrExists) {
			t.Errorf("CreateModel(taken) = %v, want %q wrapping store.ErrExists", err, want)
		}
	})
}

// TestListByteOrder checks that names sort by bytes whatever the
// database's collation.
func TestListByteOrder(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.openT(t, b.newDB(t))
		for _, name := range []string{"b", "a-2", "B", "a1", "a"} {
			if _, err := s.CreateDeployment(ctx, storetest.Deployment(name)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.CreateModel(ctx, registry.Model{Name: name}); err != nil {
				t.Fatal(err)
			}
		}
		deployments, err := s.ListDeployments(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range deployments {
			got = append(got, d.Name)
		}
		want := []string{"B", "a", "a-2", "a1", "b"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ListDeployments order (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want, modelNames(t, s, registry.ListOptions{})); diff != "" {
			t.Errorf("ListModels order (-want +got):\n%s", diff)
		}
	})
}

// modelNames returns the names ListModels lists.
func modelNames(t *testing.T, s *sqlstore.Store, opts registry.ListOptions) []string {
	t.Helper()
	ms, err := s.ListModels(context.Background(), opts)
	if err != nil {
		t.Fatalf("ListModels(%+v): %v", opts, err)
	}
	names := []string{}
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return names
}

// TestListModelsNonASCIIPrefix checks prefixes whose byte-wise upper bound
// is not valid UTF-8, which the store must not send to PostgreSQL.
func TestListModelsNonASCIIPrefix(t *testing.T) {
	each(t, false, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.openT(t, b.newDB(t))
		for _, name := range []string{"\u00ffa", "\u00ffb", "\u0100", "\u00fe", "z", "\U0010ffff", "\U0010ffffx"} {
			if _, err := s.CreateModel(ctx, registry.Model{Name: name}); err != nil {
				t.Fatalf("CreateModel(%q): %v", name, err)
			}
		}
		for _, tt := range []struct {
			prefix string
			want   []string
		}{
			{"\u00ff", []string{"\u00ffa", "\u00ffb"}},
			{"\u00fe", []string{"\u00fe"}},
			{"\U0010ffff", []string{"\U0010ffff", "\U0010ffffx"}},
		} {
			if diff := cmp.Diff(tt.want, modelNames(t, s, registry.ListOptions{Prefix: tt.prefix})); diff != "" {
				t.Errorf("ListModels(prefix %q) (-want +got):\n%s", tt.prefix, diff)
			}
		}
	})
}

// TestAliasCompareAndSwapRace repeats many rounds of concurrent alias moves
// from the same version, from two stores (as two ebb processes): in every
// round exactly one move wins, and the history holds only winners.
func TestAliasCompareAndSwapRace(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	each(t, true, func(t *testing.T, b backend) {
		ctx := context.Background()
		where := b.newDB(t)
		stores := []*sqlstore.Store{b.openT(t, where), b.openT(t, where)}
		s := stores[0]
		const movers, rounds = 12, 25
		if _, err := s.CreateModel(ctx, registry.Model{Name: "m"}); err != nil {
			t.Fatal(err)
		}
		for range movers + 1 {
			if _, err := s.CreateVersion(ctx, registry.Version{Model: "m", ArtifactURI: "file:///m", SHA256: "00", Engine: "trees"}); err != nil {
				t.Fatal(err)
			}
		}
		for round := range rounds {
			alias := fmt.Sprintf("a%d", round)
			var wg sync.WaitGroup
			start := make(chan struct{})
			wins := make([]bool, movers+1)
			errs := make([]error, movers+1)
			if _, err := s.SetAlias(ctx, "m", alias, 1, 0, "setup"); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= movers; i++ {
				wg.Go(func() {
					<-start
					_, errs[i] = stores[i%2].SetAlias(ctx, "m", alias, i+1, 1, fmt.Sprint(i))
					wins[i] = errs[i] == nil
				})
			}
			close(start)
			wg.Wait()
			won := 0
			for i := 1; i <= movers; i++ {
				switch {
				case wins[i]:
					won++
				case !errors.Is(errs[i], store.ErrConflict):
					t.Errorf("round %d mover %d: %v, want success or store.ErrConflict", round, i, errs[i])
				}
			}
			if won != 1 {
				t.Fatalf("round %d: %d concurrent moves from version 1 won, want exactly 1", round, won)
			}
			hist, err := s.AliasHistory(ctx, "m", alias)
			if err != nil {
				t.Fatal(err)
			}
			if len(hist) != 2 {
				t.Fatalf("round %d: history %+v, want the creation and one move", round, hist)
			}
		}
	})
}

// TestErrorClassification checks each Dialect's reading of its database's
// errors on real ones, wrapped as the store wraps them.
func TestErrorClassification(t *testing.T) {
	each(t, true, func(t *testing.T, b backend) {
		db := b.raw(t, b.newDB(t))
		if _, err := db.Exec(`CREATE TABLE p (id TEXT PRIMARY KEY, u TEXT UNIQUE, n TEXT NOT NULL);
			INSERT INTO p VALUES ('a', 'x', 'n')`); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, stmt        string
			unique, retryable bool
		}{
			{"primary key", `INSERT INTO p VALUES ('a', 'y', 'n')`, true, false},
			{"unique", `INSERT INTO p VALUES ('b', 'x', 'n')`, true, false},
			{"not null", `INSERT INTO p VALUES ('c', 'z', NULL)`, false, false},
			{"syntax", `INSERT INTO`, false, false},
		}
		if b.dialect == "postgres" {
			raise := func(code string) string {
				return `DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '` + code + `'; END $$`
			}
			tests = append(tests, []struct {
				name, stmt        string
				unique, retryable bool
			}{
				{"serialization failure", raise("serialization_failure"), false, true},
				{"deadlock", raise("deadlock_detected"), false, true},
				{"lock timeout", raise("lock_not_available"), false, false},
			}...)
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := db.Exec(tt.stmt)
				if err == nil {
					t.Fatalf("%s succeeded, want an error", tt.stmt)
				}
				err = fmt.Errorf("create thing: %w", err)
				if got := b.d.IsUniqueViolation(err); got != tt.unique {
					t.Errorf("IsUniqueViolation(%v) = %v, want %v", err, got, tt.unique)
				}
				if got := b.d.IsRetryable(err); got != tt.retryable {
					t.Errorf("IsRetryable(%v) = %v, want %v", err, got, tt.retryable)
				}
			})
		}
		for _, err := range []error{nil, errors.New("UNIQUE constraint failed: duplicate key value")} {
			if b.d.IsUniqueViolation(err) || b.d.IsRetryable(err) {
				t.Errorf("IsUniqueViolation or IsRetryable(%v) = true, want false", err)
			}
		}
	})
}

// TestDeleteModelRace deletes a model while two stores (as two ebb
// processes) create its versions and move its aliases: each of those either
// happens before the deletion, and is deleted with the model, or finds no
// model; nothing of the model is left behind.
func TestDeleteModelRace(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	each(t, true, func(t *testing.T, b backend) {
		ctx := context.Background()
		where := b.newDB(t)
		stores := []*sqlstore.Store{b.openT(t, where), b.openT(t, where)}
		db := b.raw(t, where)
		s := stores[0]
		const writers, rounds = 8, 15
		for round := range rounds {
			if _, err := s.CreateModel(ctx, registry.Model{Name: "m"}); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if _, err := s.CreateVersion(ctx, version("m", "a")); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if _, err := s.SetAlias(ctx, "m", "champion", 1, 0, "setup"); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make([]error, writers+1)
			wg.Go(func() {
				<-start
				errs[0] = stores[round%2].DeleteModel(ctx, "m")
			})
			for i := 1; i <= writers; i++ {
				wg.Go(func() {
					<-start
					st := stores[i%2]
					if i%2 == 0 {
						_, errs[i] = st.CreateVersion(ctx, version("m", "b"))
					} else {
						_, errs[i] = st.SetAlias(ctx, "m", fmt.Sprint("a", i), 1, registry.AnyVersion, "w")
					}
				})
			}
			close(start)
			wg.Wait()
			if errs[0] != nil {
				t.Fatalf("round %d: DeleteModel: %v", round, errs[0])
			}
			for i, err := range errs[1:] {
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("round %d writer %d: %v, want success or store.ErrNotFound", round, i+1, err)
				}
			}
			for _, table := range []string{"models WHERE name", "model_versions WHERE model",
				"model_aliases WHERE model", "model_alias_moves WHERE model"} {
				var n int
				if err := db.QueryRow(b.d.Rebind(`SELECT count(*) FROM `+table+` = ?`), "m").Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 0 {
					t.Fatalf("round %d: %d rows of the deleted model left in %s", round, n, table)
				}
			}
		}
	})
}
