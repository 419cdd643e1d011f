package apiclient

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/monitor"
	"github.com/ebb-ml/ebb/internal/registry"
)

func profilePath(name string, version int) string {
	return modelPath(name) + "/versions/" + strconv.Itoa(version) + "/profile"
}

// Drift returns the drift report of each watched version of a deployment.
func (c *Client) Drift(ctx context.Context, deployment string) (api.DriftReport, error) {
	var out api.DriftReport
	_, err := c.doJSON(ctx, http.MethodGet, deploymentPath(deployment)+"/drift", "", nil, &out)
	return out, err
}

// GetProfile returns the reference profile of a model version; an *Error
// with code profile/not_found when it has none.
func (c *Client) GetProfile(ctx context.Context, name string, version int) (*monitor.Profile, error) {
	var out monitor.Profile
	if _, err := c.doJSON(ctx, http.MethodGet, profilePath(name, version), "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PutProfile sets the reference profile of a model version and returns
// the version, its tags naming the profile.
func (c *Client) PutProfile(ctx context.Context, name string, version int, p *monitor.Profile) (registry.Version, error) {
	var out registry.Version
	_, err := c.doJSON(ctx, http.MethodPut, profilePath(name, version), "application/json", p, &out)
	return out, err
}

// DeleteProfile removes the reference profile of a model version.
func (c *Client) DeleteProfile(ctx context.Context, name string, version int) error {
	_, err := c.doJSON(ctx, http.MethodDelete, profilePath(name, version), "", nil, nil)
	return err
}

// IsNoProfile reports whether err says a version has no profile.
func IsNoProfile(err error) bool {
	e, ok := errors.AsType[*Error](err)
	return ok && e.Code == "profile/not_found"
}

// JoinLabels joins labels with a deployment's logged predictions and
// returns the quality of each version that made them.
func (c *Client) JoinLabels(ctx context.Context, deployment string, req api.LabelsRequest) (monitor.QualityReport, error) {
	var out monitor.QualityReport
	_, err := c.doJSON(ctx, http.MethodPost, deploymentPath(deployment)+"/labels", "application/json", req, &out)
	return out, err
}
