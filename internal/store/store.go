// Package store defines the errors every store implementation returns, so
// callers can tell "not found" from "already exists" from a failure, whatever
// database sits behind. The SQL implementation is store/sqlstore, which
// store/sqlite and store/postgres open.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

var (
	// ErrNotFound means the named record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means a record with that name already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict means the record changed since it was read.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable means the store cannot be reached; the request
	// changed nothing and may be retried. Errors wrapping it name the
	// store (e.g. "PostgreSQL at db:5432", "the Kubernetes API server").
	ErrUnavailable = errors.New("store unavailable")
)

// ApplyUpdate is the rule every store's UpdateDeployment follows, inside its
// own transaction: fn edits a copy of old; only its Spec is kept (Name may
// not change); Generation increases when the Spec changed; UpdatedAt is now.
// It returns the deployment to write and its spec as JSON. fnErr is fn's own
// error, which stores return unwrapped; err is any other failure.
func ApplyUpdate(old serving.Deployment, fn func(*serving.Deployment) error, now time.Time) (out serving.Deployment, spec []byte, fnErr, err error) {
	d := old
	if err := fn(&d); err != nil {
		return serving.Deployment{}, nil, err, err
	}
	if d.Name != old.Name {
		return serving.Deployment{}, nil, nil, fmt.Errorf("cannot rename deployment %q to %q: delete it and create a new one", old.Name, d.Name)
	}
	oldSpec, err := json.Marshal(old.Spec)
	if err != nil {
		return serving.Deployment{}, nil, nil, err
	}
	spec, err = json.Marshal(d.Spec)
	if err != nil {
		return serving.Deployment{}, nil, nil, fmt.Errorf("encode spec: %w", err)
	}
	out = serving.Deployment{Name: old.Name, Spec: d.Spec, Generation: old.Generation,
		CreatedAt: old.CreatedAt, UpdatedAt: now}
	if string(oldSpec) != string(spec) {
		out.Generation++
	}
	return out, spec, nil, nil
}

// A Rollout is the record of one progressive rollout (a canary) or one
// shadow-traffic run of a deployment, kept so that it survives a restart of
// whoever drives it. The store knows nothing of rollouts' logic: Spec and
// State are opaque JSON to it, and a database may reformat them (sort keys,
// change spacing) without changing what they mean.
type Rollout struct {
	// ID names the rollout uniquely. CreateRollout makes one when it is
	// empty: "<deployment>-<kind>-<unix nanoseconds>".
	ID         string
	Deployment string
	// Kind is what the rollout does: "canary" or "shadow". At most one
	// rollout of each kind is active per deployment.
	Kind string
	// Active is true until the rollout finishes (succeeds, is rolled back,
	// aborted or done).
	Active bool
	// Spec is what the user asked for, as JSON; State is where the rollout
	// is (phase, weight, measurements...). Empty stands for JSON null.
	Spec  json.RawMessage
	State json.RawMessage
	// Revision is 1 when created and increases by one with every update,
	// for optimistic concurrency: an update's fn may refuse (with
	// ErrConflict) a record whose Revision is not the one it read.
	Revision  int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Rollout kinds.
const (
	RolloutCanary = "canary"
	RolloutShadow = "shadow"
)

// RouteStore keeps route objects (serving.Route): the SQL store in ebb
// up, the namespace's ModelRoutes in a cluster. Errors wrap ErrNotFound,
// ErrExists and ErrUnavailable as the deployment methods' do.
type RouteStore interface {
	// CreateRoute stores r with Generation 1 and CreatedAt and UpdatedAt
	// now; r's Generation and times are ignored.
	CreateRoute(ctx context.Context, r serving.Route) (serving.Route, error)
	GetRoute(ctx context.Context, name string) (serving.Route, error)
	// ListRoutes returns every route, sorted by name.
	ListRoutes(ctx context.Context) ([]serving.Route, error)
	// UpdateRoute follows ApplyRouteUpdate in one transaction; fn's error
	// is returned unwrapped and nothing is written.
	UpdateRoute(ctx context.Context, name string, fn func(*serving.Route) error) (serving.Route, error)
	DeleteRoute(ctx context.Context, name string) error
}

// ApplyRouteUpdate is ApplyUpdate for a route: fn edits a copy of old;
// only its Spec is kept (Name may not change); Generation increases when
// the Spec changed; UpdatedAt is now. It returns the route to write and
// its spec as JSON; fnErr is fn's own error.
func ApplyRouteUpdate(old serving.Route, fn func(*serving.Route) error, now time.Time) (out serving.Route, spec []byte, fnErr, err error) {
	r := old
	r.Spec.Rules = slices.Clone(old.Spec.Rules)
	if err := fn(&r); err != nil {
		return serving.Route{}, nil, err, err
	}
	if r.Name != old.Name {
		return serving.Route{}, nil, nil, fmt.Errorf("cannot rename route %q to %q: delete it and create a new one", old.Name, r.Name)
	}
	oldSpec, err := json.Marshal(old.Spec)
	if err != nil {
		return serving.Route{}, nil, nil, err
	}
	spec, err = json.Marshal(r.Spec)
	if err != nil {
		return serving.Route{}, nil, nil, fmt.Errorf("encode spec: %w", err)
	}
	out = serving.Route{Name: old.Name, Spec: r.Spec, Generation: old.Generation,
		CreatedAt: old.CreatedAt, UpdatedAt: now}
	if string(oldSpec) != string(spec) {
		out.Generation++
	}
	return out, spec, nil, nil
}

// PoolStore keeps multi-model pools (serving.Pool): the SQL store in ebb
// up. Errors wrap ErrNotFound, ErrExists and ErrUnavailable as the
// deployment methods' do. The control loop and the admin API find it on
// their store when the store keeps pools; a store without it (the
// cluster's, for now) has no pools.
type PoolStore interface {
	// CreatePool stores p with Generation 1 and CreatedAt and UpdatedAt
	// now; p's Status, Generation and times are ignored.
	CreatePool(ctx context.Context, p serving.Pool) (serving.Pool, error)
	GetPool(ctx context.Context, name string) (serving.Pool, error)
	// ListPools returns every pool, sorted by name.
	ListPools(ctx context.Context) ([]serving.Pool, error)
	// UpdatePool follows ApplyPoolUpdate in one transaction; fn's error is
	// returned unwrapped and nothing is written.
	UpdatePool(ctx context.Context, name string, fn func(*serving.Pool) error) (serving.Pool, error)
	DeletePool(ctx context.Context, name string) error
}

// ApplyPoolUpdate is ApplyUpdate for a pool: fn edits a copy of old; only
// its Spec is kept (Name may not change); Generation increases when the
// Spec changed; UpdatedAt is now. It returns the pool to write and its
// spec as JSON; fnErr is fn's own error.
func ApplyPoolUpdate(old serving.Pool, fn func(*serving.Pool) error, now time.Time) (out serving.Pool, spec []byte, fnErr, err error) {
	p := old
	p.Spec.Env = maps.Clone(old.Spec.Env)
	if err := fn(&p); err != nil {
		return serving.Pool{}, nil, err, err
	}
	if p.Name != old.Name {
		return serving.Pool{}, nil, nil, fmt.Errorf("cannot rename pool %q to %q: delete it and create a new one", old.Name, p.Name)
	}
	oldSpec, err := json.Marshal(old.Spec)
	if err != nil {
		return serving.Pool{}, nil, nil, err
	}
	spec, err = json.Marshal(p.Spec)
	if err != nil {
		return serving.Pool{}, nil, nil, fmt.Errorf("encode spec: %w", err)
	}
	out = serving.Pool{Name: old.Name, Spec: p.Spec, Generation: old.Generation,
		CreatedAt: old.CreatedAt, UpdatedAt: now}
	if string(oldSpec) != string(spec) {
		out.Generation++
	}
	return out, spec, nil, nil
}
