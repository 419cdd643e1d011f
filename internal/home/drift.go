package home

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/drift"
	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/predlog"
	"github.com/ebb-ml/ebb/internal/registry"
)

// Drift monitoring (internal/drift) in each home. The monitor counts what
// the prediction log samples, so a deployment is watched when its
// spec.predictionLog samples it and a version it serves has a reference
// profile (ebb models push --profile-data).
//
//   - ebb up (UpDrift): one process. Its Sink goes beside the log's files
//     (PredictionLogFlags.Open's extra sinks); its Monitor serves
//     /v1/deployments/{name}/drift and the ebb_drift_* metrics.
//   - A cluster: the gateways see the traffic (GatewayDrift: a Sink into
//     a Monitor of their own, shipped to the operator) and the operator
//     serves the API (OperatorDrift: a Hub that merges the gateways'
//     windows, its Handler behind the gateways' token).

// driftWindow is the window every home uses: 6 sub-windows of 10 minutes.
// The gateways and the operator must agree on its sub-window.
func driftWindow() monitor.WindowOptions { return monitor.WindowOptions{} }

// UpDrift is ebb up's drift monitor.
type UpDrift struct {
	Monitor *drift.Monitor
	// Labels joins labels with the predictions the log sampled.
	Labels *drift.Index
	syncer *drift.Syncer
	sink   *drift.Sink
}

// NewUpDrift returns ebb up's drift monitor over its deployments and
// registry, its metrics registered with reg.
func NewUpDrift(deps drift.Deployments, models *registry.Service, reg prometheus.Registerer, log *slog.Logger) *UpDrift {
	mon := drift.NewMonitor(driftWindow())
	s := &drift.Syncer{Deployments: deps, Registry: models, Served: models.Store(), Apply: mon.Set, Log: log}
	reg.MustRegister(drift.NewCollector(mon))
	idx := drift.NewIndex(0)
	return &UpDrift{Monitor: mon, Labels: idx, syncer: s, sink: drift.NewSink(mon, idx, drift.NewMetrics(reg), s.Wake)}
}

// Sink is what the prediction log hands its records to.
func (d *UpDrift) Sink() predlog.Sink { return d.sink }

// Run follows the deployments and their versions' profiles until ctx
// ends.
func (d *UpDrift) Run(ctx context.Context) error { return d.syncer.Run(ctx) }

// GatewayDrift is a cluster gateway's drift monitor: it counts what its
// prediction log samples and ships the counts to the operator.
type GatewayDrift struct {
	remote *drift.Remote
	sink   *drift.Sink
}

// NewGatewayDrift returns the drift monitor of gateway name, its metrics
// registered with reg. Its Sink counts from the start; Run reaches the
// operator.
func NewGatewayDrift(name string, reg prometheus.Registerer, log *slog.Logger) *GatewayDrift {
	mon := drift.NewMonitor(driftWindow())
	out := drift.NewOutbox(0)
	r := &drift.Remote{Gateway: name, Monitor: mon, Outbox: out, Log: log}
	return &GatewayDrift{remote: r, sink: drift.NewSink(mon, out, drift.NewMetrics(reg), r.Wake)}
}

// Sink is what the prediction log hands its records to.
func (d *GatewayDrift) Sink() predlog.Sink { return d.sink }

// Run polls the operator at base for what to watch and ships the windows,
// with hc (which carries the gateway's token), until ctx ends. Call it
// once.
func (d *GatewayDrift) Run(ctx context.Context, base string, hc *http.Client) error {
	d.remote.Base, d.remote.HTTP = base, hc
	return d.remote.Run(ctx)
}

// OperatorDrift is the cluster's drift monitor on the operator: the
// profiles to watch, worked out from the ModelDeployments and the
// registry, and the gateways' windows, merged.
type OperatorDrift struct {
	Hub    *drift.Hub
	syncer *drift.Syncer
}

// NewOperatorDrift returns the operator's drift monitor, its metrics
// registered with reg.
func NewOperatorDrift(deps drift.Deployments, models *registry.Service, reg prometheus.Registerer, log *slog.Logger) *OperatorDrift {
	hub := drift.NewHub(driftWindow())
	s := &drift.Syncer{Deployments: deps, Registry: models, Served: models.Store(), Apply: hub.Set, Log: log}
	hub.Missed = s.Wake
	reg.MustRegister(drift.NewCollector(hub))
	return &OperatorDrift{Hub: hub, syncer: s}
}

// Run follows the deployments and their versions' profiles until ctx
// ends; run it on the leader, which the gateways reach.
func (d *OperatorDrift) Run(ctx context.Context) error { return d.syncer.Run(ctx) }

// Handler serves the gateways' drift paths (drift.ProfilesPath and
// drift.WindowsPath), behind a's gateway scope when a is set.
func (d *OperatorDrift) Handler(a auth.Authenticator) http.Handler {
	h := d.Hub.Handler()
	if a != nil {
		h = auth.Require(a, auth.Gateway, h)
	}
	return h
}
