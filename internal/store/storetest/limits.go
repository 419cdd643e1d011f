package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
)

// RunLimits runs the tenant limit conformance suite (store.LimitStore).
// open must return a new, empty store for each call and arrange (with
// t.Cleanup) for it to be closed.
func RunLimits(t *testing.T, open func(t *testing.T) store.LimitStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.LimitStore)
	}{
		{"PutGet", testLimitPutGet},
		{"PutReplaces", testLimitPutReplaces},
		{"PutConcurrent", testLimitPutConcurrent},
		{"GetMissing", testLimitGetMissing},
		{"KeysApart", testLimitKeysApart},
		{"List", testLimitList},
		{"Delete", testLimitDelete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

// Limit returns a valid limit of tenant on deployment ("" for all), for
// tests: 10 requests/s, burst 20, 5 in flight.
func Limit(tenant, deployment string) serving.Limit {
	return serving.Limit{Tenant: tenant, Deployment: deployment, Rate: 10, Burst: 20, Concurrency: 5}
}

func mustPutLimit(t *testing.T, s store.LimitStore, l serving.Limit) serving.Limit {
	t.Helper()
	got, _, err := s.PutLimit(context.Background(), l)
	if err != nil {
		t.Fatalf("PutLimit(%s): %v", l.Key(), err)
	}
	return got
}

func mustGetLimit(t *testing.T, s store.LimitStore, tenant, deployment string) serving.Limit {
	t.Helper()
	got, err := s.GetLimit(context.Background(), tenant, deployment)
	if err != nil {
		t.Fatalf("GetLimit(%q, %q): %v", tenant, deployment, err)
	}
	return got
}

func testLimitPutGet(t *testing.T, s store.LimitStore) {
	in := serving.Limit{Tenant: "acme/eu team@x", Deployment: "diabetes", Rate: 0.25, Burst: 3, Concurrency: 2, Share: 4,
		Generation: 9, CreatedAt: time.Unix(1, 0)} // ignored: the store's
	before := time.Now().Add(-time.Second)
	got, created, err := s.PutLimit(context.Background(), in)
	if err != nil || !created {
		t.Fatalf("PutLimit = created %v, %v; want created", created, err)
	}
	if got.CreatedAt.Before(before) || got.CreatedAt.Location() != time.UTC || !got.UpdatedAt.Equal(got.CreatedAt) {
		t.Errorf("created times = %v, %v; want a recent UTC time, twice", got.CreatedAt, got.UpdatedAt)
	}
	want := in
	want.Generation, want.CreatedAt, want.UpdatedAt = 1, got.CreatedAt, got.UpdatedAt
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PutLimit returned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, mustGetLimit(t, s, in.Tenant, in.Deployment)); diff != "" {
		t.Errorf("GetLimit after put (-want +got):\n%s", diff)
	}
}

func testLimitPutReplaces(t *testing.T, s store.LimitStore) {
	first := mustPutLimit(t, s, Limit("acme", ""))
	next := serving.Limit{Tenant: "acme", Concurrency: 7} // the rate goes: a put replaces every bound
	got, created, err := s.PutLimit(context.Background(), next)
	if err != nil || created {
		t.Fatalf("second PutLimit = created %v, %v; want replaced", created, err)
	}
	want := next
	want.Generation, want.CreatedAt, want.UpdatedAt = 2, first.CreatedAt, got.UpdatedAt
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PutLimit that replaced returned (-want +got):\n%s", diff)
	}
	if got.UpdatedAt.Before(first.UpdatedAt) {
		t.Errorf("UpdatedAt went back: %v before %v", got.UpdatedAt, first.UpdatedAt)
	}
	if diff := cmp.Diff(want, mustGetLimit(t, s, "acme", "")); diff != "" {
		t.Errorf("GetLimit after replace (-want +got):\n%s", diff)
	}
}

// testLimitPutConcurrent checks that concurrent puts of one key each
// count: exactly one creates, and the generation counts them all.
func testLimitPutConcurrent(t *testing.T, s store.LimitStore) {
	const n = 8
	var wg sync.WaitGroup
	errs, created := make([]error, n), make([]bool, n)
	for i := range n {
		wg.Go(func() {
			l := Limit("race", "d")
			l.Concurrency = int32(i + 1)
			_, created[i], errs[i] = s.PutLimit(context.Background(), l)
		})
	}
	wg.Wait()
	creates := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("put %d: %v", i, err)
		}
		if created[i] {
			creates++
		}
	}
	if creates != 1 {
		t.Errorf("%d of %d concurrent puts created the limit, want exactly 1", creates, n)
	}
	if got := mustGetLimit(t, s, "race", "d"); got.Generation != n {
		t.Errorf("Generation = %d after %d puts, want %d", got.Generation, n, n)
	}
}

func testLimitGetMissing(t *testing.T, s store.LimitStore) {
	mustPutLimit(t, s, Limit("acme", ""))
	for _, k := range []serving.LimitKey{lk("nope", ""), lk("acme", "diabetes"), lk("*", "")} {
		if _, err := s.GetLimit(context.Background(), k.Tenant, k.Deployment); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetLimit(%q, %q) error = %v, want store.ErrNotFound", k.Tenant, k.Deployment, err)
		}
	}
}

// testLimitKeysApart checks that the tenant-wide limit, a deployment's
// and the default's are kept apart.
func testLimitKeysApart(t *testing.T, s store.LimitStore) {
	keys := []serving.LimitKey{lk("acme", ""), lk("acme", "diabetes"), lk("*", ""), lk("*", "diabetes"), lk("acmE", "")}
	for i, k := range keys {
		l := Limit(k.Tenant, k.Deployment)
		l.Concurrency = int32(i + 1)
		mustPutLimit(t, s, l)
	}
	for i, k := range keys {
		if got := mustGetLimit(t, s, k.Tenant, k.Deployment); got.Concurrency != int32(i+1) || got.Key() != k {
			t.Errorf("GetLimit(%q, %q) = %s concurrency %d, want concurrency %d", k.Tenant, k.Deployment, got.Key(), got.Concurrency, i+1)
		}
	}
}

func testLimitList(t *testing.T, s store.LimitStore) {
	ctx := context.Background()
	got, err := s.ListLimits(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("ListLimits(empty) = %v, %v; want none", got, err)
	}
	byKey := map[serving.LimitKey]serving.Limit{}
	for _, k := range []serving.LimitKey{lk("beta", "z"), lk("beta", ""), lk("alpha", "a"), lk("*", ""), lk("Beta", ""), lk("beta", "a")} {
		byKey[k] = mustPutLimit(t, s, Limit(k.Tenant, k.Deployment))
	}
	// Bytewise order: '*' < 'B' < 'a' < 'b', and "" before any deployment.
	var want []serving.Limit
	for _, k := range []serving.LimitKey{lk("*", ""), lk("Beta", ""), lk("alpha", "a"), lk("beta", ""), lk("beta", "a"), lk("beta", "z")} {
		want = append(want, byKey[k])
	}
	got, err = s.ListLimits(ctx)
	if err != nil {
		t.Fatalf("ListLimits: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListLimits (-want +got):\n%s", diff)
	}
}

func testLimitDelete(t *testing.T, s store.LimitStore) {
	ctx := context.Background()
	mustPutLimit(t, s, Limit("acme", ""))
	keep := mustPutLimit(t, s, Limit("acme", "diabetes"))
	if err := s.DeleteLimit(ctx, "acme", ""); err != nil {
		t.Fatalf("DeleteLimit: %v", err)
	}
	if _, err := s.GetLimit(ctx, "acme", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetLimit after delete error = %v, want store.ErrNotFound", err)
	}
	if err := s.DeleteLimit(ctx, "acme", ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteLimit error = %v, want store.ErrNotFound", err)
	}
	list, err := s.ListLimits(ctx)
	if err != nil {
		t.Fatalf("ListLimits: %v", err)
	}
	if diff := cmp.Diff([]serving.Limit{keep}, list); diff != "" {
		t.Errorf("ListLimits after delete (-want +got):\n%s", diff)
	}
	if got, _, err := s.PutLimit(ctx, Limit("acme", "")); err != nil || got.Generation != 1 {
		t.Errorf("PutLimit after delete = generation %d, %v; want a new limit, generation 1", got.Generation, err)
	}
}

// lk is a limit's key, briefly.
func lk(tenant, deployment string) serving.LimitKey {
	return serving.LimitKey{Tenant: tenant, Deployment: deployment}
}
