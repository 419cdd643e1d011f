// Package routing holds the routing table that the control loop publishes and
// the data plane reads: for each deployment, the endpoints that take traffic.
//
// Routes are immutable. Publishing a new route for a deployment closes the
// previous route's Changed channel, so a request waiting for a cold
// deployment wakes exactly when its deployment's endpoints change, without
// polling and without waking waiters of other deployments.
package routing

import (
	"sync"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/stats"
)

// Route is a snapshot of how to reach one deployment.
type Route struct {
	// Deployment is the deployment name.
	Deployment string
	// Endpoints are the ready replicas; empty while the deployment is cold.
	Endpoints []*balance.Endpoint
	// Failure, when set, says why the deployment cannot start replicas
	// (e.g. the model does not load); held requests fail with it at once.
	Failure string
	// Stats records the deployment's demand; it is shared by every route
	// published for the deployment.
	Stats *stats.Recorder

	changed chan struct{}
}

// Changed is closed when a newer route replaces this one or the deployment is
// removed.
func (r *Route) Changed() <-chan struct{} { return r.changed }

// Table maps deployment names to their current routes. It is safe for
// concurrent use; lookups take no lock.
type Table struct {
	routes sync.Map // string → *Route
}

// Lookup returns the current route of a deployment, or nil.
func (t *Table) Lookup(deployment string) *Route {
	v, ok := t.routes.Load(deployment)
	if !ok {
		return nil
	}
	return v.(*Route)
}

// Publish installs r (its Changed channel is created here) and wakes waiters
// on the route it replaces.
func (t *Table) Publish(r Route) *Route {
	nr := &r
	nr.changed = make(chan struct{})
	if old, ok := t.routes.Swap(r.Deployment, nr); ok {
		close(old.(*Route).changed)
	}
	return nr
}

// Remove deletes a deployment's route and wakes its waiters.
func (t *Table) Remove(deployment string) {
	if old, ok := t.routes.LoadAndDelete(deployment); ok {
		close(old.(*Route).changed)
	}
}

// Len returns the number of routes.
func (t *Table) Len() int {
	n := 0
	t.routes.Range(func(any, any) bool { n++; return true })
	return n
}
