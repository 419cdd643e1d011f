package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/ebb-ml/ebb/api/v1alpha1"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/predlog"
)

// gatewayPredictions is a gateway's prediction log (home.PredictionLog),
// on with --prediction-log-dir (the chart's gateway.predictionLog): parts
// in that directory, an emptyDir, uploaded to S3 with --prediction-log-s3.
// Each gateway logs the requests it serves, so a deployment's records are
// the union of every gateway's parts.
type gatewayPredictions struct {
	pl   *home.PredictionLog
	log  *slog.Logger
	stop context.CancelFunc
	done chan struct{}
}

// openGatewayPredictions opens the log the flags describe and has its
// sampling follow the ModelDeployments' spec.predictionLog through c, the
// cache that discovery.Routes watches them with: call it before the cache
// starts. A nil log: the flags leave it off.
func openGatewayPredictions(ctx context.Context, flags home.PredictionLogFlags, c cache.Cache, reg prometheus.Registerer, log *slog.Logger, extra ...predlog.Sink) (*gatewayPredictions, error) {
	pl, err := flags.Open(reg, log, extra...) // extra: the drift monitor's sink
	if err != nil || pl == nil {
		return nil, err
	}
	inf, err := c.GetInformer(ctx, &v1alpha1.ModelDeployment{})
	if err != nil {
		return nil, fmt.Errorf("prediction log: watch ModelDeployments: %w", err)
	}
	set := func(obj any) {
		if md, ok := obj.(*v1alpha1.ModelDeployment); ok {
			pl.Sampling.Set(md.Name, md.Spec.PredictionLog)
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if md, ok := obj.(*v1alpha1.ModelDeployment); ok {
				pl.Sampling.Remove(md.Name)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("prediction log: watch ModelDeployments: %w", err)
	}
	return &gatewayPredictions{pl: pl, log: log, stop: func() {}}, nil
}

// gateway returns what the gateway logs to; nil when the log is off.
func (p *gatewayPredictions) gateway() gateway.PredictionLog {
	if p == nil {
		return nil
	}
	return p.pl.Logger
}

// start runs the log until finish. Its context is its own, not the
// signal's: finish it after the gateway has drained.
func (p *gatewayPredictions) start() {
	if p == nil {
		return
	}
	var ctx context.Context
	ctx, p.stop = context.WithCancel(context.Background())
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		if err := p.pl.Run(ctx); err != nil {
			p.log.Warn("prediction log: closing the last part failed", "err", err)
		}
	}()
}

// finish ends the log: the records queued are written, the last part
// closed and, with S3, the parts left uploaded.
func (p *gatewayPredictions) finish() {
	if p == nil || p.done == nil {
		return
	}
	p.stop()
	<-p.done
}
