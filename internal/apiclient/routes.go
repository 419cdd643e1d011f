package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Route objects (shard groups): /v1/routes.

func routePath(name string) string { return "/v1/routes/" + url.PathEscape(name) }

// routeBody is what the client sends of a route: its name and spec.
type routeBody struct {
	Name string            `json:"name"`
	Spec serving.RouteSpec `json:"spec"`
}

// CreateRoute creates r; it fails with code route/exists when a route has
// its name, and route/name_taken when a deployment has it.
func (c *Client) CreateRoute(ctx context.Context, r serving.Route) (serving.Route, error) {
	var out serving.Route
	_, err := c.doJSON(ctx, http.MethodPost, "/v1/routes", "application/json", routeBody{r.Name, r.Spec}, &out)
	return out, err
}

// ApplyRouteJSON creates the route body names ({"name": ..., "spec": ...},
// sent as is so that the server checks every field), or replaces its spec;
// it reports whether it created it.
func (c *Client) ApplyRouteJSON(ctx context.Context, name string, body []byte) (r serving.Route, created bool, err error) {
	status, err := c.doJSON(ctx, http.MethodPut, routePath(name), "application/json", json.RawMessage(body), &r)
	return r, status == http.StatusCreated, err
}

// GetRoute returns the named route.
func (c *Client) GetRoute(ctx context.Context, name string) (serving.Route, error) {
	var out serving.Route
	_, err := c.doJSON(ctx, http.MethodGet, routePath(name), "", nil, &out)
	return out, err
}

// ListRoutes returns every route, sorted by name.
func (c *Client) ListRoutes(ctx context.Context) ([]serving.Route, error) {
	var out api.RouteList
	_, err := c.doJSON(ctx, http.MethodGet, "/v1/routes", "", nil, &out)
	return out.Items, err
}

// DeleteRoute deletes the named route.
func (c *Client) DeleteRoute(ctx context.Context, name string) error {
	_, err := c.doJSON(ctx, http.MethodDelete, routePath(name), "", nil, nil)
	return err
}
