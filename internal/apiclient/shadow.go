package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ebb-ml/ebb/internal/rollout"
)

// StartShadow mirrors a share of deployment's requests to req.To,
// replacing any shadow it has.
func (c *Client) StartShadow(ctx context.Context, deployment string, req rollout.ShadowRequest) (rollout.ShadowStatus, error) {
	var out rollout.ShadowStatus
	_, err := c.doJSON(ctx, http.MethodPost, deploymentPath(deployment)+"/shadow", "application/json", req, &out)
	return out, err
}

// GetShadow returns deployment's shadow, its verdict judged by crit (zero
// fields: the server's defaults).
func (c *Client) GetShadow(ctx context.Context, deployment string, crit rollout.ShadowCriteria) (rollout.ShadowStatus, error) {
	q := url.Values{}
	if crit.MinAgreement != 0 {
		q.Set("minAgreement", strconv.FormatFloat(crit.MinAgreement, 'g', -1, 64))
	}
	if crit.MinRequests != 0 {
		q.Set("minRequests", strconv.Itoa(crit.MinRequests))
	}
	path := deploymentPath(deployment) + "/shadow"
	path = withQuery(path, q)
	var out rollout.ShadowStatus
	_, err := c.doJSON(ctx, http.MethodGet, path, "", nil, &out)
	return out, err
}

// StopShadow ends deployment's shadow and returns its last status.
func (c *Client) StopShadow(ctx context.Context, deployment string) (rollout.ShadowStatus, error) {
	var out rollout.ShadowStatus
	_, err := c.doJSON(ctx, http.MethodDelete, deploymentPath(deployment)+"/shadow", "", nil, &out)
	return out, err
}
