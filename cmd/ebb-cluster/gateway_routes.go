package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ebb-ml/ebb/internal/discovery"
	"github.com/ebb-ml/ebb/internal/routing"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// gatewayShards is the gateway's table of route objects, filled from the
// namespace's ModelRoutes by a watch of its own (discovery.ModelRoutes):
// without the ModelRoute CRD, or the RBAC to read ModelRoutes, the gateway
// still serves every ModelDeployment. Start it with run.
type gatewayShards struct {
	table  *routing.Shards
	routes *discovery.ModelRoutes
	log    *slog.Logger
}

func newGatewayShards(cfg *rest.Config, scheme *runtime.Scheme, ns string, log *slog.Logger) (*gatewayShards, error) {
	opts := discovery.ModelRoutesCacheOptions(ns)
	opts.Scheme = scheme
	c, err := cache.New(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("gateway: kubernetes cache for ModelRoutes: %w", err)
	}
	table := &routing.Shards{}
	return &gatewayShards{table: table, routes: discovery.NewModelRoutes(c, ns, table, log), log: log}, nil
}

// run follows the ModelRoutes until ctx ends; a failure is logged, and
// the gateway goes on with the route objects it has.
func (s *gatewayShards) run(ctx context.Context) {
	if err := s.routes.Run(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("watching ModelRoutes stopped: route objects keep their last rules until the gateway restarts", "err", err)
	}
}
