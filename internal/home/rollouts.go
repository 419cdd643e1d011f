package home

import (
	"context"
	"log/slog"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/rollout"
)

// RolloutParts are what a home provides to its rollouts: ebb up its SQL
// store, control loop and in-process gateway's meters; the operator its
// SQL store, the namespace's ModelDeployments and the meters every
// gateway pod reports.
type RolloutParts struct {
	Store       rollout.Store
	Deployments rollout.Deployments
	Meters      rollout.Measurer
	// Models moves aliases on promotion and undo, compares signatures and
	// keeps the serving history undo goes back by; nil without a registry.
	Models *registry.Service
	// Event records a rollout's transitions as its deployment's events.
	Event func(deployment, typ, reason, message string)
	// Notify tells the control loop that a deployment changed (ebb up);
	// nil where a watch tells it (the operator).
	Notify func(deployment string)
	// Shadows is what the gateways compared of each deployment's shadow:
	// ebb up's routing table, the operator's merge of what its gateway
	// pods report. Nil: shadows' verdicts stay pending, as no gateway
	// reported one.
	Shadows rollout.Shadows
	// State is told each rollout's status as it changes
	// (rollout.Options.State): the operator's Rollout condition; nil in
	// ebb up.
	State func(deployment string, s rollout.Status)
}

// NewRollouts returns the rollout manager both homes run alike; run it
// with Run (in a cluster, on the leader only).
func NewRollouts(p RolloutParts, log *slog.Logger) *rollout.Manager {
	opts := rollout.Options{Event: p.Event, Notify: p.Notify, Shadows: p.Shadows, State: p.State, Logger: log}
	if p.Models != nil {
		opts.Registry = rolloutRegistry{p.Models}
		opts.History = p.Models
	}
	return rollout.New(p.Store, p.Deployments, p.Meters, opts)
}

// rolloutRegistry is the registry as rollouts use it.
type rolloutRegistry struct{ svc *registry.Service }

func (r rolloutRegistry) MoveAlias(ctx context.Context, model, alias string, version int, by string) error {
	_, err := r.svc.MoveAlias(ctx, model, alias, version, registry.AnyVersion, by)
	return err
}

func (r rolloutRegistry) Inputs(ctx context.Context, ref string) (rollout.Signature, bool, error) {
	v, err := r.svc.ResolveString(ctx, ref)
	if err != nil {
		return nil, false, err
	}
	return v.Signature.Inputs, len(v.Signature.Inputs) > 0, nil
}
