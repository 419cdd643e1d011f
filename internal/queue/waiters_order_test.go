package queue

import (
	"testing"
	"time"
)

// TestWaitersResultKeepsItsTurn: a result that replaced a pending record
// is forgotten in its own turn, not in the pending record's (whose place
// in the order comes first): past the bound on places, the older pending
// places go, and every result stays known.
func TestWaitersResultKeepsItsTurn(t *testing.T) {
	var w Waiters
	n := maxKnown/2 + 10 // n pending places, then n results: over the bound
	reqs := make([]*Request, n)
	for i := range reqs {
		reqs[i] = &Request{ID: NewID(), Tenant: "acme", ResultTTL: time.Hour, Deadline: time.Now().Add(time.Minute)}
		w.Accepted(reqs[i])
	}
	for _, r := range reqs {
		w.Stored(r, &Result{Status: 200, Body: []byte("x")})
	}
	for i, r := range reqs {
		if rec, ok := w.Known("acme", r.ID); !ok || rec.State != Done {
			t.Fatalf("request %d of %d: Known = %+v, %v; want its result", i, n, rec, ok)
		}
	}
}
