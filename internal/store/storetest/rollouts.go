package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/store"
)

// RolloutStore is the behaviour RunRollouts checks: how a store keeps
// canary and shadow rollouts.
type RolloutStore interface {
	CreateRollout(ctx context.Context, r store.Rollout) (store.Rollout, error)
	GetRollout(ctx context.Context, id string) (store.Rollout, error)
	ActiveRollout(ctx context.Context, deployment, kind string) (store.Rollout, error)
	ListRollouts(ctx context.Context, deployment string) ([]store.Rollout, error)
	UpdateRollout(ctx context.Context, id string, fn func(*store.Rollout) error) (store.Rollout, error)
	DeleteRollouts(ctx context.Context, deployment string) error
}

// RunRollouts runs the rollout conformance suite. open must return a new,
// empty store for each call and arrange (with t.Cleanup) for it to be
// closed.
func RunRollouts(t *testing.T, open func(t *testing.T) RolloutStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s RolloutStore)
	}{
		{"CreateGet", testRolloutCreateGet},
		{"Create", testRolloutCreate},
		{"CreateConcurrent", testRolloutCreateConcurrent},
		{"JSON", testRolloutJSON},
		{"Active", testRolloutActive},
		{"List", testRolloutList},
		{"Update", testRolloutUpdate},
		{"UpdateFnError", testRolloutUpdateFnError},
		{"UpdateMissing", testRolloutUpdateMissing},
		{"UpdateImmutable", testRolloutUpdateImmutable},
		{"UpdateCompareAndSwap", testRolloutUpdateCAS},
		{"UpdateReactivate", testRolloutUpdateReactivate},
		{"UpdateConcurrent", testRolloutUpdateConcurrent},
		{"Delete", testRolloutDelete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

// Rollout returns an active rollout of the deployment of the given kind,
// with no ID, for tests.
func Rollout(deployment, kind string) store.Rollout {
	return store.Rollout{
		Deployment: deployment,
		Kind:       kind,
		Active:     true,
		Spec:       json.RawMessage(`{"to":"diabetes:2","steps":[10,50,100],"interval":"5m"}`),
		State:      json.RawMessage(`{"phase":"pending","weight":0}`),
	}
}

func mustCreateRollout(t *testing.T, s RolloutStore, r store.Rollout) store.Rollout {
	t.Helper()
	got, err := s.CreateRollout(context.Background(), r)
	if err != nil {
		t.Fatalf("CreateRollout(%s of %q): %v", r.Kind, r.Deployment, err)
	}
	return got
}

func mustGetRollout(t *testing.T, s RolloutStore, id string) store.Rollout {
	t.Helper()
	got, err := s.GetRollout(context.Background(), id)
	if err != nil {
		t.Fatalf("GetRollout(%q): %v", id, err)
	}
	return got
}

// finish marks the rollout finished.
func finish(t *testing.T, s RolloutStore, id string) store.Rollout {
	t.Helper()
	got, err := s.UpdateRollout(context.Background(), id, func(r *store.Rollout) error {
		r.Active = false
		r.State = json.RawMessage(`{"phase":"succeeded","weight":100}`)
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateRollout(%q) to finish it: %v", id, err)
	}
	return got
}

func testRolloutCreateGet(t *testing.T, s RolloutStore) {
	before := time.Now().Add(-time.Second)
	for _, id := range []string{"diabetes-1", ""} {
		t.Run(fmt.Sprintf("ID=%q", id), func(t *testing.T) {
			in := Rollout("diabetes-"+id, store.RolloutCanary)
			in.ID = id
			in.Revision = 7                      // ignored: the store owns Revision
			in.CreatedAt = time.Unix(0, 0).UTC() // and the times
			in.UpdatedAt = time.Unix(10, 0).UTC()
			got := mustCreateRollout(t, s, in)
			if id == "" {
				if got.ID == "" || !strings.Contains(got.ID, in.Deployment) {
					t.Errorf("created ID = %q, want one made by the store, naming deployment %q", got.ID, in.Deployment)
				}
			} else if got.ID != id {
				t.Errorf("created ID = %q, want %q", got.ID, id)
			}
			if got.CreatedAt.Before(before) || got.CreatedAt.Location() != time.UTC {
				t.Errorf("created CreatedAt = %v, want a recent UTC time", got.CreatedAt)
			}
			want := store.Rollout{ID: got.ID, Deployment: in.Deployment, Kind: in.Kind, Active: true,
				Spec: in.Spec, State: in.State, Revision: 1, CreatedAt: got.CreatedAt, UpdatedAt: got.CreatedAt}
			if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
				t.Errorf("CreateRollout returned (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, mustGetRollout(t, s, got.ID), cmpOpts); diff != "" {
				t.Errorf("GetRollout after create (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := s.GetRollout(context.Background(), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRollout(missing) error = %v, want store.ErrNotFound", err)
	}
}

// testRolloutCreate checks which creates the rollouts already there allow.
func testRolloutCreate(t *testing.T, s RolloutStore) {
	ctx := context.Background()
	canary := Rollout("diabetes", store.RolloutCanary)
	taken := Rollout("iris", store.RolloutCanary)
	taken.ID = "taken"
	for i, tt := range []struct {
		name string
		// before are created first, and each finished at once when
		// finished is set.
		before   []store.Rollout
		finished bool
		create   store.Rollout
		// wantErr is what the create's error wraps; wantMsg says what its
		// message names. anyErr wants an error that is neither
		// store.ErrExists nor store.ErrNotFound.
		wantErr error
		wantMsg func(in store.Rollout) []string
		anyErr  bool
	}{
		{name: "first", create: canary},
		{name: "second active of a kind", before: []store.Rollout{canary}, create: canary,
			wantErr: store.ErrExists, wantMsg: func(in store.Rollout) []string {
				return []string{in.Kind, fmt.Sprintf("%q", in.Deployment), "active"}
			}},
		{name: "other kind", before: []store.Rollout{canary}, create: Rollout("diabetes", store.RolloutShadow)},
		{name: "other deployment", before: []store.Rollout{canary}, create: Rollout("iris", store.RolloutCanary)},
		{name: "after a finished one", before: []store.Rollout{canary, canary}, finished: true, create: canary},
		{name: "finished beside an active one", before: []store.Rollout{canary},
			create: func() store.Rollout { r := canary; r.Active = false; return r }()},
		{name: "ID taken", before: []store.Rollout{taken}, create: func() store.Rollout {
			r := canary
			r.ID = "taken"
			return r
		}(), wantErr: store.ErrExists, wantMsg: func(in store.Rollout) []string { return []string{fmt.Sprintf("%q", in.ID)} }},
		{name: "no deployment", create: Rollout("", store.RolloutCanary), anyErr: true},
		{name: "no kind", create: Rollout("diabetes", ""), anyErr: true},
		{name: "spec not JSON", create: func() store.Rollout {
			r := canary
			r.Spec = json.RawMessage(`{"to":`)
			return r
		}(), anyErr: true},
		{name: "state not JSON", create: func() store.Rollout {
			r := canary
			r.State = json.RawMessage(`weight=10`)
			return r
		}(), anyErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Each case has deployments of its own.
			rename := func(r store.Rollout) store.Rollout {
				if r.Deployment != "" {
					r.Deployment = fmt.Sprintf("%s-%d", r.Deployment, i)
				}
				if r.ID != "" {
					r.ID = fmt.Sprintf("%s-%d", r.ID, i)
				}
				return r
			}
			for _, r := range tt.before {
				got := mustCreateRollout(t, s, rename(r))
				if tt.finished {
					finish(t, s, got.ID)
				}
			}
			in := rename(tt.create)
			got, err := s.CreateRollout(ctx, in)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("CreateRollout error = %v, want %v", err, tt.wantErr)
				}
				for _, m := range tt.wantMsg(in) {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("CreateRollout error %q does not say %s", err, m)
					}
				}
				return
			case tt.anyErr:
				if err == nil || errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrNotFound) {
					t.Fatalf("CreateRollout error = %v, want an error saying what is wrong", err)
				}
				return
			case err != nil:
				t.Fatalf("CreateRollout: %v", err)
			}
			if diff := cmp.Diff(got, mustGetRollout(t, s, got.ID), cmpOpts); diff != "" {
				t.Errorf("GetRollout after create (-created +got):\n%s", diff)
			}
		})
	}
}

// testRolloutCreateConcurrent races creates of one kind of one
// deployment: exactly one wins.
func testRolloutCreateConcurrent(t *testing.T, s RolloutStore) {
	const n = 8
	var wg sync.WaitGroup
	created := make([]store.Rollout, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			r := Rollout("race", store.RolloutCanary)
			r.ID = fmt.Sprintf("race-%d", i)
			created[i], errs[i] = s.CreateRollout(context.Background(), r)
		})
	}
	wg.Wait()
	var won []string
	for i, err := range errs {
		switch {
		case err == nil:
			won = append(won, created[i].ID)
		case !errors.Is(err, store.ErrExists):
			t.Errorf("create %d: error = %v, want nil or store.ErrExists", i, err)
		}
	}
	if len(won) != 1 {
		t.Fatalf("concurrent creates of %v succeeded, want exactly 1", won)
	}
	active, err := s.ActiveRollout(context.Background(), "race", store.RolloutCanary)
	if err != nil || active.ID != won[0] {
		t.Errorf("ActiveRollout = %q, %v; want the winner %q", active.ID, err, won[0])
	}
	list, err := s.ListRollouts(context.Background(), "race")
	if err != nil || len(list) != 1 {
		t.Errorf("ListRollouts = %d rollouts, %v; want only the winner", len(list), err)
	}
}

// testRolloutJSON checks that Spec and State read back meaning what was
// written; a store may reformat them (PostgreSQL's JSONB sorts keys and
// respaces), so they are compared as JSON values.
func testRolloutJSON(t *testing.T, s RolloutStore) {
	for i, doc := range []string{
		`{"b":1,"a":{"z":[1,2.5,-3e2],"y":null}, "c" : "ünï\u00e9\"x"}`,
		`[]`,
		`{}`,
		`"text"`,
		`12345.678`,
		`true`,
		`null`,
		``,
	} {
		t.Run(doc, func(t *testing.T) {
			r := Rollout(fmt.Sprintf("json-%d", i), store.RolloutShadow)
			r.Spec, r.State = json.RawMessage(doc), json.RawMessage(doc)
			created := mustCreateRollout(t, s, r)
			got := mustGetRollout(t, s, created.ID)
			for _, f := range []struct {
				name string
				raw  json.RawMessage
			}{{"Spec", got.Spec}, {"State", got.State}} {
				if doc == `` || doc == `null` {
					if len(f.raw) != 0 {
						t.Errorf("%s = %s, want empty for %q", f.name, f.raw, doc)
					}
					continue
				}
				var want, have any
				if err := json.Unmarshal([]byte(doc), &want); err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(f.raw, &have); err != nil {
					t.Fatalf("%s = %s, not JSON: %v", f.name, f.raw, err)
				}
				if diff := cmp.Diff(want, have); diff != "" {
					t.Errorf("%s read back as %s (-want +got):\n%s", f.name, f.raw, diff)
				}
			}
		})
	}
}

func testRolloutActive(t *testing.T, s RolloutStore) {
	ctx := context.Background()
	if _, err := s.ActiveRollout(ctx, "diabetes", store.RolloutCanary); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ActiveRollout(none) error = %v, want store.ErrNotFound", err)
	}
	canary := mustCreateRollout(t, s, Rollout("diabetes", store.RolloutCanary))
	shadow := mustCreateRollout(t, s, Rollout("diabetes", store.RolloutShadow))
	mustCreateRollout(t, s, Rollout("iris", store.RolloutCanary))
	for _, want := range []store.Rollout{canary, shadow} {
		got, err := s.ActiveRollout(ctx, want.Deployment, want.Kind)
		if err != nil {
			t.Fatalf("ActiveRollout(%q, %q): %v", want.Deployment, want.Kind, err)
		}
		if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
			t.Errorf("ActiveRollout(%q, %q) (-want +got):\n%s", want.Deployment, want.Kind, diff)
		}
	}
	finish(t, s, canary.ID)
	if got, err := s.ActiveRollout(ctx, "diabetes", store.RolloutCanary); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ActiveRollout after finishing it = %q, %v; want store.ErrNotFound", got.ID, err)
	}
}

func testRolloutList(t *testing.T, s RolloutStore) {
	ctx := context.Background()
	list := func(deployment string) []store.Rollout {
		t.Helper()
		got, err := s.ListRollouts(ctx, deployment)
		if err != nil {
			t.Fatalf("ListRollouts(%q): %v", deployment, err)
		}
		return got
	}
	if got := list(""); len(got) != 0 {
		t.Fatalf("ListRollouts(empty) = %v, want none", got)
	}
	var made []store.Rollout // oldest first
	for _, r := range []store.Rollout{
		Rollout("diabetes", store.RolloutCanary),
		Rollout("iris", store.RolloutCanary),
		Rollout("diabetes", store.RolloutShadow),
		Rollout("diabetes", store.RolloutCanary), // after finishing the first
	} {
		if len(made) == 3 {
			made[0] = finish(t, s, made[0].ID)
		}
		made = append(made, mustCreateRollout(t, s, r))
	}
	newest := func(rs ...store.Rollout) []store.Rollout {
		out := make([]store.Rollout, len(rs))
		for i, r := range rs {
			out[len(rs)-1-i] = r
		}
		return out
	}
	for _, tt := range []struct {
		deployment string
		want       []store.Rollout
	}{
		{"", newest(made...)},
		{"diabetes", newest(made[0], made[2], made[3])},
		{"iris", newest(made[1])},
		{"nope", []store.Rollout{}},
	} {
		if diff := cmp.Diff(tt.want, list(tt.deployment), cmpOpts); diff != "" {
			t.Errorf("ListRollouts(%q) (-want +got):\n%s", tt.deployment, diff)
		}
	}
}

func testRolloutUpdate(t *testing.T, s RolloutStore) {
	created := mustCreateRollout(t, s, Rollout("diabetes", store.RolloutCanary))
	time.Sleep(2 * time.Millisecond) // so that UpdatedAt must move
	got, err := s.UpdateRollout(context.Background(), created.ID, func(r *store.Rollout) error {
		r.State = json.RawMessage(`{"phase":"progressing","weight":10}`)
		r.Spec = json.RawMessage(`{"to":"diabetes:3"}`)
		r.Revision = 100          // ignored: the store owns Revision
		r.CreatedAt = time.Time{} // and the times
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateRollout: %v", err)
	}
	if !got.UpdatedAt.After(created.UpdatedAt) {
		t.Errorf("UpdatedAt = %v after an update, want after %v", got.UpdatedAt, created.UpdatedAt)
	}
	want := created
	want.State = json.RawMessage(`{"phase":"progressing","weight":10}`)
	want.Spec = json.RawMessage(`{"to":"diabetes:3"}`)
	want.Revision = 2
	want.UpdatedAt = got.UpdatedAt
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("UpdateRollout returned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, mustGetRollout(t, s, created.ID), cmpOpts); diff != "" {
		t.Errorf("GetRollout after update (-want +got):\n%s", diff)
	}

	// An update that changes nothing still counts.
	again, err := s.UpdateRollout(context.Background(), created.ID, func(*store.Rollout) error { return nil })
	if err != nil || again.Revision != 3 {
		t.Errorf("UpdateRollout(no change) = revision %d, %v; want 3", again.Revision, err)
	}
}

func testRolloutUpdateFnError(t *testing.T, s RolloutStore) {
	created := mustCreateRollout(t, s, Rollout("diabetes", store.RolloutCanary))
	boom := errors.New("boom")
	_, err := s.UpdateRollout(context.Background(), created.ID, func(r *store.Rollout) error {
		r.Active = false
		r.State = json.RawMessage(`{"phase":"aborted"}`)
		return boom
	})
	if err != boom {
		t.Fatalf("UpdateRollout error = %v, want exactly the error fn returned", err)
	}
	if diff := cmp.Diff(created, mustGetRollout(t, s, created.ID), cmpOpts); diff != "" {
		t.Errorf("failed update left a trace (-want +got):\n%s", diff)
	}
}

func testRolloutUpdateMissing(t *testing.T, s RolloutStore) {
	called := false
	_, err := s.UpdateRollout(context.Background(), "nope", func(*store.Rollout) error {
		called = true
		return nil
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateRollout(missing) error = %v, want store.ErrNotFound", err)
	}
	if called {
		t.Errorf("UpdateRollout(missing) called fn")
	}
}

func testRolloutUpdateImmutable(t *testing.T, s RolloutStore) {
	created := mustCreateRollout(t, s, Rollout("diabetes", store.RolloutCanary))
	for _, tt := range []struct {
		name string
		edit func(*store.Rollout)
	}{
		{"ID", func(r *store.Rollout) { r.ID = "other" }},
		{"Deployment", func(r *store.Rollout) { r.Deployment = "iris" }},
		{"Kind", func(r *store.Rollout) { r.Kind = store.RolloutShadow }},
		{"Spec not JSON", func(r *store.Rollout) { r.Spec = json.RawMessage(`{`) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.UpdateRollout(context.Background(), created.ID, func(r *store.Rollout) error {
				tt.edit(r)
				r.State = json.RawMessage(`{"phase":"changed"}`)
				return nil
			})
			if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) {
				t.Errorf("UpdateRollout error = %v, want one saying what cannot change", err)
			}
			if diff := cmp.Diff(created, mustGetRollout(t, s, created.ID), cmpOpts); diff != "" {
				t.Errorf("failed update left a trace (-want +got):\n%s", diff)
			}
		})
	}
}

// testRolloutUpdateCAS checks the compare-and-swap an update's fn makes by
// comparing revisions.
func testRolloutUpdateCAS(t *testing.T, s RolloutStore) {
	ctx := context.Background()
	read := mustCreateRollout(t, s, Rollout("diabetes", store.RolloutCanary))
	cas := func(expect int64, phase string) (store.Rollout, error) {
		return s.UpdateRollout(ctx, read.ID, func(r *store.Rollout) error {
			if r.Revision != expect {
				return fmt.Errorf("rollout %s is at revision %d, not %d: %w", r.ID, r.Revision, expect, store.ErrConflict)
			}
			r.State = json.RawMessage(fmt.Sprintf(`{"phase":%q}`, phase))
			return nil
		})
	}
	won, err := cas(read.Revision, "progressing")
	if err != nil {
		t.Fatalf("first compare-and-swap: %v", err)
	}
	if _, err := cas(read.Revision, "aborted"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("compare-and-swap on a stale revision = %v, want store.ErrConflict", err)
	}
	if diff := cmp.Diff(won, mustGetRollout(t, s, read.ID), cmpOpts); diff != "" {
		t.Errorf("stale compare-and-swap wrote (-want +got):\n%s", diff)
	}
}

// testRolloutUpdateReactivate checks that an update cannot make a second
// rollout of a kind active.
func testRolloutUpdateReactivate(t *testing.T, s RolloutStore) {
	ctx := context.Background()
	old := finish(t, s, mustCreateRollout(t, s, Rollout("diabetes", store.RolloutCanary)).ID)
	mustCreateRollout(t, s, Rollout("diabetes", store.RolloutCanary))
	_, err := s.UpdateRollout(ctx, old.ID, func(r *store.Rollout) error {
		r.Active = true
		return nil
	})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("UpdateRollout making a second canary active = %v, want store.ErrExists", err)
	}
	if diff := cmp.Diff(old, mustGetRollout(t, s, old.ID), cmpOpts); diff != "" {
		t.Errorf("failed update left a trace (-want +got):\n%s", diff)
	}
}

// testRolloutUpdateConcurrent checks that concurrent read-modify-writes of
// one rollout all apply: none is lost.
func testRolloutUpdateConcurrent(t *testing.T, s RolloutStore) {
	r := Rollout("diabetes", store.RolloutCanary)
	r.State = json.RawMessage(`{"weight":0}`)
	created := mustCreateRollout(t, s, r)
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.UpdateRollout(context.Background(), created.ID, func(r *store.Rollout) error {
				var st struct{ Weight int }
				if err := json.Unmarshal(r.State, &st); err != nil {
					return err
				}
				st.Weight++
				r.State, _ = json.Marshal(map[string]int{"weight": st.Weight})
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
	got := mustGetRollout(t, s, created.ID)
	var st struct{ Weight int }
	if err := json.Unmarshal(got.State, &st); err != nil {
		t.Fatal(err)
	}
	if st.Weight != n || got.Revision != 1+n {
		t.Errorf("after %d concurrent increments: weight %d, revision %d; want %d and %d (lost updates)",
			n, st.Weight, got.Revision, n, 1+n)
	}
}

func testRolloutDelete(t *testing.T, s RolloutStore) {
	ctx := context.Background()
	finish(t, s, mustCreateRollout(t, s, Rollout("diabetes", store.RolloutCanary)).ID)
	mustCreateRollout(t, s, Rollout("diabetes", store.RolloutCanary))
	mustCreateRollout(t, s, Rollout("diabetes", store.RolloutShadow))
	keep := mustCreateRollout(t, s, Rollout("iris", store.RolloutCanary))
	if err := s.DeleteRollouts(ctx, "diabetes"); err != nil {
		t.Fatalf("DeleteRollouts: %v", err)
	}
	if err := s.DeleteRollouts(ctx, "diabetes"); err != nil {
		t.Errorf("DeleteRollouts(none left) = %v, want nil", err)
	}
	got, err := s.ListRollouts(ctx, "")
	if err != nil {
		t.Fatalf("ListRollouts: %v", err)
	}
	if diff := cmp.Diff([]store.Rollout{keep}, got, cmpOpts); diff != "" {
		t.Errorf("ListRollouts after DeleteRollouts(diabetes) (-want +got):\n%s", diff)
	}
	if _, err := s.ActiveRollout(ctx, "diabetes", store.RolloutCanary); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ActiveRollout after DeleteRollouts = %v, want store.ErrNotFound", err)
	}
	mustCreateRollout(t, s, Rollout("diabetes", store.RolloutCanary)) // a deployment made again starts afresh
}
