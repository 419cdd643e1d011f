package home

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/jobs"
	"github.com/ebb-ml/ebb/internal/queue"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Forwarder runs one inference request through a gateway's whole chain —
// tenant limits, the hold while cold, fair admission at the request's
// priority, routing, retries — and returns the answer: its status,
// content type and body. err is for a request that got no answer.
// *gateway.Gateway is one, in process (ebb up); QueueForwarder reaches
// the gateways of a cluster through their async queue.
type Forwarder interface {
	Forward(ctx context.Context, req *queue.Request) (queue.Result, error)
}

// forwardPredictor is a job's jobs.Predictor: each chunk through the
// Forwarder at batch priority, under the job's tenant.
type forwardPredictor struct {
	fw     Forwarder
	tenant string
}

// Infer implements jobs.Predictor. A 2xx answer is the chunk's result.
// 429 and 503 (a tenant limit, a deployment still cold, a queue full),
// 404 (a deployment so new a gateway does not know it yet), 408 and 5xx
// are sent again; any other 4xx says the request itself is wrong, and
// wraps jobs.ErrPermanent. A request with binary tensor data goes with
// its header length (the queue keeps it for a cluster's gateways), and so
// does the answer.
func (p forwardPredictor) Infer(ctx context.Context, deployment string, req jobs.Message) (jobs.Message, error) {
	ct := "application/json"
	if req.HeaderLength > 0 && req.HeaderLength < len(req.Body) {
		ct = "application/octet-stream"
	}
	res, err := p.fw.Forward(ctx, &queue.Request{ID: queue.NewID(), Tenant: p.tenant, Deployment: deployment,
		Priority: queue.PriorityBatch, ContentType: ct, HeaderLength: int64(req.HeaderLength), Body: req.Body})
	if err != nil {
		return jobs.Message{}, err
	}
	status, resp := res.Status, res.Body
	if status >= 200 && status < 300 {
		return jobs.Message{Body: resp, HeaderLength: int(res.HeaderLength)}, nil
	}
	err = fmt.Errorf("deployment %s answered %d: %s", deployment, status, answerText(resp))
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusServiceUnavailable,
		status == http.StatusNotFound, status == http.StatusRequestTimeout, status >= 500:
		return jobs.Message{}, err
	case status >= 400:
		return jobs.Message{}, fmt.Errorf("%w: %w", jobs.ErrPermanent, err)
	}
	return jobs.Message{}, err
}

// answerText is an error answer's body, short enough for a job's status.
func answerText(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	if s == "" {
		return "(no body)"
	}
	return s
}

// QueueForwarder is a cluster's Forwarder: it puts each request in the
// async queue the gateways drain (their --async-store), where a gateway
// runs it through its chain at the request's priority, and waits for the
// result.
type QueueForwarder struct {
	Queue queue.Queue
	// Timeout bounds the wait for one result (the request's deadline in
	// the queue); default 10m. Poll is how often the result is looked
	// for, at first; default 200ms, growing to 2s.
	Timeout time.Duration
	Poll    time.Duration
}

// Forward implements Forwarder. A request the queue gave up on (its
// deadline passed) answers what the gateway stored, 504; a ctx that ends
// cancels the request.
func (f *QueueForwarder) Forward(ctx context.Context, req *queue.Request) (queue.Result, error) {
	timeout, poll := f.Timeout, f.Poll
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	r := *req
	if r.ID == "" {
		r.ID = queue.NewID()
	}
	now := time.Now()
	r.CreatedAt, r.Deadline, r.ResultTTL = now, now.Add(timeout), 10*time.Minute
	if err := f.Queue.Enqueue(ctx, r); err != nil {
		return queue.Result{}, err
	}
	t := time.NewTimer(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = f.Queue.Cancel(cctx, r.Tenant, r.ID)
			cancel()
			return queue.Result{}, ctx.Err()
		case <-t.C:
		}
		rec, err := f.Queue.Get(ctx, r.Tenant, r.ID)
		switch {
		case errors.Is(err, queue.ErrNotFound):
			return queue.Result{}, fmt.Errorf("async request %s is gone from the queue", r.ID)
		case err == nil && rec.State == queue.Done && rec.Result != nil:
			return *rec.Result, nil
		case err == nil && rec.State == queue.Cancelled:
			return queue.Result{}, fmt.Errorf("async request %s was cancelled", r.ID)
		}
		// Pending, or the queue unreachable for now: look again.
		poll = min(2*poll, 2*time.Second)
		t.Reset(poll)
	}
}

// Forwarder opens the queue --jobs-queue names, for an operator's jobs:
// when it names none, st's (the operator's store), if that is the
// PostgreSQL store storeDSN (or $EBB_STORE_DSN) names, which gateways can
// share. With neither, it returns a nil Forwarder: jobs are off, and
// refused at submit. close ends what it opened.
func (o JobsFlags) Forwarder(ctx context.Context, st any, storeDSN string) (fw Forwarder, close func(), err error) {
	if o.Queue == "" && storeDSN == "" && os.Getenv("EBB_STORE_DSN") == "" {
		return nil, func() {}, nil
	}
	q, close, err := AsyncFlags{Store: o.Queue, Payloads: o.Payloads}.Open(ctx, st, "", "")
	if err != nil {
		return nil, nil, fmt.Errorf("--jobs-queue: %w", err)
	}
	if q == nil {
		return nil, close, nil
	}
	return &QueueForwarder{Queue: q}, close, nil
}

// errJobsOff refuses jobs where nothing can run them.
var errJobsOff = errors.New("batch jobs are off here: the operator has no queue to send their chunks to the gateways; " +
	"give it --jobs-queue, the gateways' --async-store (nats:// or postgres://), or a PostgreSQL --store-dsn that the gateways use as their --async-store")

// jobsOff is the admission of a home whose jobs are off.
type jobsOff struct{}

func (jobsOff) Admit(context.Context, *serving.Job) error { return errJobsOff }
