// Package balance picks the replica endpoint that serves a request.
//
// PowerOfTwo implements the "power of two choices" policy on least
// outstanding requests: sample two endpoints at random and take the one with
// fewer requests in flight. It needs no global view or lock, and avoids the
// herding that a strict least-loaded choice causes when many gateways share
// stale load figures.
package balance

import (
	"math/rand/v2"
	"sync/atomic"
)

// Endpoint is one replica that can take requests, with a live count of the
// requests it is serving through this gateway.
type Endpoint struct {
	// ID is the replica ID.
	ID string
	// URL is the base URL of the replica's OIP v2 server.
	URL string
	// Version is the registry version the replica serves in its OIP v2
	// form ("3" for diabetes:3); empty for a model given by path. Set it
	// before the endpoint is published; it does not change after.
	Version string
	// Secret, when set, is sent to the replica with every request
	// forwarded to it, in the header (gRPC: metadata key)
	// replica.SecretHeader. Set it before the endpoint is published.
	Secret string
	// Socket, when set, is the replica's Unix socket (replica.Handle's
	// Socket): the gateway dials it for REST instead of URL's host, whose
	// Host header it still sends. Set it before the endpoint is published.
	Socket string

	inFlight atomic.Int64
}

// NewEndpoint returns an endpoint with nothing in flight.
func NewEndpoint(id, url string) *Endpoint {
	return &Endpoint{ID: id, URL: url}
}

// InFlight returns the number of requests currently sent to e.
func (e *Endpoint) InFlight() int64 { return e.inFlight.Load() }

// Acquire counts one more request in flight to e; Release ends it.
func (e *Endpoint) Acquire() { e.inFlight.Add(1) }

// Release ends a request started with Acquire.
func (e *Endpoint) Release() { e.inFlight.Add(-1) }

// PowerOfTwo picks endpoints by the power-of-two-choices policy. The zero
// value is ready to use.
type PowerOfTwo struct {
	// IntN returns a random int in [0, n); nil means math/rand/v2.IntN.
	// Tests set it to make choices repeatable.
	IntN func(n int) int
}

// Pick returns the less loaded of two distinct random endpoints among those
// not excluded, or nil when none is left. exclude may be nil.
func (p *PowerOfTwo) Pick(eps []*Endpoint, exclude func(*Endpoint) bool) *Endpoint {
	intN := p.IntN
	if intN == nil {
		intN = rand.IntN
	}
	if exclude == nil {
		return pickTwo(eps, intN)
	}
	var avail []*Endpoint
	for _, e := range eps {
		if !exclude(e) {
			avail = append(avail, e)
		}
	}
	return pickTwo(avail, intN)
}

func pickTwo(eps []*Endpoint, intN func(int) int) *Endpoint {
	switch len(eps) {
	case 0:
		return nil
	case 1:
		return eps[0]
	}
	i := intN(len(eps))
	j := intN(len(eps) - 1)
	if j >= i {
		j++ // j is uniform over the others
	}
	a, b := eps[i], eps[j]
	if b.InFlight() < a.InFlight() {
		return b
	}
	return a
}
