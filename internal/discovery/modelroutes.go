package discovery

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/serving"
	"k8s.io/apimachinery/pkg/api/meta"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ModelRoutes keeps a gateway's table of route objects (routing.Shards) in
// line with the ModelRoutes of one namespace: a name that is no
// ModelDeployment but a ModelRoute resolves, per request, to the
// ModelDeployment its rules pick. A ModelRoute that shares its name with a
// ModelDeployment is in the table but never used: the gateway looks route
// objects up only when no deployment has the name. One that is not valid
// (kubectl wrote past the CRD's checks: a rule to a name that is no
// deployment's, say) is left out, and logged.
//
// It runs on a cache of its own (ModelRoutesCacheOptions), so that a
// cluster without the ModelRoute CRD (CRDs are not upgraded with the
// chart), or a gateway whose RBAC does not cover ModelRoutes, still routes
// its ModelDeployments: the first only logs that route objects are off,
// the second never fills the table.
type ModelRoutes struct {
	cache     cache.Cache
	namespace string
	table     *routing.Shards
	log       *slog.Logger
	kick      chan struct{} // cap 1: a ModelRoute changed
	synced    chan struct{} // closed once the table was first filled, or route objects are off
}

// ModelRoutesCacheOptions returns the options of ModelRoutes' cache: the
// namespace only.
func ModelRoutesCacheOptions(namespace string) cache.Options {
	return cache.Options{DefaultNamespaces: map[string]cache.Config{namespace: {}}}
}

// NewModelRoutes returns ModelRoutes that fill table from c, a cache made
// with ModelRoutesCacheOptions (and a scheme with v1alpha1) that nothing
// else starts. It starts nothing.
func NewModelRoutes(c cache.Cache, namespace string, table *routing.Shards, log *slog.Logger) *ModelRoutes {
	if log == nil {
		log = slog.Default()
	}
	return &ModelRoutes{cache: c, namespace: namespace, table: table, log: log,
		kick: make(chan struct{}, 1), synced: make(chan struct{})}
}

// Synced is closed once the table holds the namespace's ModelRoutes, or
// when the cluster has none to hold (no CRD).
func (m *ModelRoutes) Synced() <-chan struct{} { return m.synced }

// Run watches ModelRoutes (starting the cache) and refills the table on
// every change until ctx ends. Without the ModelRoute CRD it logs that
// route objects are off and returns nil.
func (m *ModelRoutes) Run(ctx context.Context) error {
	inf, err := m.cache.GetInformer(ctx, &v1alpha1.ModelRoute{})
	if meta.IsNoMatchError(err) {
		m.log.Warn("route objects are off: the cluster has no ModelRoute CRD (CRDs are not upgraded with the chart): apply deploy/crds/serving.ebb.dev_modelroutes.yaml and restart the gateways to use them")
		close(m.synced)
		return nil
	}
	if err != nil {
		return fmt.Errorf("watch ModelRoutes: %w", err)
	}
	kick := func(any) {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    kick,
		UpdateFunc: func(_, o any) { kick(o) },
		DeleteFunc: kick,
	}); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- m.cache.Start(ctx) }()
	if !m.cache.WaitForCacheSync(ctx) {
		select {
		case err := <-errc:
			return fmt.Errorf("ModelRoutes cache: %w", err)
		default:
			return ctx.Err()
		}
	}
	m.fill(ctx)
	close(m.synced)
	for {
		select {
		case <-ctx.Done():
			return <-errc
		case <-m.kick:
			m.fill(ctx)
		}
	}
}

// fill replaces the table with the cache's ModelRoutes.
func (m *ModelRoutes) fill(ctx context.Context) {
	var list v1alpha1.ModelRouteList
	if err := m.cache.List(ctx, &list, client.InNamespace(m.namespace)); err != nil {
		if ctx.Err() == nil {
			m.log.Warn("cannot list ModelRoutes; the gateway keeps the route objects it has", "err", err)
		}
		return
	}
	routes := make([]serving.Route, len(list.Items))
	for i := range list.Items {
		routes[i] = list.Items[i].Route()
	}
	if err := m.table.Set(routes); err != nil {
		m.log.Warn("ModelRoutes left out: they are not valid; fix them with kubectl edit modelroute, or ebb routes apply", "err", err)
	}
}
