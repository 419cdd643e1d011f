// Package apiclient is a Go client for ebb's admin API v1 and its inference
// endpoint. API errors come back as *Error with the server's code and
// message.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/ebb-ml/ebb/internal/serving"
)

// maxResponseBytes bounds the responses the client reads.
const maxResponseBytes = 64 << 20

// Error is an error response from ebb.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the stable error code, such as "deployment/not_found"; empty
	// when the server sent none (an inference error, a proxy's page).
	Code string
	// Message says what went wrong and how to fix it.
	Message string
}

// Error returns the server's message.
func (e *Error) Error() string { return e.Message }

// unreachableError is a failure to connect to the server at all.
type unreachableError struct {
	url string
	err error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach ebb at %s: is `ebb up` running? set --server or EBB_SERVER", e.url)
}

func (e *unreachableError) Unwrap() error { return e.err }

// Client talks to one ebb server. It is safe for concurrent use.
type Client struct {
	base  string
	hc    *http.Client
	token string
	// header is sent with every request (WithHeader); never changed in
	// place, as copies of the client share it.
	header http.Header
}

// New returns a client for the ebb server at baseURL (such as
// "http://127.0.0.1:8080") that sends requests with hc, or with
// http.DefaultClient when hc is nil.
func New(baseURL string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: hc}
}

// WithToken returns a copy of c that sends token as "Authorization:
// Bearer TOKEN" with every request; "" sends none.
func (c *Client) WithToken(token string) *Client {
	cc := *c
	cc.token = token
	return &cc
}

// TenantHeader is the header that names a request's tenant to a gateway
// with auth off (gateway.DefaultTenantHeader). With auth on the token's
// tenant counts, and the header is ignored.
const TenantHeader = "Ebb-Tenant"

// WithHeader returns a copy of c that sends the header name: value with
// every request; "" sends none (removing one set before).
func (c *Client) WithHeader(name, value string) *Client {
	cc := *c
	cc.header = c.header.Clone()
	if cc.header == nil {
		cc.header = http.Header{}
	}
	if value == "" {
		cc.header.Del(name)
	} else {
		cc.header.Set(name, value)
	}
	return &cc
}

// WithTenant returns a copy of c whose requests name tenant in
// TenantHeader, as a gateway with auth off reads it; "" names none (the
// gateway's anonymous tenant).
func (c *Client) WithTenant(tenant string) *Client { return c.WithHeader(TenantHeader, tenant) }

// withQuery is path with q as its query; path alone when q is empty.
func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// Server returns the base URL the client talks to.
func (c *Client) Server() string { return c.base }

// newRequest builds a request to path on the server, with the client's
// token and headers.
func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("invalid server URL %q: %w", c.base, err)
	}
	for k, vs := range c.header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// deploymentBody is what the client sends: a deployment's name and spec.
type deploymentBody struct {
	Name string       `json:"name"`
	Spec serving.Spec `json:"spec"`
}

func deploymentPath(name string) string { return "/v1/deployments/" + url.PathEscape(name) }

// CreateDeployment creates d; it fails with code deployment/exists when the
// name is taken. Only d's Name and Spec are sent.
func (c *Client) CreateDeployment(ctx context.Context, d serving.Deployment) (serving.Deployment, error) {
	var out serving.Deployment
	_, err := c.doJSON(ctx, http.MethodPost, "/v1/deployments", "application/json", deploymentBody{d.Name, d.Spec}, &out)
	return out, err
}

// ApplyDeployment creates d or replaces the spec of the deployment with d's
// name, and reports whether it created it. Only d's Name and Spec are sent.
func (c *Client) ApplyDeployment(ctx context.Context, d serving.Deployment) (dep serving.Deployment, created bool, err error) {
	status, err := c.doJSON(ctx, http.MethodPut, deploymentPath(d.Name), "application/json", deploymentBody{d.Name, d.Spec}, &dep)
	return dep, status == http.StatusCreated, err
}

// ApplyDeploymentJSON is ApplyDeployment for a deployment already encoded
// as JSON ({"name": ..., "spec": ...}), sent as is so that the server checks
// every field: unknown fields are reported, not dropped.
func (c *Client) ApplyDeploymentJSON(ctx context.Context, name string, body []byte) (dep serving.Deployment, created bool, err error) {
	status, err := c.doJSON(ctx, http.MethodPut, deploymentPath(name), "application/json", json.RawMessage(body), &dep)
	return dep, status == http.StatusCreated, err
}

// GetDeployment returns the named deployment with its observed status.
func (c *Client) GetDeployment(ctx context.Context, name string) (serving.Deployment, error) {
	var out serving.Deployment
	_, err := c.doJSON(ctx, http.MethodGet, deploymentPath(name), "", nil, &out)
	return out, err
}

// ListDeployments returns every deployment, sorted by name.
func (c *Client) ListDeployments(ctx context.Context) ([]serving.Deployment, error) {
	var out struct {
		Items []serving.Deployment `json:"items"`
	}
	_, err := c.doJSON(ctx, http.MethodGet, "/v1/deployments", "", nil, &out)
	return out.Items, err
}

// PatchDeployment applies patch, a JSON merge patch (RFC 7386) to the
// document {"name": ..., "spec": ...}, and returns the result.
func (c *Client) PatchDeployment(ctx context.Context, name string, patch []byte) (serving.Deployment, error) {
	var out serving.Deployment
	_, err := c.doJSON(ctx, http.MethodPatch, deploymentPath(name), "application/merge-patch+json", json.RawMessage(patch), &out)
	return out, err
}

// DeleteDeployment deletes the named deployment.
func (c *Client) DeleteDeployment(ctx context.Context, name string) error {
	_, err := c.doJSON(ctx, http.MethodDelete, deploymentPath(name), "", nil, nil)
	return err
}

// Infer sends body, an Open Inference Protocol v2 inference request, to the
// named model and returns the raw response body.
func (c *Client) Infer(ctx context.Context, name string, body []byte) ([]byte, error) {
	_, b, err := c.do(ctx, http.MethodPost, "/v2/models/"+url.PathEscape(name)+"/infer", "application/json", body)
	return b, err
}

// doJSON sends in (when not nil) as JSON and decodes a successful response
// into out (when not nil). It returns the response status.
func (c *Client) doJSON(ctx context.Context, method, path, contentType string, in, out any) (int, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
	}
	status, b, err := c.do(ctx, method, path, contentType, body)
	if err != nil {
		return status, err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return status, fmt.Errorf("%s %s: cannot decode the response from ebb at %s: %w", method, path, c.base, err)
		}
	}
	return status, nil
}

// do sends one request and returns the status and body of a 2xx response;
// any other status becomes an *Error.
func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := c.newRequest(ctx, method, path, rd)
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" && body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, b, err := c.send(req, path)
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, nil, responseError(resp.StatusCode, b)
	}
	return resp.StatusCode, b, nil
}

// send sends req (to path, for messages) and returns the answer, whatever
// its status, with its body read and closed. A body over
// maxResponseBytes is an error.
func (c *Client) send(req *http.Request, path string) (*http.Response, []byte, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, &unreachableError{url: c.base, err: err}
		}
		return nil, nil, fmt.Errorf("%s %s at %s: %w", req.Method, path, c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read response from ebb at %s: %w", req.Method, path, c.base, err)
	}
	if len(b) > maxResponseBytes {
		return nil, nil, fmt.Errorf("%s %s: the response from ebb at %s is over the client's limit of %d MiB", req.Method, path, c.base, maxResponseBytes>>20)
	}
	return resp, b, nil
}

// responseError decodes an error body: the admin API's
// {"error":{"code":...,"message":...}}, OIP's {"error":"..."} (with the
// gateway's "code" beside it), or anything else, quoted.
func responseError(status int, b []byte) *Error {
	var env struct {
		Error json.RawMessage `json:"error"`
		Code  string          `json:"code"`
	}
	if json.Unmarshal(b, &env) == nil && len(env.Error) > 0 {
		var detail struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(env.Error, &detail) == nil && detail.Message != "" {
			return &Error{Status: status, Code: detail.Code, Message: detail.Message}
		}
		var msg string
		if json.Unmarshal(env.Error, &msg) == nil && msg != "" {
			return &Error{Status: status, Code: env.Code, Message: msg}
		}
	}
	text := excerpt(strings.TrimSpace(string(b)))
	if text == "" {
		text = "(empty body)"
	}
	return &Error{Status: status, Message: fmt.Sprintf("ebb answered %d %s: %s", status, http.StatusText(status), text)}
}
