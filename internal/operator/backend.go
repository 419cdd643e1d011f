package operator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/ebb-ml/ebb/internal/replica"
)

// detachable wraps the pod backend so that the control loop's shutdown
// leaves replica pods running. control.Controller stops every replica when
// Run returns, which is right for `ebb up` and wrong for an operator: a
// restart, an upgrade or a change of leader must not take every model down.
// Once detach is called, Stop does nothing; the next leader recovers the
// pods from the API server.
type detachable struct {
	replica.Backend
	detached atomic.Bool
}

// detach makes later Stops no-ops.
func (d *detachable) detach() { d.detached.Store(true) }

// Stop stops the replica unless the operator is shutting down.
func (d *detachable) Stop(ctx context.Context, h replica.Handle) error {
	if d.detached.Load() {
		return nil
	}
	return d.Backend.Stop(ctx, h)
}

// Logs reads a replica pod's logs (ebb logs) through the wrapped backend;
// the embedded interface would hide its optional replica.Logger.
func (d *detachable) Logs(ctx context.Context, h replica.Handle, o replica.LogOptions) (io.ReadCloser, error) {
	lg, ok := d.Backend.(replica.Logger)
	if !ok {
		return nil, fmt.Errorf("the %T backend cannot read replica logs: %w", d.Backend, errors.ErrUnsupported)
	}
	return lg.Logs(ctx, h, o)
}

var _ replica.Logger = (*detachable)(nil)
