package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Batch inference jobs: /v1/jobs.

func jobPath(name string) string { return "/v1/jobs/" + url.PathEscape(name) }

// jobBody is what the client sends of a job: its name and spec.
type jobBody struct {
	Name string          `json:"name,omitempty"`
	Spec serving.JobSpec `json:"spec"`
}

// SubmitJob submits j; the server names it when j.Name is empty. A job
// whose lease cannot fit its deadline fails with code job/refused, its
// message giving the numbers; a bad input with job/input.
func (c *Client) SubmitJob(ctx context.Context, j serving.Job) (serving.Job, error) {
	var out serving.Job
	_, err := c.doJSON(ctx, http.MethodPost, "/v1/jobs", "application/json", jobBody{j.Name, j.Spec}, &out)
	return out, err
}

// SubmitJobJSON submits the job body holds ({"name": ..., "spec": ...}),
// sent as is so that the server checks every field.
func (c *Client) SubmitJobJSON(ctx context.Context, body []byte) (serving.Job, error) {
	var out serving.Job
	_, err := c.doJSON(ctx, http.MethodPost, "/v1/jobs", "application/json", json.RawMessage(body), &out)
	return out, err
}

// GetJob returns the named job with its progress.
func (c *Client) GetJob(ctx context.Context, name string) (serving.Job, error) {
	var out serving.Job
	_, err := c.doJSON(ctx, http.MethodGet, jobPath(name), "", nil, &out)
	return out, err
}

// ListJobs returns every job, oldest first.
func (c *Client) ListJobs(ctx context.Context) ([]serving.Job, error) {
	var out api.JobList
	_, err := c.doJSON(ctx, http.MethodGet, "/v1/jobs", "", nil, &out)
	return out.Items, err
}

// CancelJob asks the named job to stop; a job not started yet is
// cancelled at once. A finished job fails with code job/finished.
func (c *Client) CancelJob(ctx context.Context, name string) (serving.Job, error) {
	var out serving.Job
	_, err := c.doJSON(ctx, http.MethodPost, jobPath(name)+"/cancel", "", nil, &out)
	return out, err
}

// DeleteJob deletes a finished job and its checkpoints.
func (c *Client) DeleteJob(ctx context.Context, name string) error {
	_, err := c.doJSON(ctx, http.MethodDelete, jobPath(name), "", nil, nil)
	return err
}

// JobLogs returns the named job's latest events, one a line.
func (c *Client) JobLogs(ctx context.Context, name string) (string, error) {
	_, b, err := c.do(ctx, http.MethodGet, jobPath(name)+"/logs", "", nil)
	return string(b), err
}
