package operator

import (
	"context"
	"time"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// APIStore returns the admin API's deployment store over this operator's
// namespace (see APIStore).
func (o *Operator) APIStore() *APIStore {
	return NewAPIStore(o.mgr.GetAPIReader(), o.mgr.GetClient(), o.opts.Namespace)
}

// CachedDeployments returns the ModelDeployments as this operator's cache
// holds them (its control loop watches them): for a loop that lists them
// all every few seconds, such as drift's syncer, which would otherwise
// send the API server a full list each time. A client that must read its
// own writes uses APIStore.
func (o *Operator) CachedDeployments() *APIStore {
	return NewAPIStore(o.mgr.GetCache(), o.mgr.GetClient(), o.opts.Namespace)
}

// APIController returns the control loop as the admin API sees it
// (api.Controller). Every operator replica serves the admin API; only the
// leader runs the control loop, so a standby reports the status the leader
// last wrote to the ModelDeployment, and a spec change reaches the leader
// through its watch on ModelDeployments.
func (o *Operator) APIController() *APIController { return &APIController{o: o} }

// APIController implements api.Controller for an operator replica.
type APIController struct{ o *Operator }

// Status returns the control loop's status on the leader, else the status
// the leader wrote to the ModelDeployment.
func (c *APIController) Status(name string) serving.Status {
	if c.o.leading() {
		return c.o.ctl.Status(name)
	}
	var md v1alpha1.ModelDeployment
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.o.mgr.GetCache().Get(ctx, client.ObjectKey{Namespace: c.o.opts.Namespace, Name: name}, &md); err != nil {
		return serving.Status{}
	}
	return *md.Status.Status.DeepCopy()
}

// PoolStatus returns the control loop's status of a pool on the leader,
// else the status the leader wrote to the ModelPool.
func (c *APIController) PoolStatus(name string) serving.PoolStatus {
	if c.o.leading() {
		return c.o.ctl.PoolStatus(name)
	}
	var mp v1alpha1.ModelPool
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.o.mgr.GetCache().Get(ctx, client.ObjectKey{Namespace: c.o.opts.Namespace, Name: name}, &mp); err != nil {
		return serving.PoolStatus{}
	}
	return *mp.Status.PoolStatus.DeepCopy()
}

// PoolModelBytes returns the size a replica of pool measured for model,
// from the loop on the leader, else from the model's status.
func (c *APIController) PoolModelBytes(pool, model string) int64 {
	if c.o.leading() {
		return c.o.ctl.PoolModelBytes(pool, model)
	}
	if ps := c.Status(model).Pool; ps != nil && ps.Pool == pool {
		return ps.Bytes
	}
	return 0
}

// PoolStore returns the ModelPools as the admin API's store of pools;
// nil when the cluster has no ModelPool CRD.
func (o *Operator) PoolStore() store.PoolStore {
	if !o.pools {
		return nil
	}
	return NewPoolStore(o.mgr.GetAPIReader(), o.mgr.GetClient(), o.opts.Namespace)
}

// Notify tells the control loop of a change at once when this replica
// leads; the leader's watch sees it in any case.
func (c *APIController) Notify(name string) {
	if c.o.leading() {
		c.o.ctl.Notify(name)
	}
}

// leading reports whether this replica is the leader with its control loop
// loaded.
func (o *Operator) leading() bool {
	select {
	case <-o.mgr.Elected():
	default:
		return false
	}
	select {
	case <-o.ctl.Loaded():
		return true
	default:
		return false
	}
}

// RunOnLeader runs fn on the leader only, until leadership or ctx ends:
// registry retirement, which must not run twice at once.
func (o *Operator) RunOnLeader(fn func(ctx context.Context)) error {
	return o.mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		fn(ctx)
		return nil
	}))
}

// FollowAliases re-resolves, every period on the leader, the deployments
// that name a registry version by alias, so an alias moved through any
// operator replica (or by another tool on the shared registry store) rolls
// its deployments; a move through the leader's own API is applied at once
// (Controller().NotifyModel).
func (o *Operator) FollowAliases(period time.Duration) error {
	return o.RunOnLeader(func(ctx context.Context) {
		t := o.opts.Clock.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C():
				o.ctl.NotifyModel("")
			}
		}
	})
}
