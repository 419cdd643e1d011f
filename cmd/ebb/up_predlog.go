package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ebb-ml/ebb/internal/control"
	"github.com/ebb-ml/ebb/internal/gateway"
	"github.com/ebb-ml/ebb/internal/home"
	"github.com/ebb-ml/ebb/internal/predlog"
)

// upSamplingEvery is how often ebb up rereads every deployment's
// spec.predictionLog from the store, for the changes another process
// sharing it (PostgreSQL) made; its own admin API's apply at once.
const upSamplingEvery = 10 * time.Second

// upPredictions is ebb up's prediction log (home.PredictionLog): parts in
// --prediction-log-dir, DATA-DIR/predictions by default, and in S3 with
// --prediction-log-s3.
type upPredictions struct {
	pl   *home.PredictionLog
	st   home.DeploymentGetter
	list home.DeploymentLister // what Follow lists (the cached deployments)
	log  *slog.Logger
	stop func() // ends the log and waits for its flush; idempotent
}

func openUpPredictions(o upOptions, st home.DeploymentGetter, list home.DeploymentLister, reg prometheus.Registerer, log *slog.Logger, extra ...predlog.Sink) (*upPredictions, error) {
	flags := o.predictions
	if flags.Dir == "" {
		flags.Dir = filepath.Join(o.dataDir, "predictions")
	}
	pl, err := flags.Open(reg, log, extra...) // extra: the drift monitor's sink
	if err != nil {
		return nil, err
	}
	return &upPredictions{pl: pl, st: st, list: list, log: log, stop: func() {}}, nil
}

// gateway returns what the gateway logs to.
func (u *upPredictions) gateway() gateway.PredictionLog { return u.pl.Logger }

// controller returns the control loop as the admin API sees it: a write's
// Sync first brings the log's sampling in line with the deployment's spec,
// so that the request after `ebb deploy` is logged as the spec says.
func (u *upPredictions) controller(ctl *control.Controller) *upController {
	return &upController{Controller: ctl, u: u}
}

// start runs the log until stop, and follows the specs until followCtx
// ends. The log's own context outlives the signal's: stop it after the
// gateway has drained, so that the requests it finished are logged.
func (u *upPredictions) start(followCtx context.Context) {
	go u.pl.Sampling.Follow(followCtx, u.list, upSamplingEvery, nil, func(err error) {
		u.log.Warn("prediction log: cannot read the deployments' specs; sampling stays as it was", "err", err)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := u.pl.Run(ctx); err != nil {
			u.log.Warn("prediction log: closing the last part failed", "err", err)
		}
	}()
	var once sync.Once
	u.stop = func() { once.Do(func() { cancel(); <-done }) }
}

// upController is ebb up's control loop with the prediction log's
// sampling kept in line by the admin API's writes (its other methods are
// the loop's).
type upController struct {
	*control.Controller
	u *upPredictions
}

// Sync takes deployment name's spec.predictionLog, then waits for the
// control loop to apply the change.
func (c *upController) Sync(ctx context.Context, name string) error {
	if err := c.u.pl.Sampling.Sync(ctx, c.u.st, name); err != nil {
		c.u.log.Warn("prediction log: cannot read the deployment's spec; its sampling follows within "+upSamplingEvery.String(), "deployment", name, "err", err)
	}
	return c.Controller.Sync(ctx, name)
}
