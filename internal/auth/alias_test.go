package auth_test

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/ebb-ml/ebb/internal/auth"
)

// TestTokenInReusedBuffer: an Authenticator is given a token that points
// into the caller's buffer (the gateway's request bytes), which the caller
// overwrites once Authenticate returns. What it cached must not change
// with it: the same token, asked again from a fresh buffer, is answered
// from the cache, as its own principal.
func TestTokenInReusedBuffer(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	st := &memTokens{m: map[string]auth.Token{}}
	v := auth.NewVerifier(st, time.Minute, clock)
	gw := newTok(t, st, time.Time{}, "gateway")
	srv, calls := verifyServer(t, st, clock)
	remote := auth.NewRemote(srv.URL, gw, auth.RemoteOptions{Now: clock, TTL: time.Minute})

	for _, tt := range []struct {
		name string
		a    auth.Authenticator
	}{
		{"Verifier", v},
		{"Remote", remote},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := newTok(t, st, time.Time{}, "predict:m")
			other := newTok(t, st, time.Time{}, "predict:other")
			buf := []byte(tok)
			if _, err := tt.a.Authenticate(ctx, unsafe.String(unsafe.SliceData(buf), len(buf))); err != nil {
				t.Fatal(err)
			}
			// The caller reuses its buffer: the next request's token.
			copy(buf, other)
			reads, asked := st.readCount(), calls.Load()
			p, err := tt.a.Authenticate(ctx, string([]byte(tok)))
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Scopes) != 1 || p.Scopes[0] != "predict:m" {
				t.Errorf("the first token now authenticates as %+v; want its own scope predict:m", p)
			}
			if st.readCount() != reads || calls.Load() != asked {
				t.Errorf("the first token, asked again, was looked up again (%d store reads, %d round trips): its cache entry changed with the caller's buffer",
					st.readCount()-reads, calls.Load()-asked)
			}
		})
	}
}

func (s *memTokens) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}
