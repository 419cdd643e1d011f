package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// RunRoutes runs the route conformance suite (store.RouteStore). open
// must return a new, empty store for each call and arrange (with
// t.Cleanup) for it to be closed.
func RunRoutes(t *testing.T, open func(t *testing.T) store.RouteStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.RouteStore)
	}{
		{"CreateGet", testRouteCreateGet},
		{"CreateExists", testRouteCreateExists},
		{"CreateConcurrent", testRouteCreateConcurrent},
		{"GetMissing", testRouteGetMissing},
		{"List", testRouteList},
		{"Update", testRouteUpdate},
		{"UpdateUnchangedSpec", testRouteUpdateUnchanged},
		{"UpdateFnError", testRouteUpdateFnError},
		{"UpdateMissing", testRouteUpdateMissing},
		{"UpdateRename", testRouteUpdateRename},
		{"UpdateConcurrent", testRouteUpdateConcurrent},
		{"Delete", testRouteDelete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

// Route returns a valid route named name that matches header X-Region,
// for tests: eu and us to deployments of their own, others to a default.
func Route(name string) serving.Route {
	return serving.Route{Name: name, Spec: serving.RouteSpec{
		Match: serving.RouteMatch{Header: "X-Region"},
		Rules: []serving.RouteRule{
			{Value: "eu", Deployment: name + "-eu"},
			{Value: "us", Deployment: name + "-us"},
		},
		Default: name + "-global",
	}}
}

func mustCreateRoute(t *testing.T, s store.RouteStore, r serving.Route) serving.Route {
	t.Helper()
	got, err := s.CreateRoute(context.Background(), r)
	if err != nil {
		t.Fatalf("CreateRoute(%q): %v", r.Name, err)
	}
	return got
}

func mustGetRoute(t *testing.T, s store.RouteStore, name string) serving.Route {
	t.Helper()
	got, err := s.GetRoute(context.Background(), name)
	if err != nil {
		t.Fatalf("GetRoute(%q): %v", name, err)
	}
	return got
}

func testRouteCreateGet(t *testing.T, s store.RouteStore) {
	in := Route("classify")
	in.Spec.Match = serving.RouteMatch{Input: "task"}
	in.Spec.Rules = append(in.Spec.Rules, serving.RouteRule{Value: "naïve \"quoted\" 42", Deployment: "odd"})
	in.Generation = 9
	before := time.Now().Add(-time.Second)
	got := mustCreateRoute(t, s, in)
	if got.Generation != 1 {
		t.Errorf("created Generation = %d, want 1", got.Generation)
	}
	if got.CreatedAt.Before(before) || got.CreatedAt.Location() != time.UTC || !got.UpdatedAt.Equal(got.CreatedAt) {
		t.Errorf("created times = %v, %v; want a recent UTC time, twice", got.CreatedAt, got.UpdatedAt)
	}
	want := serving.Route{Name: in.Name, Spec: in.Spec, Generation: 1, CreatedAt: got.CreatedAt, UpdatedAt: got.UpdatedAt}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CreateRoute returned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, mustGetRoute(t, s, in.Name)); diff != "" {
		t.Errorf("GetRoute after create (-want +got):\n%s", diff)
	}
}

func testRouteCreateExists(t *testing.T, s store.RouteStore) {
	first := mustCreateRoute(t, s, Route("classify"))
	other := Route("classify")
	other.Spec.Default = "elsewhere"
	if _, err := s.CreateRoute(context.Background(), other); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second CreateRoute error = %v, want store.ErrExists", err)
	}
	if diff := cmp.Diff(first, mustGetRoute(t, s, "classify")); diff != "" {
		t.Errorf("route changed by a failed create (-want +got):\n%s", diff)
	}
}

func testRouteCreateConcurrent(t *testing.T, s store.RouteStore) {
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = s.CreateRoute(context.Background(), Route("race")) })
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

func testRouteGetMissing(t *testing.T, s store.RouteStore) {
	if _, err := s.GetRoute(context.Background(), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRoute(missing) error = %v, want store.ErrNotFound", err)
	}
}

func testRouteList(t *testing.T, s store.RouteStore) {
	ctx := context.Background()
	got, err := s.ListRoutes(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("ListRoutes(empty) = %v, %v; want none", got, err)
	}
	var want []serving.Route
	for _, name := range []string{"charlie", "alpha", "bravo"} {
		want = append(want, mustCreateRoute(t, s, Route(name)))
	}
	want[0], want[1], want[2] = want[1], want[2], want[0]
	got, err = s.ListRoutes(ctx)
	if err != nil {
		t.Fatalf("ListRoutes: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListRoutes (-want +got):\n%s", diff)
	}
}

func testRouteUpdate(t *testing.T, s store.RouteStore) {
	created := mustCreateRoute(t, s, Route("classify"))
	got, err := s.UpdateRoute(context.Background(), "classify", func(r *serving.Route) error {
		r.Spec.Rules[0].Deployment = "classify-eu-2"
		r.Spec.Default = ""
		r.Generation = 100 // ignored: the store owns Generation
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateRoute: %v", err)
	}
	want := created
	want.Spec.Rules = []serving.RouteRule{{Value: "eu", Deployment: "classify-eu-2"}, created.Spec.Rules[1]}
	want.Spec.Default = ""
	want.Generation = 2
	want.UpdatedAt = got.UpdatedAt
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("UpdateRoute returned (-want +got):\n%s", diff)
	}
	if got.UpdatedAt.Before(created.UpdatedAt) {
		t.Errorf("UpdatedAt went back: %v before %v", got.UpdatedAt, created.UpdatedAt)
	}
	if diff := cmp.Diff(want, mustGetRoute(t, s, "classify")); diff != "" {
		t.Errorf("GetRoute after update (-want +got):\n%s", diff)
	}
}

func testRouteUpdateUnchanged(t *testing.T, s store.RouteStore) {
	created := mustCreateRoute(t, s, Route("classify"))
	got, err := s.UpdateRoute(context.Background(), "classify", func(*serving.Route) error { return nil })
	if err != nil {
		t.Fatalf("UpdateRoute: %v", err)
	}
	if got.Generation != created.Generation {
		t.Errorf("Generation = %d after an update that kept the spec, want %d", got.Generation, created.Generation)
	}
}

func testRouteUpdateFnError(t *testing.T, s store.RouteStore) {
	created := mustCreateRoute(t, s, Route("classify"))
	boom := errors.New("boom")
	_, err := s.UpdateRoute(context.Background(), "classify", func(r *serving.Route) error {
		r.Spec.Rules[0].Deployment = "changed" // in the copy fn was given only
		r.Spec.Default = "changed"
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateRoute error = %v, want the error fn returned", err)
	}
	if diff := cmp.Diff(created, mustGetRoute(t, s, "classify")); diff != "" {
		t.Errorf("failed update left a trace (-want +got):\n%s", diff)
	}
}

func testRouteUpdateMissing(t *testing.T, s store.RouteStore) {
	called := false
	_, err := s.UpdateRoute(context.Background(), "nope", func(*serving.Route) error {
		called = true
		return nil
	})
	if !errors.Is(err, store.ErrNotFound) || called {
		t.Errorf("UpdateRoute(missing) = %v (fn called: %v), want store.ErrNotFound without calling fn", err, called)
	}
	if _, err := s.GetRoute(context.Background(), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateRoute(missing) created the route: GetRoute error = %v", err)
	}
}

func testRouteUpdateRename(t *testing.T, s store.RouteStore) {
	created := mustCreateRoute(t, s, Route("classify"))
	_, err := s.UpdateRoute(context.Background(), "classify", func(r *serving.Route) error {
		r.Name = "renamed"
		return nil
	})
	if err == nil {
		t.Fatalf("UpdateRoute that renames succeeded, want an error")
	}
	if diff := cmp.Diff(created, mustGetRoute(t, s, "classify")); diff != "" {
		t.Errorf("failed rename left a trace (-want +got):\n%s", diff)
	}
}

// testRouteUpdateConcurrent checks that concurrent read-modify-writes of
// one route all apply: none is lost.
func testRouteUpdateConcurrent(t *testing.T, s store.RouteStore) {
	created := mustCreateRoute(t, s, Route("classify"))
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.UpdateRoute(context.Background(), "classify", func(r *serving.Route) error {
				r.Spec.Rules = append(r.Spec.Rules, serving.RouteRule{Value: fmt.Sprintf("v%d", i), Deployment: "d"})
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
	got := mustGetRoute(t, s, "classify")
	if want := len(created.Spec.Rules) + n; len(got.Spec.Rules) != want {
		t.Errorf("%d rules after %d concurrent appends to %d, want %d (lost updates)", len(got.Spec.Rules), n, len(created.Spec.Rules), want)
	}
	if want := created.Generation + n; got.Generation != want {
		t.Errorf("Generation = %d, want %d", got.Generation, want)
	}
}

func testRouteDelete(t *testing.T, s store.RouteStore) {
	ctx := context.Background()
	mustCreateRoute(t, s, Route("classify"))
	keep := mustCreateRoute(t, s, Route("tasks"))
	if err := s.DeleteRoute(ctx, "classify"); err != nil {
		t.Fatalf("DeleteRoute: %v", err)
	}
	if _, err := s.GetRoute(ctx, "classify"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRoute after delete error = %v, want store.ErrNotFound", err)
	}
	if err := s.DeleteRoute(ctx, "classify"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteRoute error = %v, want store.ErrNotFound", err)
	}
	list, err := s.ListRoutes(ctx)
	if err != nil {
		t.Fatalf("ListRoutes: %v", err)
	}
	if diff := cmp.Diff([]serving.Route{keep}, list); diff != "" {
		t.Errorf("ListRoutes after delete (-want +got):\n%s", diff)
	}
}
