// Package queue is ebb's durable queue of asynchronous inference requests
// (issue 15): a client that asks for async processing gets 202 once its
// request is stored, workers run it through the gateway's chain at the pace
// its deployment takes, and the client polls for the result, or is called
// back with it.
//
// The contract every Queue implementation keeps, and the conformance suite
// (queue/queuetest) checks:
//
//   - Stored before acknowledged. Enqueue returns only once the request is
//     durable in the store; when the store cannot be reached it returns an
//     error wrapping ErrUnavailable and nothing was acknowledged.
//   - At-least-once delivery to workers. Claim leases requests; a lease that
//     is not completed (the worker crashed, or hung) expires and the request
//     can be claimed again. A request may therefore run more than once.
//   - Exactly one stored result per acknowledged request. Results are keyed
//     by the request's id and the first completion wins: a second Complete
//     of the same id, from a duplicate run, stores nothing, so the client
//     never sees two different results.
//   - Ids leak nothing. An id is 128 random bits; Get, Cancel and List see
//     only the asking tenant's requests, and another tenant's id is
//     ErrNotFound, exactly as an unknown one.
//   - Bounded. A record lives until its ExpiresAt (the deadline plus the
//     result TTL while pending; completion plus the TTL once done), after
//     which Get does not return it and DeleteExpired removes it. Payloads
//     above a size go to an artifact store (Spilling), and only their URI
//     is kept in the queue's store.
//
// Implementations: store/sqlstore's Queue (SQLite and PostgreSQL) and
// queue/natsq (NATS JetStream). Worker drains a Queue through a Forwarder
// and delivers signed callbacks (callback.go).
package queue

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/store"
)

// Errors a Queue returns; they are store's, so that callers that already
// map store errors to HTTP answers map these alike.
var (
	// ErrNotFound: no such request for this tenant (unknown, another
	// tenant's, or expired).
	ErrNotFound = store.ErrNotFound
	// ErrUnavailable: the queue's store cannot be reached; nothing was
	// written.
	ErrUnavailable = store.ErrUnavailable
	// ErrFull: the deployment already has MaxDepth requests waiting.
	ErrFull = errors.New("async queue full")
	// ErrTooLarge: the store takes no message this large (NATS's
	// max_payload); the payload must go to an artifact store (Spilling).
	ErrTooLarge = errors.New("too large for the async queue's store")
	// ErrFinished: Cancel of a request that already has a result or was
	// cancelled.
	ErrFinished = errors.New("async request already finished")
)

// Priority levels; higher is claimed first.
const (
	// PriorityInteractive is the default, for requests from clients.
	PriorityInteractive = 0
	// PriorityBatch is below every client's request (batch jobs).
	PriorityBatch = -10
)

// A State is where a request stands.
type State string

const (
	// Pending: queued or leased to a worker; no result yet.
	Pending State = "pending"
	// Done: the result is stored.
	Done State = "done"
	// Cancelled: cancelled before it had a result; it will not run again.
	Cancelled State = "cancelled"
)

// Request is one stored async inference request.
type Request struct {
	// ID is the request's id, from NewID: 128 random bits.
	ID string
	// Tenant is whom the request counts against; "" when there are no
	// tenants. Only the same tenant can read it back.
	Tenant string
	// Deployment is the name the request was sent to (a deployment or a
	// route object), and Version the version asked for, if any.
	Deployment string
	Version    string
	// Priority orders claims of one deployment; higher first.
	Priority int
	// ContentType and HeaderLength are the request's Content-Type and
	// Inference-Header-Content-Length (0: absent).
	ContentType  string
	HeaderLength int64
	// Header holds other request headers the chain needs again (a routing
	// key, a route object's match header), by canonical name.
	Header map[string]string
	// Body is the payload, or nil when BodyRef names where it is.
	Body []byte
	// BodyRef is the artifact URI of the payload when it is stored outside
	// the queue (Spilling); "" when Body holds it.
	BodyRef string
	// Callback is the URL the result is posted to; "" for none.
	Callback string
	// CreatedAt is when it was accepted.
	CreatedAt time.Time
	// Deadline is when the request gives up: a worker that claims it later
	// completes it with 504 without running it.
	Deadline time.Time
	// ResultTTL is how long the result is kept after completion.
	ResultTTL time.Duration

	// Set by Claim: how many times the request was claimed, this claim
	// included, and the claim's lease token, for Complete and Release.
	Attempt    int
	LeaseToken string
}

// Result is what running a request produced: the chain's answer, whatever
// its status (a 4xx or a model's 500 is a result too).
type Result struct {
	Status       int
	ContentType  string
	HeaderLength int64 // the answer's Inference-Header-Content-Length; 0: absent
	Body         []byte
	// BodyRef is the artifact URI of Body when stored outside (Spilling).
	BodyRef     string
	CompletedAt time.Time
}

// CallbackState is where delivery of a request's callback stands.
type CallbackState string

const (
	CallbackNone      CallbackState = ""          // no callback URL
	CallbackWaiting   CallbackState = "waiting"   // no result yet
	CallbackPending   CallbackState = "pending"   // to be (re)sent
	CallbackDelivered CallbackState = "delivered" // a 2xx was received
	CallbackFailed    CallbackState = "failed"    // gave up
)

// Record is what Get and List return about a request.
type Record struct {
	ID, Tenant, Deployment, Version string
	State                           State
	CreatedAt                       time.Time
	ExpiresAt                       time.Time
	// Attempts counts the claims so far.
	Attempts int
	// Result is set when State is Done.
	Result *Result
	// Callback delivery, when the request has a callback URL.
	Callback         string
	CallbackState    CallbackState
	CallbackAttempts int
	CallbackError    string
}

// ListOptions select the records List returns.
type ListOptions struct {
	// Deployment and State, when set, filter.
	Deployment string
	State      State
	// Limit bounds the records returned, newest first; default 100.
	Limit int
}

// Callback is a result to post: a request's result with its callback URL.
type Callback struct {
	ID, Tenant, Deployment, URL string
	// Attempt counts the claims of this callback, this one included.
	Attempt int
	// LeaseToken identifies this claim, for SettleCallback.
	LeaseToken string
	Result     Result
}

// CallbackOutcome is what became of one callback attempt.
type CallbackOutcome struct {
	// Delivered: the receiver answered 2xx; nothing more is sent.
	Delivered bool
	// Retry, when not delivered: the time of the next attempt; zero gives
	// up (CallbackFailed).
	Retry time.Time
	// Error describes the failure, kept for Get.
	Error string
}

// Swept is what DeleteExpired removed.
type Swept struct {
	// Records counts the records deleted.
	Records int
	// Blobs are the artifact URIs the deleted records referred to; the
	// caller deletes them (Spilling does).
	Blobs []string
}

// Queue is a durable queue of async requests and their results. Methods are
// safe for concurrent use, also by several processes sharing the store.
type Queue interface {
	// Enqueue stores r (pending, with ExpiresAt r.Deadline + r.ResultTTL)
	// and returns once it is durable. It wraps ErrUnavailable when the
	// store cannot be reached, and returns ErrFull when r.Deployment
	// already has MaxDepth requests pending.
	Enqueue(ctx context.Context, r Request) error
	// Claim leases up to n pending requests of deployment, higher
	// priority first and then oldest first, for lease. A request whose
	// lease expires can be claimed again, with Attempt one higher. (NATS
	// keeps one lease per deployment: queue/natsq uses the lease of a
	// process's first claim.)
	Claim(ctx context.Context, deployment string, n int, lease time.Duration) ([]*Request, error)
	// Release gives a claimed request back, to be claimed again from at
	// on (a retryable failure). A token that no longer holds the lease
	// changes nothing.
	Release(ctx context.Context, id, token string, at time.Time) error
	// Complete stores r as the request's result unless it already has one
	// (or was cancelled): the first completion wins and later ones are no
	// ops. It reports whether r was stored. The lease need not be current:
	// a run whose lease expired still counts if it finishes first. An
	// unknown id is ErrNotFound.
	Complete(ctx context.Context, id, token string, r Result) (stored bool, err error)
	// Cancel stops a tenant's pending request; ErrFinished when it already
	// has a result or was cancelled.
	Cancel(ctx context.Context, tenant, id string) error
	// Get returns a tenant's request; ErrNotFound for an unknown id,
	// another tenant's, or one past its ExpiresAt.
	Get(ctx context.Context, tenant, id string) (Record, error)
	// List returns a tenant's requests, newest first.
	List(ctx context.Context, tenant string, opts ListOptions) ([]Record, error)
	// Depth counts the deployment's pending requests, leased or not: the
	// autoscaler's queue depth.
	Depth(ctx context.Context, deployment string) (int, error)
	// Depths returns Depth of every deployment with pending requests.
	Depths(ctx context.Context) (map[string]int, error)
	// DeleteExpired deletes the records whose ExpiresAt is not after now.
	DeleteExpired(ctx context.Context, now time.Time) (Swept, error)
	// ClaimCallbacks leases up to n results whose callback is due.
	ClaimCallbacks(ctx context.Context, n int, lease time.Duration) ([]Callback, error)
	// SettleCallback records the outcome of a callback attempt made under
	// token.
	SettleCallback(ctx context.Context, id, token string, o CallbackOutcome) error
}

// idEncoding writes ids in lower case without padding: safe in URLs, NATS
// subjects and keys, and file names.
var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns a new request id: 128 random bits, 26 base32 characters.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// NewToken returns a new lease token.
func NewToken() string { return NewID() }

// ValidID reports whether id could be one NewID made; others are not
// looked up.
func ValidID(id string) bool {
	if len(id) != 26 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// ExpiresAt returns when a pending r expires: its deadline plus its result
// TTL.
func (r *Request) ExpiresAt() time.Time { return r.Deadline.Add(r.ResultTTL) }
