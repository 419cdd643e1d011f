package apiclient

import (
	"context"
	"errors"
	"fmt"
	"github.com/ebb-ml/ebb/internal/autoscale"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"syscall"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Events returns a deployment's recent events, oldest first: scale
// decisions with their reasons, replica starts, readiness and failures.
func (c *Client) Events(ctx context.Context, deployment string) ([]serving.Event, error) {
	var out api.EventList
	_, err := c.doJSON(ctx, http.MethodGet, deploymentPath(deployment)+"/events", "", nil, &out)
	return out.Items, err
}

// Version returns the server's version and home ("up" or "cluster").
func (c *Client) Version(ctx context.Context) (api.VersionInfo, error) {
	var out api.VersionInfo
	_, err := c.doJSON(ctx, http.MethodGet, "/v1/version", "", nil, &out)
	return out, err
}

// DeleteVersion deletes one version of a model (its artifact goes; its
// record stays, purged, for lineage) and returns it. A version an alias or
// a deployment uses is refused with code model/in_use (409), whose message
// names them.
func (c *Client) DeleteVersion(ctx context.Context, name string, version int) (registry.Version, error) {
	var out registry.Version
	_, err := c.doJSON(ctx, http.MethodDelete, modelPath(name)+"/versions/"+strconv.Itoa(version), "", nil, &out)
	return out, err
}

// DeleteModel deletes a model with every version; refused with code
// model/in_use while any is used.
func (c *Client) DeleteModel(ctx context.Context, name string) error {
	_, err := c.doJSON(ctx, http.MethodDelete, modelPath(name), "", nil, nil)
	return err
}

// LogOptions select the output Logs streams.
type LogOptions struct {
	// Replica is one replica's ID; empty: every current replica, each
	// line prefixed with "[ID] ".
	Replica string
	// Follow keeps the stream open for new output.
	Follow bool
	// Tail is the number of lines from the end of each log; 0: the
	// server's default (100); -1: the whole log.
	Tail int64
}

// Logs streams replica output of a deployment. The caller reads the
// stream until io.EOF (with Follow: until the replicas end) and closes
// it; cancelling ctx ends it.
func (c *Client) Logs(ctx context.Context, deployment string, opts LogOptions) (io.ReadCloser, error) {
	q := url.Values{}
	if opts.Replica != "" {
		q.Set("replica", opts.Replica)
	}
	if opts.Follow {
		q.Set("follow", "true")
	}
	if opts.Tail != 0 {
		q.Set("tail", strconv.FormatInt(opts.Tail, 10))
	}
	path := deploymentPath(deployment) + "/logs"
	path = withQuery(path, q)
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, &unreachableError{url: c.base, err: err}
		}
		return nil, fmt.Errorf("GET %s at %s: %w", path, c.base, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		return nil, responseError(resp.StatusCode, b)
	}
	return resp.Body, nil
}

// Cost returns what deployment's replicas used over since (a period such
// as "7d" or an RFC 3339 time; "" for the server's default, 7 days).
func (c *Client) Cost(ctx context.Context, deployment, since string) (serving.Cost, error) {
	var out serving.Cost
	_, err := c.doJSON(ctx, http.MethodGet, deploymentPath(deployment)+"/cost"+sinceQuery(since), "", nil, &out)
	return out, err
}

// Costs returns what every deployment's replicas used over since, and the
// total.
func (c *Client) Costs(ctx context.Context, since string) (api.CostList, error) {
	var out api.CostList
	_, err := c.doJSON(ctx, http.MethodGet, "/v1/cost"+sinceQuery(since), "", nil, &out)
	return out, err
}

func sinceQuery(since string) string {
	if since == "" {
		return ""
	}
	return "?since=" + url.QueryEscape(since)
}

// Decisions returns a deployment's latest autoscaler decisions with their
// inputs, oldest first.
func (c *Client) Decisions(ctx context.Context, deployment string) ([]autoscale.Record, error) {
	var out api.DecisionList
	_, err := c.doJSON(ctx, http.MethodGet, deploymentPath(deployment)+"/decisions", "", nil, &out)
	return out.Items, err
}
