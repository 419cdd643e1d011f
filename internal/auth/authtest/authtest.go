// Package authtest is the conformance suite of auth.TokenStore: run Run
// from an implementation's tests with a function that opens a fresh, empty
// store.
package authtest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/store"
)

// Run runs the suite. open must return a new, empty store for each call and
// arrange (with t.Cleanup) for it to be closed.
func Run(t *testing.T, open func(t *testing.T) auth.TokenStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s auth.TokenStore)
	}{
		{"CreateGet", testCreateGet},
		{"CreateExists", testCreateExists},
		{"GetMissing", testGetMissing},
		{"List", testList},
		{"Delete", testDelete},
		{"CreateConcurrent", testCreateConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// newToken returns a fresh token record with the given name and scopes.
func newToken(t *testing.T, name string, scopes ...string) auth.Token {
	t.Helper()
	_, tok, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tok.Name, tok.Scopes, tok.CreatedBy = name, scopes, "tester"
	tok.CreatedAt = time.Date(2025, 5, 1, 12, 0, 0, 123456000, time.UTC)
	return tok
}

func testCreateGet(t *testing.T, s auth.TokenStore) {
	ctx := context.Background()
	forever := newToken(t, "ci", "deploy", "predict:fraud-*")
	expiring := newToken(t, "tmp", "read")
	expiring.ExpiresAt = time.Date(2025, 6, 1, 0, 0, 0, 1000, time.UTC)
	tenanted := newToken(t, "acme-prod", "predict:*")
	tenanted.Tenant = "acme"
	for _, want := range []auth.Token{forever, expiring, tenanted} {
		if err := s.CreateToken(ctx, want); err != nil {
			t.Fatalf("CreateToken(%s): %v", want.Name, err)
		}
		got, err := s.GetToken(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetToken(%s): %v", want.ID, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GetToken(%s) (-want +got):\n%s", want.Name, diff)
		}
	}
}

func testCreateExists(t *testing.T, s auth.TokenStore) {
	ctx := context.Background()
	tok := newToken(t, "a", "read")
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, tok); !errors.Is(err, store.ErrExists) {
		t.Errorf("CreateToken(same id) = %v, want store.ErrExists", err)
	}
}

func testGetMissing(t *testing.T, s auth.TokenStore) {
	if _, err := s.GetToken(context.Background(), "0123456789abcdef"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetToken(missing) = %v, want store.ErrNotFound", err)
	}
}

func testList(t *testing.T, s auth.TokenStore) {
	ctx := context.Background()
	got, err := s.ListTokens(ctx)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("ListTokens(empty) = %#v, %v; want an empty, non-nil list", got, err)
	}
	a, b := newToken(t, "a", "read"), newToken(t, "b", "admin")
	b.CreatedAt = a.CreatedAt.Add(time.Second)
	for _, tok := range []auth.Token{b, a} {
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	got, err = s.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]auth.Token{a, b}, got); diff != "" {
		t.Errorf("ListTokens, oldest first (-want +got):\n%s", diff)
	}
}

func testDelete(t *testing.T, s auth.TokenStore) {
	ctx := context.Background()
	tok := newToken(t, "a", "read")
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteToken(ctx, tok.ID); err != nil {
		t.Fatalf("DeleteToken: %v", err)
	}
	if _, err := s.GetToken(ctx, tok.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetToken after delete = %v, want store.ErrNotFound", err)
	}
	if err := s.DeleteToken(ctx, tok.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteToken twice = %v, want store.ErrNotFound", err)
	}
}

func testCreateConcurrent(t *testing.T, s auth.TokenStore) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = s.CreateToken(ctx, newToken(t, "c", "read")) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("CreateToken %d: %v", i, err)
		}
	}
	if got, err := s.ListTokens(ctx); err != nil || len(got) != len(errs) {
		t.Errorf("ListTokens = %d tokens, %v; want %d", len(got), err, len(errs))
	}
}
