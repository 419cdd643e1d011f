package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Multi-model pools: /v1/pools.

func poolPath(name string) string { return "/v1/pools/" + url.PathEscape(name) }

// ApplyPoolJSON creates the pool body names ({"name": ..., "spec": ...},
// sent as is so that the server checks every field), or replaces its spec;
// it reports whether it created it.
func (c *Client) ApplyPoolJSON(ctx context.Context, name string, body []byte) (p serving.Pool, created bool, err error) {
	status, err := c.doJSON(ctx, http.MethodPut, poolPath(name), "application/json", json.RawMessage(body), &p)
	return p, status == http.StatusCreated, err
}

// GetPool returns the named pool with its status.
func (c *Client) GetPool(ctx context.Context, name string) (serving.Pool, error) {
	var out serving.Pool
	_, err := c.doJSON(ctx, http.MethodGet, poolPath(name), "", nil, &out)
	return out, err
}

// ListPools returns every pool with its status, sorted by name.
func (c *Client) ListPools(ctx context.Context) ([]serving.Pool, error) {
	var out api.PoolList
	_, err := c.doJSON(ctx, http.MethodGet, "/v1/pools", "", nil, &out)
	return out.Items, err
}

// DeletePool deletes the named pool; it fails with code pool/in_use while
// deployments name it.
func (c *Client) DeletePool(ctx context.Context, name string) error {
	_, err := c.doJSON(ctx, http.MethodDelete, poolPath(name), "", nil, nil)
	return err
}
