// Package home assembles what both of ebb's homes serve alike: ebb up on
// one machine and the operator in a cluster open the same SQL store
// (OpenStore), run the same model registry (NewRegistry) and serve the
// same admin API (NewAdminAPI), so that every route and flag exists in
// both.
package home

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/control"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/rollout"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/postgres"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// Store is what a home needs of its SQL store; the SQLite and PostgreSQL
// stores both provide it.
type Store interface {
	auth.TokenStore
	control.Store
	api.Store
	registry.Store
	rollout.Store
	store.RouteStore
	store.LimitStore
	store.JobStore
	// DeploymentsStamp: see StampedLister.
	DeploymentsStamp(ctx context.Context) (string, error)
	Close() error
}

// OpenStore opens the PostgreSQL store named by dsn (--store-dsn) or
// $EBB_STORE_DSN, else the SQLite store in dataDir.
func OpenStore(ctx context.Context, dsn, dataDir string) (Store, error) {
	if dsn == "" {
		dsn = os.Getenv("EBB_STORE_DSN")
	}
	if dsn != "" {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// The store holds replica secrets and token hashes: only ebb's user
	// may read it (SQLite gives its -wal and -shm files the same mode).
	path := filepath.Join(dataDir, "ebb.db")
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600); err == nil {
		f.Close()
		_ = os.Chmod(path, 0o600)
	}
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// AdminParts are what a home provides to the admin API. ebb up gives its
// SQL store and control loop; the operator gives the namespace's
// ModelDeployments, its leader's control loop and Kubernetes Events.
type AdminParts struct {
	Store  api.Store
	Ctl    api.Controller
	Models *registry.Service // nil: no registry routes (tests)
	Events api.Events
	Logs   api.Logs
	// Costs, when set, serves /v1/cost and /v1/deployments/{name}/cost.
	Costs api.Costs
	Home  string // api.HomeUp or api.HomeCluster
	// Version is the server's, answered at /v1/version.
	Version string
	// Tokens, when set, serves /v1/tokens; OnRevoke is told each revoked
	// token's id (a local verifier forgets it).
	Tokens   auth.TokenStore
	OnRevoke func(id string)
	// Rollouts, when set, serves /v1/deployments/{name}/rollout.
	Rollouts api.Rollouts
	// Shadows, when set, serves /v1/deployments/{name}/shadow; when nil,
	// Rollouts serves it too if it can (*rollout.Manager does), so that
	// both homes have the route wherever they have rollouts.
	Shadows api.Shadows
	// Routes, when set, serves /v1/routes: route objects (shard groups),
	// ebb up's SQL store or the operator's ModelRoutes; RoutesChanged,
	// when set, is called after each change (ebb up reloads its
	// gateway's route table; in a cluster the gateways watch).
	Routes        store.RouteStore
	RoutesChanged func(ctx context.Context)
	// Pools, when set, serves /v1/pools: multi-model pools (the
	// operator's ModelPools). When nil, the pools of Store are served if
	// it keeps them (ebb up's SQL store).
	Pools store.PoolStore
	// Limits, when set, serves /v1/limits: tenant limits, kept in the
	// SQL store in both homes; LimitsChanged, when set, is called after
	// each change (the gateways also poll).
	Limits        store.LimitStore
	LimitsChanged func(ctx context.Context)
	// Jobs, when set, serves /v1/jobs: batch jobs, kept in the SQL store
	// and run by this manager (on the leader, in a cluster).
	Jobs *Jobs
	// Stats, when set, serves /v1/deployments/{name}/stats: recent
	// request rate, errors and latency (ebb up samples its gateway's
	// metrics; a cluster's gateways are scraped by Prometheus instead).
	Stats api.Stats
	// Drift, when set, serves /v1/deployments/{name}/drift, and Labels
	// /v1/deployments/{name}/labels (drift.go).
	Drift  api.Drift
	Labels api.Labels
}

// NewAdminAPI is the admin API (/v1) both homes serve, built in one place
// so that every route exists in both: deployments, the registry and
// serving history, events, logs and the version.
func NewAdminAPI(p AdminParts, log *slog.Logger) *api.Handler {
	admin := api.New(p.Store, p.Ctl, log)
	if p.Models != nil {
		admin.MountModels(p.Models)
	}
	admin.MountEvents(p.Events)
	if ds, ok := p.Costs.(api.Decisions); ok {
		// The control loop that reports costs also keeps the
		// autoscaler's decisions (control.Controller).
		admin.MountDecisions(ds)
	}
	if p.Costs != nil {
		admin.MountCosts(p.Costs)
	}
	admin.MountLogs(p.Logs)
	admin.MountVersion(api.VersionInfo{Version: p.Version, Home: p.Home})
	if p.Tokens != nil {
		admin.MountTokens(p.Tokens, p.OnRevoke)
	}
	if p.Rollouts != nil {
		admin.MountRollouts(p.Rollouts)
	}
	sh := p.Shadows
	if sh == nil {
		sh, _ = p.Rollouts.(api.Shadows)
	}
	if sh != nil {
		admin.MountShadows(sh)
	}
	if p.Routes != nil {
		admin.MountRoutes(p.Routes, p.RoutesChanged)
	}
	if p.Pools != nil {
		admin.MountPools(p.Pools)
	} else if ps, ok := p.Store.(store.PoolStore); ok {
		// Pools where the store keeps them (ebb up's SQL store); the
		// control loop finds them there too.
		admin.MountPools(ps)
	}
	if p.Limits != nil {
		admin.MountLimits(p.Limits, p.LimitsChanged)
	}
	if p.Jobs != nil {
		admin.MountJobs(p.Jobs.Store(), p.Jobs.Admission(), p.Jobs.Submitted)
	}
	if p.Stats != nil {
		admin.MountStats(p.Stats)
	}
	if p.Drift != nil {
		admin.MountDrift(p.Drift)
	}
	if p.Labels != nil {
		admin.MountLabels(p.Labels)
	}
	return admin
}
