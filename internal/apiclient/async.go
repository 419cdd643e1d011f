package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ebb-ml/ebb/internal/queue"
)

// Async inference requests (docs/async.md): the gateway's /v2/async. A
// request is its tenant's: the token's with auth on, else the one named by
// TenantHeader (WithTenant); another tenant's id answers as an unknown one,
// code async/not_found.

// Error codes of the async API.
const (
	CodeAsyncNotFound = "async/not_found"
	CodeAsyncFinished = "async/finished"
	CodeAsyncBadQuery = "async/bad_query"
)

// AsyncStatus is an async request's state as the gateway answers it
// without a result: the 202 of a submit or a poll, the 410 of a
// cancelled request, the 200 of a cancel.
type AsyncStatus struct {
	ID    string      `json:"id"`
	State queue.State `json:"state"`
	// Location is where to poll, while pending (from the Location header
	// when the body has none).
	Location string `json:"location,omitempty"`
	// Code is async/cancelled for a cancelled request.
	Code string `json:"code,omitempty"`
}

// AsyncResult is the answer of GET /v2/async/{id}.
type AsyncResult struct {
	// Status is the answer's HTTP status: 202 while the request is
	// pending, 200 once done, 410 when cancelled.
	Status int
	// ID, State, Location and Code are the answer's status body (202,
	// 410); once done, the ID is the Ebb-Async-Id header's and the state
	// done.
	AsyncStatus
	// RetryAfter is how long the gateway suggests waiting before polling
	// again, while pending; 0 when it named none.
	RetryAfter time.Duration
	// Body is the answer's body as received: once done, the result as the
	// model answered it; before, the status JSON.
	Body []byte
	// ContentType is the body's content type: the result's, once done.
	ContentType string
	// ResultStatus is the status the model's chain answered
	// (Ebb-Result-Status): 200, or 400 for bad input, a model's 500...
	// Set once done.
	ResultStatus int
}

// Done reports whether the request has a result.
func (r AsyncResult) Done() bool { return r.State == queue.Done }

// AsyncListOptions filter AsyncList; zero values filter nothing.
type AsyncListOptions struct {
	// Deployment keeps the requests to one deployment (or route object).
	Deployment string
	// State keeps the requests in one state: pending, done or cancelled.
	State string
	// Limit bounds the requests returned, newest first: 1 to 1000; 0 is
	// the gateway's default, 100.
	Limit int
}

var errNoAsyncID = errors.New("no async request id given: it is the id of the 202 answer, the last part of its Location (/v2/async/ID)")

func asyncPath(id string) string { return "/v2/async/" + url.PathEscape(id) }

// AsyncGet reads the async request id: its result once done (Status 200),
// else its state (202 pending, 410 cancelled; neither is an error). With
// wait above zero it asks the gateway to answer as soon as the result is
// stored, or after wait (Prefer: wait, in whole seconds, rounded up; the
// gateway waits at most 30). An unknown id, an expired one and another
// tenant's fail alike with code async/not_found.
func (c *Client) AsyncGet(ctx context.Context, id string, wait time.Duration) (AsyncResult, error) {
	if id == "" {
		return AsyncResult{}, errNoAsyncID
	}
	path := asyncPath(id)
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return AsyncResult{}, err
	}
	if wait > 0 {
		req.Header.Set("Prefer", "wait="+strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	}
	resp, b, err := c.send(req, path)
	if err != nil {
		return AsyncResult{}, err
	}
	r := AsyncResult{Status: resp.StatusCode, Body: b, ContentType: resp.Header.Get("Content-Type")}
	switch resp.StatusCode {
	case http.StatusOK:
		r.ID, r.State = resp.Header.Get(queue.HeaderID), queue.Done
		rs := resp.Header.Get("Ebb-Result-Status")
		if r.ResultStatus, err = strconv.Atoi(rs); err != nil || r.ResultStatus < 100 || r.ResultStatus > 999 {
			return AsyncResult{}, fmt.Errorf("GET %s: ebb at %s answered 200 with Ebb-Result-Status %q, not a status: is it an ebb gateway?", path, c.base, rs)
		}
		if r.ID == "" {
			r.ID = id
		}
		return r, nil
	case http.StatusAccepted, http.StatusGone:
		if err := json.Unmarshal(b, &r.AsyncStatus); err != nil || r.State == "" {
			return AsyncResult{}, fmt.Errorf("GET %s: cannot decode the %d answer of ebb at %s: %s", path, resp.StatusCode, c.base, quoted(b))
		}
		if r.Location == "" && r.State == queue.Pending {
			r.Location = resp.Header.Get("Location")
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			r.RetryAfter = time.Duration(s) * time.Second
		}
		return r, nil
	}
	return AsyncResult{}, asyncError(c.base, http.MethodGet, path, responseError(resp.StatusCode, b))
}

// AsyncList returns the caller's tenant's async requests, newest first,
// without their results. With auth on, only those of deployments the
// token may predict on. A bad option fails with code async/bad_query.
func (c *Client) AsyncList(ctx context.Context, opts AsyncListOptions) ([]queue.RecordView, error) {
	q := url.Values{}
	if opts.Deployment != "" {
		q.Set("deployment", opts.Deployment)
	}
	if opts.State != "" {
		q.Set("state", opts.State)
	}
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	path := "/v2/async"
	path = withQuery(path, q)
	var out queue.RecordList
	_, err := c.doJSON(ctx, http.MethodGet, path, "", nil, &out)
	if err != nil {
		return nil, asyncError(c.base, http.MethodGet, "/v2/async", err)
	}
	if out.Requests == nil {
		out.Requests = []queue.RecordView{}
	}
	return out.Requests, nil
}

// AsyncCancel cancels the async request id: one not run yet will not run;
// one running has its result dropped. One that already has a result, or
// was cancelled, fails with code async/finished (409); an unknown one with
// async/not_found.
func (c *Client) AsyncCancel(ctx context.Context, id string) (AsyncStatus, error) {
	if id == "" {
		return AsyncStatus{}, errNoAsyncID
	}
	var out AsyncStatus
	_, err := c.doJSON(ctx, http.MethodDelete, asyncPath(id), "", nil, &out)
	if err != nil {
		return AsyncStatus{}, asyncError(c.base, http.MethodDelete, asyncPath(id), err)
	}
	return out, nil
}

// asyncError explains the answers of a server that does not serve the
// async API there (a 404 without a code, a 405): async inference is off,
// or the server is not a gateway. Other errors pass unchanged.
func asyncError(base, method, path string, err error) error {
	var e *Error
	if !errors.As(err, &e) || e.Code != "" || (e.Status != http.StatusNotFound && e.Status != http.StatusMethodNotAllowed) {
		return err
	}
	return &Error{Status: e.Status, Message: fmt.Sprintf(
		"%s %s: ebb at %s does not serve the async API (it answered %d %s): point --server at an ebb gateway (ebb up's address) with async inference on, of a version that serves this call",
		method, path, base, e.Status, http.StatusText(e.Status))}
}

// quoted is b for a message, cut short.
func quoted(b []byte) string { return strconv.Quote(excerpt(string(b))) }

// excerpt is s cut to its first 200 bytes, marked "..." when cut: an
// answer's body quoted in a message.
func excerpt(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
