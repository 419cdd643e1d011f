package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"syscall"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Tenant limits: /v1/limits.

// limitPath is the URL path of tenant's limit on deployment ("" for the
// tenant-wide one).
func limitPath(tenant, deployment string) string {
	p := "/v1/limits/" + url.PathEscape(tenant)
	if deployment != "" {
		p += "/deployments/" + url.PathEscape(deployment)
	}
	return p
}

// ListLimits returns every tenant limit, sorted by tenant, then
// deployment.
func (c *Client) ListLimits(ctx context.Context) ([]serving.Limit, error) {
	var out api.LimitList
	_, err := c.doJSON(ctx, http.MethodGet, "/v1/limits", "", nil, &out)
	return out.Items, err
}

// GetLimit returns tenant's limit on deployment ("" for the tenant-wide
// one); it fails with code limit/not_found when none is set.
func (c *Client) GetLimit(ctx context.Context, tenant, deployment string) (serving.Limit, error) {
	var out serving.Limit
	_, err := c.doJSON(ctx, http.MethodGet, limitPath(tenant, deployment), "", nil, &out)
	return out, err
}

// PutLimit sets l, replacing every bound of the limit with its key, and
// reports whether it created it.
func (c *Client) PutLimit(ctx context.Context, l serving.Limit) (out serving.Limit, created bool, err error) {
	body := api.LimitBody{Rate: l.Rate, Burst: l.Burst, Concurrency: l.Concurrency, Share: l.Share}
	status, err := c.doJSON(ctx, http.MethodPut, limitPath(l.Tenant, l.Deployment), "application/json", body, &out)
	return out, status == http.StatusCreated, err
}

// DeleteLimit deletes tenant's limit on deployment ("" for the
// tenant-wide one).
func (c *Client) DeleteLimit(ctx context.Context, tenant, deployment string) error {
	_, err := c.doJSON(ctx, http.MethodDelete, limitPath(tenant, deployment), "", nil, nil)
	return err
}

// ListLimitsIfChanged is ListLimits with If-None-Match: when etag ("" for
// none) still names the list, the server answers 304 and it returns
// changed false and nothing else. It is what a gateway polls
// (limit.Lister).
func (c *Client) ListLimitsIfChanged(ctx context.Context, etag string) (limits []serving.Limit, newETag string, changed bool, err error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/limits", nil)
	if err != nil {
		return nil, "", false, err
	}
	req.Header.Set("Accept", "application/json")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, "", false, &unreachableError{url: c.base, err: err}
		}
		return nil, "", false, fmt.Errorf("GET /v1/limits at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	switch {
	case err != nil:
		return nil, "", false, fmt.Errorf("GET /v1/limits: read response from ebb at %s: %w", c.base, err)
	case resp.StatusCode == http.StatusNotModified:
		return nil, etag, false, nil
	case resp.StatusCode != http.StatusOK:
		return nil, "", false, responseError(resp.StatusCode, b)
	}
	var out api.LimitList
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, "", false, fmt.Errorf("GET /v1/limits: cannot decode the response from ebb at %s: %w", c.base, err)
	}
	return out.Items, resp.Header.Get("ETag"), true, nil
}
