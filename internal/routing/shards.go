package routing

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// Shards is the table of route objects (serving.Route, shard groups) as the
// gateway resolves them: a name that is no deployment, looked up here, picks
// a deployment per request by its rules. ebb up fills it from its store
// whenever the admin API changes a route (and every few seconds, for
// routes another process sharing the store wrote); a cluster gateway from
// the namespace's ModelRoutes.
//
// Reads take no lock: the table is one immutable map, replaced whole by
// Set. Route objects are few and change rarely.
type Shards struct {
	m atomic.Pointer[map[string]*Shard]
	// reloads runs Reloads one at a time, so that a slow list never
	// replaces what a later one stored.
	reloads sync.Mutex
}

// Shard is a route object, ready to resolve requests.
type Shard struct {
	// Name is the route's name.
	Name string
	// Match says where a request's value is read.
	Match serving.RouteMatch
	// Default is the deployment of a request whose value no rule has;
	// "" for none.
	Default string
	// Generation is the route's, for logs.
	Generation int64

	targets map[string]string // value → deployment
	values  []string          // sorted, for messages
}

// NewShard returns route r ready to resolve requests, or r's validation
// error.
func NewShard(r serving.Route) (*Shard, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	s := &Shard{Name: r.Name, Match: r.Spec.Match, Default: r.Spec.Default, Generation: r.Generation,
		targets: make(map[string]string, len(r.Spec.Rules)), values: r.Spec.Values()}
	for _, rule := range r.Spec.Rules {
		s.targets[rule.Value] = rule.Deployment
	}
	return s, nil
}

// Target returns the deployment for a request whose value is value (found
// false when it has none): its rule's, else the default; false when there
// is neither.
func (s *Shard) Target(value []byte, found bool) (string, bool) {
	if found {
		if d, ok := s.targets[string(value)]; ok { // no allocation: a map index
			return d, true
		}
	}
	return s.Default, s.Default != ""
}

// Values lists the values of the route's rules, sorted.
func (s *Shard) Values() []string { return s.values }

// Lookup returns the route object named name, or nil.
func (t *Shards) Lookup(name string) *Shard {
	if t == nil {
		return nil
	}
	m := t.m.Load()
	if m == nil {
		return nil
	}
	return (*m)[name]
}

// Set replaces the table with routes. A route that is not valid (a
// ModelRoute that kubectl wrote past the CRD's checks) is left out, and
// its validation error returned with the others, for the caller to log.
func (t *Shards) Set(routes []serving.Route) error {
	m := make(map[string]*Shard, len(routes))
	var errs []error
	for _, r := range routes {
		s, err := NewShard(r)
		if err != nil {
			errs = append(errs, errors.New("route "+r.Name+": "+err.Error()))
			continue
		}
		m[r.Name] = s
	}
	t.m.Store(&m)
	return errors.Join(errs...)
}

// Names returns the names of the routes in the table, sorted.
func (t *Shards) Names() []string {
	m := t.m.Load()
	if m == nil {
		return nil
	}
	out := make([]string, 0, len(*m))
	for name := range *m {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Follow fills the table from list now and again every interval, until
// ctx ends. A failed list keeps the table as it was; onErr, when set, is
// told of it and of routes left out as invalid.
func (t *Shards) Follow(ctx context.Context, list func(context.Context) ([]serving.Route, error), interval time.Duration, onErr func(error)) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		if err := t.Reload(ctx, list); err != nil && onErr != nil && ctx.Err() == nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// Reload fills the table from list once; a failed list keeps it as it was.
func (t *Shards) Reload(ctx context.Context, list func(context.Context) ([]serving.Route, error)) error {
	t.reloads.Lock()
	defer t.reloads.Unlock()
	routes, err := list(ctx)
	if err != nil {
		return err
	}
	return t.Set(routes)
}
