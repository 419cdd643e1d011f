package sqlstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
	"github.com/ebb-ml/ebb/internal/store/postgres"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
)

// password is in the DSN of TestPostgresStopped's store (the throwaway
// cluster trusts every connection, so any password works); no error may
// show it.
const password = "hunter2-not-shown"

// storeCall is one store method, called with arguments that succeed once
// the database is back, in the order of the table.
type storeCall struct {
	name string
	call func(ctx context.Context, s *sqlstore.Store) error
}

func storeCalls() []storeCall {
	spec := serving.Spec{Model: "m@champion"}
	at := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	return []storeCall{
		{"CreateDeployment", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.CreateDeployment(ctx, serving.Deployment{Name: "during", Spec: spec})
			return err
		}},
		{"GetDeployment", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.GetDeployment(ctx, "before")
			return err
		}},
		{"ListDeployments", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.ListDeployments(ctx)
			return err
		}},
		{"UpdateDeployment", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.UpdateDeployment(ctx, "before", func(d *serving.Deployment) error {
				d.Spec.Model = "m:1"
				return nil
			})
			return err
		}},
		{"PutReplica", func(ctx context.Context, s *sqlstore.Store) error {
			return s.PutReplica(ctx, replica.Handle{Spec: replica.Spec{ID: "r2", Deployment: "before"}})
		}},
		{"ListReplicas", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.ListReplicas(ctx)
			return err
		}},
		{"DeleteReplica", func(ctx context.Context, s *sqlstore.Store) error { return s.DeleteReplica(ctx, "r1") }},
		{"CreateModel", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.CreateModel(ctx, registry.Model{Name: "during"})
			return err
		}},
		{"GetModel", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.GetModel(ctx, "m")
			return err
		}},
		{"ListModels", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.ListModels(ctx, registry.ListOptions{})
			return err
		}},
		{"CreateVersion", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.CreateVersion(ctx, version("m", "b"))
			return err
		}},
		{"GetVersion", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.GetVersion(ctx, "m", 1)
			return err
		}},
		{"ListVersions", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.ListVersions(ctx, "m", registry.VersionListOptions{})
			return err
		}},
		{"SetVersionState", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.SetVersionState(ctx, "m", 1, registry.StateActive, registry.StateWarned, at)
			return err
		}},
		{"TouchVersion", func(ctx context.Context, s *sqlstore.Store) error { return s.TouchVersion(ctx, "m", 1, at) }},
		{"UpdateVersionTags", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.UpdateVersionTags(ctx, "m", 1, map[string]string{"k": "v"}, nil)
			return err
		}},
		{"SetAlias", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.SetAlias(ctx, "m", "champion", 2, 1, "bob")
			return err
		}},
		{"GetAlias", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.GetAlias(ctx, "m", "champion")
			return err
		}},
		{"ListAliases", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.ListAliases(ctx, "m")
			return err
		}},
		{"AliasHistory", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.AliasHistory(ctx, "m", "champion")
			return err
		}},
		{"RecordServing", func(ctx context.Context, s *sqlstore.Store) error {
			return s.RecordServing(ctx, "before", "m", 2, at)
		}},
		{"ServingHistory", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.ServingHistory(ctx, "before")
			return err
		}},
		{"DeleteAlias", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.DeleteAlias(ctx, "m", "champion", 2, "bob")
			return err
		}},
		{"DeleteModel", func(ctx context.Context, s *sqlstore.Store) error { return s.DeleteModel(ctx, "during") }},
		{"CreateRollout", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.CreateRollout(ctx, store.Rollout{Deployment: "during", Kind: store.RolloutCanary, Active: true})
			return err
		}},
		{"GetRollout", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.GetRollout(ctx, "ro1")
			return err
		}},
		{"ActiveRollout", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.ActiveRollout(ctx, "before", store.RolloutCanary)
			return err
		}},
		{"ListRollouts", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.ListRollouts(ctx, "")
			return err
		}},
		{"UpdateRollout", func(ctx context.Context, s *sqlstore.Store) error {
			_, err := s.UpdateRollout(ctx, "ro1", func(r *store.Rollout) error {
				r.State = json.RawMessage(`{"weight":10}`)
				return nil
			})
			return err
		}},
		{"DeleteRollouts", func(ctx context.Context, s *sqlstore.Store) error { return s.DeleteRollouts(ctx, "during") }},
		{"DeleteDeployment", func(ctx context.Context, s *sqlstore.Store) error { return s.DeleteDeployment(ctx, "before") }},
	}
}

func version(model, content string) registry.Version {
	return registry.Version{Model: model, ArtifactURI: "file:///a/" + content, SHA256: strings.Repeat(content, 64)[:64],
		Size: 1, Engine: "trees", Tags: map[string]string{}}
}

// contents is everything the store holds that storeCalls touch.
type contents struct {
	Deployments []serving.Deployment
	Replicas    []replica.Handle
	Models      []registry.Model
	Versions    []registry.Version
	Aliases     []registry.Alias
	Moves       []registry.AliasMove
	Serving     []registry.ServingRecord
	Rollouts    []store.Rollout
}

func snapshot(t *testing.T, s *sqlstore.Store) contents {
	t.Helper()
	ctx := context.Background()
	var c contents
	var err error
	check := func(what string, err error) {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	c.Deployments, err = s.ListDeployments(ctx)
	check("ListDeployments", err)
	c.Replicas, err = s.ListReplicas(ctx)
	check("ListReplicas", err)
	c.Models, err = s.ListModels(ctx, registry.ListOptions{})
	check("ListModels", err)
	c.Versions, err = s.ListVersions(ctx, "m", registry.VersionListOptions{})
	check("ListVersions", err)
	c.Aliases, err = s.ListAliases(ctx, "m")
	check("ListAliases", err)
	c.Moves, err = s.AliasHistory(ctx, "m", "champion")
	check("AliasHistory", err)
	c.Serving, err = s.ServingHistory(ctx, "before")
	check("ServingHistory", err)
	c.Rollouts, err = s.ListRollouts(ctx, "")
	check("ListRollouts", err)
	return c
}

// TestPostgresStopped stops the PostgreSQL server under an open store:
// every method then fails with an error that wraps store.ErrUnavailable,
// names the server and database and not the password, and writes nothing;
// a cancelled call is reported as cancelled, not as the store's fault; once
// the server is started again on the same data, the same calls succeed.
func TestPostgresStopped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := pgtest.NewCluster(t)
	dsn := fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable", password, c.Port)
	s, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantName := fmt.Sprintf("PostgreSQL at 127.0.0.1:%d/postgres", c.Port)
	if s.Name() != wantName {
		t.Errorf("Name() = %q, want %q", s.Name(), wantName)
	}

	// What is there before the server stops.
	if _, err := s.CreateDeployment(ctx, serving.Deployment{Name: "before", Spec: serving.Spec{Model: "m@champion"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutReplica(ctx, replica.Handle{Spec: replica.Spec{ID: "r1", Deployment: "before"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateModel(ctx, registry.Model{Name: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateVersion(ctx, version("m", "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetAlias(ctx, "m", "champion", 1, 0, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordServing(ctx, "before", "m", 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRollout(ctx, store.Rollout{ID: "ro1", Deployment: "before", Kind: store.RolloutCanary, Active: true}); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, s)

	if err := c.StopServer(); err != nil {
		t.Fatal(err)
	}
	for _, sc := range storeCalls() {
		err := sc.call(ctx, s)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with the server stopped = %v, want an error wrapping store.ErrUnavailable", sc.name, err)
			continue
		}
		if sc.name == "CreateDeployment" {
			t.Logf("%s with the server stopped: %v", sc.name, err)
		}
		if !strings.Contains(err.Error(), wantName+": ") {
			t.Errorf("%s with the server stopped = %q, want it to name the store (%s)", sc.name, err, wantName)
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("%s with the server stopped = %q shows the password", sc.name, err)
		}
	}
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := storeCalls()[0].call(cctx, s); !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a cancelled call with the server stopped = %v, want context.Canceled and not store.ErrUnavailable", err)
	}
	s2, err := postgres.Open(ctx, dsn)
	if err == nil {
		s2.Close()
		t.Errorf("postgres.Open with the server stopped succeeded")
	} else if where := strings.TrimPrefix(wantName, "PostgreSQL at "); !errors.Is(err, store.ErrUnavailable) ||
		!strings.Contains(err.Error(), where) || strings.Contains(err.Error(), password) {
		t.Errorf("postgres.Open with the server stopped = %q, want an error wrapping store.ErrUnavailable that names %s and not the password", err, where)
	}

	if err := c.StartServer(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, snapshot(t, s)); diff != "" {
		t.Errorf("the failed calls changed the store (-before +after):\n%s", diff)
	}
	for _, sc := range storeCalls() {
		if err := sc.call(ctx, s); err != nil {
			t.Errorf("%s after the server restarted = %v, want success", sc.name, err)
		}
	}
}
