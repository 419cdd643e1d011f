package apiclient

import (
	"context"
	"net/http"

	"github.com/ebb-ml/ebb/internal/rollout"
)

// StartRollout starts a canary rollout of deployment.
func (c *Client) StartRollout(ctx context.Context, deployment string, req rollout.Request) (rollout.Status, error) {
	var out rollout.Status
	_, err := c.doJSON(ctx, http.MethodPost, deploymentPath(deployment)+"/rollout", "application/json", req, &out)
	return out, err
}

// GetRollout returns deployment's active rollout, else its latest.
func (c *Client) GetRollout(ctx context.Context, deployment string) (rollout.Status, error) {
	var out rollout.Status
	_, err := c.doJSON(ctx, http.MethodGet, deploymentPath(deployment)+"/rollout", "", nil, &out)
	return out, err
}

// RolloutAction pauses, resumes, aborts or promotes deployment's rollout.
func (c *Client) RolloutAction(ctx context.Context, deployment, action string) (rollout.Status, error) {
	var out rollout.Status
	_, err := c.doJSON(ctx, http.MethodPost, deploymentPath(deployment)+"/rollout/"+action, "application/json", struct{}{}, &out)
	return out, err
}

// UndoRollout moves deployment back to the version that served it before
// the current one, or to revision toRevision (> 0) of its serving history.
func (c *Client) UndoRollout(ctx context.Context, deployment string, toRevision int) (rollout.UndoResult, error) {
	var out rollout.UndoResult
	_, err := c.doJSON(ctx, http.MethodPost, deploymentPath(deployment)+"/rollout/undo", "application/json", rollout.UndoRequest{ToRevision: toRevision}, &out)
	return out, err
}
