package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/store"
)

// upShardsEvery is how often ebb up rereads its route objects from the
// store, for those that another process sharing it (PostgreSQL) wrote;
// its own admin API's changes reach the table at once.
const upShardsEvery = 5 * time.Second

// upShards is ebb up's table of route objects (shard groups), which its
// gateway (REST and gRPC) resolves names through, kept in line with the
// store.
type upShards struct {
	table *routing.Shards
	st    store.RouteStore
	log   *slog.Logger
}

func newUpShards(st store.RouteStore, log *slog.Logger) *upShards {
	return &upShards{table: &routing.Shards{}, st: st, log: log}
}

// changed reloads the table after the admin API changed a route, before
// it answers: the next request sees the change.
func (u *upShards) changed(ctx context.Context) {
	if err := u.table.Reload(ctx, u.st.ListRoutes); err != nil {
		u.log.Warn("route objects: reload after a change failed; retrying shortly", "err", err)
	}
}

// run follows the store until ctx ends.
func (u *upShards) run(ctx context.Context) {
	u.table.Follow(ctx, u.st.ListRoutes, upShardsEvery, func(err error) {
		u.log.Warn("route objects: cannot read them from the store; the gateway keeps those it has", "err", err)
	})
}
