// Package storetest is the conformance suite every ebb store passes: run
// Run from an implementation's tests with a function that opens a fresh,
// empty store.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// Store is the behaviour the suite checks: the methods every store
// implementation provides.
type Store interface {
	CreateDeployment(ctx context.Context, d serving.Deployment) (serving.Deployment, error)
	GetDeployment(ctx context.Context, name string) (serving.Deployment, error)
	ListDeployments(ctx context.Context) ([]serving.Deployment, error)
	DeploymentsStamp(ctx context.Context) (string, error)
	UpdateDeployment(ctx context.Context, name string, fn func(*serving.Deployment) error) (serving.Deployment, error)
	DeleteDeployment(ctx context.Context, name string) error
	PutReplica(ctx context.Context, h replica.Handle) error
	DeleteReplica(ctx context.Context, id string) error
	ListReplicas(ctx context.Context) ([]replica.Handle, error)
}

// Run runs the conformance suite. open must return a new, empty store for
// each call and arrange (with t.Cleanup) for it to be closed.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"CreateGet", testCreateGet},
		{"CreateExists", testCreateExists},
		{"CreateConcurrent", testCreateConcurrent},
		{"GetMissing", testGetMissing},
		{"List", testList},
		{"Update", testUpdate},
		{"UpdateUnchangedSpec", testUpdateUnchangedSpec},
		{"UpdateFnError", testUpdateFnError},
		{"UpdateMissing", testUpdateMissing},
		{"UpdateRename", testUpdateRename},
		{"UpdateConcurrent", testUpdateConcurrent},
		{"Delete", testDelete},
		{"DeploymentsStamp", testDeploymentsStamp},
		{"Replicas", testReplicas},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

// Deployment returns a valid, defaulted deployment named name, for tests.
func Deployment(name string) serving.Deployment {
	d := serving.Deployment{
		Name: name,
		Spec: serving.Spec{
			Model: "examples/" + name + "/model.json",
			Scaling: serving.Scaling{
				MinReplicas: 0,
				MaxReplicas: 3,
			},
		},
	}
	d.Spec.Default()
	return d
}

// cmpOpts compares replica state semantically, since a store may reformat
// the JSON it keeps.
var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b json.RawMessage) bool {
		if len(a) == 0 || len(b) == 0 {
			return len(a) == len(b)
		}
		var x, y any
		if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
			return bytes.Equal(a, b)
		}
		return cmp.Equal(x, y)
	}),
}

func mustCreate(t *testing.T, s Store, d serving.Deployment) serving.Deployment {
	t.Helper()
	got, err := s.CreateDeployment(context.Background(), d)
	if err != nil {
		t.Fatalf("CreateDeployment(%q): %v", d.Name, err)
	}
	return got
}

func mustGet(t *testing.T, s Store, name string) serving.Deployment {
	t.Helper()
	got, err := s.GetDeployment(context.Background(), name)
	if err != nil {
		t.Fatalf("GetDeployment(%q): %v", name, err)
	}
	return got
}

func testCreateGet(t *testing.T, s Store) {
	in := Deployment("diabetes")
	in.Generation = 7
	in.Status = serving.Status{Replicas: 3, Reason: "must not be stored"}
	before := time.Now().Add(-time.Second)
	got := mustCreate(t, s, in)

	if got.Generation != 1 {
		t.Errorf("created Generation = %d, want 1", got.Generation)
	}
	if got.CreatedAt.Before(before) || got.CreatedAt.Location() != time.UTC {
		t.Errorf("created CreatedAt = %v, want a recent UTC time", got.CreatedAt)
	}
	if !got.UpdatedAt.Equal(got.CreatedAt) {
		t.Errorf("created UpdatedAt = %v, want CreatedAt %v", got.UpdatedAt, got.CreatedAt)
	}
	want := serving.Deployment{Name: in.Name, Spec: in.Spec, Generation: 1, CreatedAt: got.CreatedAt, UpdatedAt: got.UpdatedAt}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CreateDeployment returned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, mustGet(t, s, in.Name)); diff != "" {
		t.Errorf("GetDeployment after create (-want +got):\n%s", diff)
	}
}

func testCreateExists(t *testing.T, s Store) {
	first := mustCreate(t, s, Deployment("diabetes"))
	other := Deployment("diabetes")
	other.Spec.Model = "other.json"
	_, err := s.CreateDeployment(context.Background(), other)
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second CreateDeployment error = %v, want store.ErrExists", err)
	}
	if diff := cmp.Diff(first, mustGet(t, s, "diabetes")); diff != "" {
		t.Errorf("deployment changed by failed create (-want +got):\n%s", diff)
	}
}

func testCreateConcurrent(t *testing.T, s Store) {
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.CreateDeployment(context.Background(), Deployment("race"))
		})
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrExists):
			t.Errorf("create %d: error = %v, want nil or store.ErrExists", i, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d concurrent creates succeeded, want exactly 1", ok)
	}
}

func testGetMissing(t *testing.T, s Store) {
	_, err := s.GetDeployment(context.Background(), "nope")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetDeployment(missing) error = %v, want store.ErrNotFound", err)
	}
}

func testList(t *testing.T, s Store) {
	ctx := context.Background()
	got, err := s.ListDeployments(ctx)
	if err != nil {
		t.Fatalf("ListDeployments(empty): %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("ListDeployments(empty) = %v, want none", got)
	}
	var want []serving.Deployment
	for _, name := range []string{"charlie", "alpha", "bravo"} {
		want = append(want, mustCreate(t, s, Deployment(name)))
	}
	want[0], want[1], want[2] = want[1], want[2], want[0] // alpha, bravo, charlie
	got, err = s.ListDeployments(ctx)
	if err != nil {
		t.Fatalf("ListDeployments: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListDeployments (-want +got):\n%s", diff)
	}
}

func testUpdate(t *testing.T, s Store) {
	created := mustCreate(t, s, Deployment("diabetes"))
	got, err := s.UpdateDeployment(context.Background(), "diabetes", func(d *serving.Deployment) error {
		d.Spec.Scaling.MaxReplicas = 9
		d.Status.Reason = "must not be stored"
		d.Generation = 100 // ignored: the store owns Generation
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateDeployment: %v", err)
	}
	want := created
	want.Spec.Scaling.MaxReplicas = 9
	want.Generation = 2
	want.UpdatedAt = got.UpdatedAt
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("UpdateDeployment returned (-want +got):\n%s", diff)
	}
	if got.UpdatedAt.Before(created.UpdatedAt) {
		t.Errorf("UpdatedAt went back: %v before %v", got.UpdatedAt, created.UpdatedAt)
	}
	if diff := cmp.Diff(want, mustGet(t, s, "diabetes")); diff != "" {
		t.Errorf("GetDeployment after update (-want +got):\n%s", diff)
	}
}

func testUpdateUnchangedSpec(t *testing.T, s Store) {
	created := mustCreate(t, s, Deployment("diabetes"))
	got, err := s.UpdateDeployment(context.Background(), "diabetes", func(d *serving.Deployment) error { return nil })
	if err != nil {
		t.Fatalf("UpdateDeployment: %v", err)
	}
	if got.Generation != created.Generation {
		t.Errorf("Generation = %d after an update that kept the spec, want %d", got.Generation, created.Generation)
	}
	if diff := cmp.Diff(created.Spec, got.Spec); diff != "" {
		t.Errorf("spec changed (-want +got):\n%s", diff)
	}
}

func testUpdateFnError(t *testing.T, s Store) {
	created := mustCreate(t, s, Deployment("diabetes"))
	boom := errors.New("boom")
	_, err := s.UpdateDeployment(context.Background(), "diabetes", func(d *serving.Deployment) error {
		d.Spec.Model = "changed.json"
		d.Spec.Scaling.MaxReplicas = 42
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateDeployment error = %v, want the error fn returned", err)
	}
	if diff := cmp.Diff(created, mustGet(t, s, "diabetes")); diff != "" {
		t.Errorf("failed update left a trace (-want +got):\n%s", diff)
	}
}

func testUpdateMissing(t *testing.T, s Store) {
	called := false
	_, err := s.UpdateDeployment(context.Background(), "nope", func(d *serving.Deployment) error {
		called = true
		return nil
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateDeployment(missing) error = %v, want store.ErrNotFound", err)
	}
	if called {
		t.Errorf("UpdateDeployment(missing) called fn")
	}
	if _, err := s.GetDeployment(context.Background(), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateDeployment(missing) created the deployment: GetDeployment error = %v", err)
	}
}

func testUpdateRename(t *testing.T, s Store) {
	created := mustCreate(t, s, Deployment("diabetes"))
	_, err := s.UpdateDeployment(context.Background(), "diabetes", func(d *serving.Deployment) error {
		d.Name = "renamed"
		return nil
	})
	if err == nil {
		t.Fatalf("UpdateDeployment that renames succeeded, want an error")
	}
	if diff := cmp.Diff(created, mustGet(t, s, "diabetes")); diff != "" {
		t.Errorf("failed rename left a trace (-want +got):\n%s", diff)
	}
	if _, err := s.GetDeployment(context.Background(), "renamed"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetDeployment(renamed) error = %v, want store.ErrNotFound", err)
	}
}

// testUpdateConcurrent checks that concurrent read-modify-writes on one
// deployment all apply: none is lost.
func testUpdateConcurrent(t *testing.T, s Store) {
	created := mustCreate(t, s, Deployment("diabetes"))
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.UpdateDeployment(context.Background(), "diabetes", func(d *serving.Deployment) error {
				d.Spec.Scaling.MaxReplicas++
				return nil
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("update %d: %v", i, err)
		}
	}
	got := mustGet(t, s, "diabetes")
	if want := created.Spec.Scaling.MaxReplicas + n; got.Spec.Scaling.MaxReplicas != want {
		t.Errorf("MaxReplicas = %d after %d concurrent increments from %d, want %d (lost updates)",
			got.Spec.Scaling.MaxReplicas, n, created.Spec.Scaling.MaxReplicas, want)
	}
	if want := created.Generation + n; got.Generation != want {
		t.Errorf("Generation = %d, want %d", got.Generation, want)
	}
}

func testDelete(t *testing.T, s Store) {
	ctx := context.Background()
	mustCreate(t, s, Deployment("diabetes"))
	keep := mustCreate(t, s, Deployment("iris"))
	for _, h := range []replica.Handle{handle("diabetes", "d-1"), handle("diabetes", "d-2"), handle("iris", "i-1")} {
		if err := s.PutReplica(ctx, h); err != nil {
			t.Fatalf("PutReplica: %v", err)
		}
	}
	if err := s.DeleteDeployment(ctx, "diabetes"); err != nil {
		t.Fatalf("DeleteDeployment: %v", err)
	}
	if _, err := s.GetDeployment(ctx, "diabetes"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetDeployment after delete error = %v, want store.ErrNotFound", err)
	}
	if err := s.DeleteDeployment(ctx, "diabetes"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteDeployment error = %v, want store.ErrNotFound", err)
	}
	list, err := s.ListDeployments(ctx)
	if err != nil {
		t.Fatalf("ListDeployments: %v", err)
	}
	if diff := cmp.Diff([]serving.Deployment{keep}, list); diff != "" {
		t.Errorf("ListDeployments after delete (-want +got):\n%s", diff)
	}
	reps, err := s.ListReplicas(ctx)
	if err != nil {
		t.Fatalf("ListReplicas: %v", err)
	}
	if diff := cmp.Diff([]replica.Handle{handle("iris", "i-1")}, reps, cmpOpts); diff != "" {
		t.Errorf("replicas after deleting their deployment (-want +got):\n%s", diff)
	}
}

func handle(deployment, id string) replica.Handle {
	at := time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC)
	return replica.Handle{
		Spec:        replica.Spec{ID: id, Deployment: deployment, Model: "m.json", Engine: "trees"},
		Backend:     "process",
		Endpoint:    "http://127.0.0.1:9000",
		ScheduledAt: at,
		StartedAt:   at.Add(150 * time.Millisecond),
		State:       json.RawMessage(fmt.Sprintf(`{"pid":%d}`, len(id)*1000)),
	}
}

func testReplicas(t *testing.T, s Store) {
	ctx := context.Background()
	list := func() []replica.Handle {
		t.Helper()
		got, err := s.ListReplicas(ctx)
		if err != nil {
			t.Fatalf("ListReplicas: %v", err)
		}
		return got
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("ListReplicas(empty) = %v, want none", got)
	}
	a, b := handle("diabetes", "a"), handle("diabetes", "b")
	b.State = nil
	for _, h := range []replica.Handle{b, a} {
		if err := s.PutReplica(ctx, h); err != nil {
			t.Fatalf("PutReplica(%q): %v", h.Spec.ID, err)
		}
	}
	if diff := cmp.Diff([]replica.Handle{a, b}, list(), cmpOpts); diff != "" {
		t.Errorf("ListReplicas (-want +got):\n%s", diff)
	}

	a.Endpoint = "http://127.0.0.1:9001"
	a.State = json.RawMessage(`{"pid":4242}`)
	if err := s.PutReplica(ctx, a); err != nil {
		t.Fatalf("PutReplica(update): %v", err)
	}
	if diff := cmp.Diff([]replica.Handle{a, b}, list(), cmpOpts); diff != "" {
		t.Errorf("ListReplicas after upsert (-want +got):\n%s", diff)
	}

	if err := s.DeleteReplica(ctx, "a"); err != nil {
		t.Fatalf("DeleteReplica: %v", err)
	}
	if err := s.DeleteReplica(ctx, "a"); err != nil {
		t.Errorf("DeleteReplica(missing) = %v, want nil", err)
	}
	if diff := cmp.Diff([]replica.Handle{b}, list(), cmpOpts); diff != "" {
		t.Errorf("ListReplicas after delete (-want +got):\n%s", diff)
	}
}

// testDeploymentsStamp: the stamp moves with every create, spec change
// and delete, also a delete and a create of the same name, and stays put
// otherwise.
func testDeploymentsStamp(t *testing.T, s Store) {
	ctx := context.Background()
	stamp := func() string {
		t.Helper()
		st, err := s.DeploymentsStamp(ctx)
		if err != nil {
			t.Fatalf("DeploymentsStamp: %v", err)
		}
		return st
	}
	seen := map[string]string{}
	moved := func(what string) {
		t.Helper()
		st := stamp()
		if prev, ok := seen[st]; ok {
			t.Errorf("stamp %q after %s is the one after %s", st, what, prev)
		}
		seen[st] = what
	}
	moved("nothing")
	if st := stamp(); seen[st] != "nothing" {
		t.Errorf("stamp moved without a change: %q", st)
	}
	mustCreate(t, s, Deployment("alpha"))
	moved("create alpha")
	mustCreate(t, s, Deployment("bravo"))
	moved("create bravo")
	if _, err := s.UpdateDeployment(ctx, "alpha", func(d *serving.Deployment) error {
		d.Spec.Scaling.MaxReplicas = 7
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	moved("update alpha")
	if err := s.DeleteDeployment(ctx, "bravo"); err != nil {
		t.Fatal(err)
	}
	moved("delete bravo")
	time.Sleep(2 * time.Millisecond) // a create a moment later
	if err := s.DeleteDeployment(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, Deployment("alpha"))
	moved("delete and create alpha")
}
