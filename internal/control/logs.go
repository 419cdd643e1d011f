package control

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ebb-ml/ebb/internal/replica"
)

// Logs returns the output of one replica of a deployment, read by the
// backend (a replica.Logger). The replica is found by its handle in the
// store, so any Controller over the same store can read it. A replica the
// deployment does not have (or no longer has: it ended) is
// replica.ErrNotFound; a backend that cannot read logs is
// errors.ErrUnsupported. Safe for concurrent use.
func (c *Controller) Logs(ctx context.Context, deployment, id string, opts replica.LogOptions) (io.ReadCloser, error) {
	lg, ok := c.backend.(replica.Logger)
	if !ok {
		return nil, fmt.Errorf("the replica backend (%T) cannot read replica logs: %w", c.backend, errors.ErrUnsupported)
	}
	hs, err := c.store.ListReplicas(ctx)
	if err != nil {
		return nil, fmt.Errorf("find replica %s: %w", id, err)
	}
	for _, h := range hs {
		if h.Spec.ID == id && h.Spec.Deployment == deployment {
			return lg.Logs(ctx, h, opts)
		}
	}
	return nil, fmt.Errorf("deployment %s has no replica %s (it may have ended): %w", deployment, id, replica.ErrNotFound)
}
