package home

import (
	"context"
	"sync"

	"github.com/ebb-ml/ebb/internal/serving"
)

// StampedLister lists deployments and says, cheaply, whether they moved
// since; *sqlstore.Store is one.
type StampedLister interface {
	DeploymentLister
	// DeploymentsStamp changes whenever a deployment is created,
	// changed or deleted.
	DeploymentsStamp(ctx context.Context) (string, error)
}

// CachedDeployments lists the deployments of its store again only when
// the store's stamp moved. ebb up's loops that read every deployment every
// few seconds (the drift monitor's syncer, the prediction log's sampling)
// share one: with thousands of deployments, decoding them all each time
// cost a few percent of a CPU and the garbage collections that followed,
// on the request path's CPU. The deployments it returns are shared:
// callers read them and change nothing.
type CachedDeployments struct {
	Store StampedLister

	mu    sync.Mutex
	stamp string
	deps  []serving.Deployment // nil until the first list
}

// ListDeployments implements DeploymentLister.
func (c *CachedDeployments) ListDeployments(ctx context.Context) ([]serving.Deployment, error) {
	// The stamp is read first: a change while the list is read moves it
	// past the one kept, so the next call lists again.
	stamp, err := c.Store.DeploymentsStamp(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.deps != nil && stamp == c.stamp {
		deps := c.deps
		c.mu.Unlock()
		return deps, nil
	}
	c.mu.Unlock()
	deps, err := c.Store.ListDeployments(ctx)
	if err != nil {
		return nil, err
	}
	if deps == nil {
		deps = []serving.Deployment{}
	}
	c.mu.Lock()
	c.stamp, c.deps = stamp, deps
	c.mu.Unlock()
	return deps, nil
}
