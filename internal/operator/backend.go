package operator

import (
	"context"
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
