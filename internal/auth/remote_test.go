package auth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/store"
)

// verifyServer serves st's tokens as the operator serves them to gateways:
// VerifyHandler behind Require(Gateway), with a Verifier that caches
// nothing. It counts the requests it gets.
func verifyServer(t *testing.T, st *memTokens, clock func() time.Time) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	v := auth.NewVerifier(st, time.Nanosecond, clock)
	expires := func(ctx context.Context, id string) time.Time {
		tok, _ := st.GetToken(ctx, id)
		return tok.ExpiresAt
	}
	calls := &atomic.Int32{}
	h := auth.Require(v, auth.Gateway, auth.VerifyHandler(v, expires))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, calls
}

// TestRemote runs a Remote against the real VerifyHandler behind
// Require(Gateway), as the operator serves it to gateways.
func TestRemote(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	st := &memTokens{m: map[string]auth.Token{}}
	gw := newTok(t, st, time.Time{}, "gateway")
	predict := newTok(t, st, time.Time{}, "predict:iris")
	expiring := newTok(t, st, now.Add(30*time.Second), "predict:*")
	reader := newTok(t, st, time.Time{}, "read")
	srv, calls := verifyServer(t, st, clock)
	r := auth.NewRemote(srv.URL, gw, auth.RemoteOptions{Now: clock, TTL: 10 * time.Second, NegativeTTL: 2 * time.Second})

	p, err := r.Authenticate(ctx, predict)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"predict:iris"}, p.Scopes); diff != "" || p.TokenID == "" {
		t.Errorf("principal %+v (-want +got scopes):\n%s", p, diff)
	}
	for range 50 {
		r.Authenticate(ctx, predict)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d round trips for one known token, want 1", n)
	}

	bad := "ebb_0123456789abcdef_" + "0000000000000000000000000000000000000000000000000000000000000000"
	for range 10 {
		if _, err := r.Authenticate(ctx, bad); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("unknown token: %v, want ErrUnauthenticated", err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d round trips after an unknown token asked 10 times, want 2 (negative cache)", n)
	}
	if _, err := r.Authenticate(ctx, "a.b.c"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("JWT: %v, want ErrUnauthenticated (no OIDC at the gateway)", err)
	}

	if _, err := r.Authenticate(ctx, expiring); err != nil {
		t.Fatal(err)
	}
	now = now.Add(31 * time.Second)
	if _, err := r.Authenticate(ctx, expiring); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("expired token: %v, want ErrUnauthenticated", err)
	}

	// A token without scope gateway cannot ask: the user sees 503, not 401.
	wrong := auth.NewRemote(srv.URL, reader, auth.RemoteOptions{Now: clock})
	_, err = wrong.Authenticate(ctx, predict)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("remote refusing the gateway's token: %v, want store.ErrUnavailable", err)
	}
	if status, _, _ := auth.Status(err); status != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", status)
	}
	down := auth.NewRemote("http://127.0.0.1:1", gw, auth.RemoteOptions{Now: clock})
	if _, err := down.Authenticate(ctx, predict); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("remote down: %v, want store.ErrUnavailable", err)
	}
}
