// Package gateway is ebb's data plane: it answers the Open Inference Protocol
// v2 for every deployment, holding requests for cold deployments in the
// activator and forwarding each request to a replica picked by
// power-of-two-choices on least outstanding requests.
//
// A request that fails before any replica answered it (the replica died or
// was stopped between pick and send) is retried on another replica, so a
// crashing replica costs latency, not errors. The gateway never blocks on the
// control plane: it reads the routing table and reports demand, nothing else.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/routing"
	"k8s.io/utils/clock"
)

// Routes is where the gateway finds deployments.
type Routes interface {
	Lookup(deployment string) *routing.Route
}

// Holder holds a request until its deployment has a ready replica.
type Holder interface {
	Wait(ctx context.Context, deployment string) (*routing.Route, error)
}

// Options tune the gateway; zero values take the defaults shown.
type Options struct {
	// MaxBodyBytes limits an inference request body; default 64 MiB.
	MaxBodyBytes int64
	// Attempts bounds how many replicas one request is tried on; default 4.
	Attempts int
	// HoldTimeout bounds the wait for a replica after all tried ones
	// failed; default 60s.
	HoldTimeout time.Duration
	// Transport forwards requests to replicas; default a keep-alive
	// transport sized for many concurrent requests per replica.
	Transport http.RoundTripper
	// Ready reports whether the gateway should answer ready; default
	// always.
	Ready func() bool
	// Clock times requests; default the real clock.
	Clock clock.PassiveClock
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Metrics, when set, receives request counts and latencies.
	Metrics *Metrics
	// Version is reported in server metadata.
	Version string
}

// Gateway is the OIP v2 data-plane handler.
type Gateway struct {
	routes   Routes
	holder   Holder
	opts     Options
	balancer balance.PowerOfTwo
	client   *http.Client
	mux      *http.ServeMux
}

// New returns a Gateway.
func New(routes Routes, holder Holder, opts Options) *Gateway {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 20
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 4
	}
	if opts.HoldTimeout <= 0 {
		opts.HoldTimeout = 60 * time.Second
	}
	if opts.Transport == nil {
		opts.Transport = &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
		}
	}
	if opts.Ready == nil {
		opts.Ready = func() bool { return true }
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	g := &Gateway{routes: routes, holder: holder, opts: opts, client: &http.Client{Transport: opts.Transport}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /v2/health/ready", g.serverReady)
	mux.HandleFunc("GET /v2", g.serverMetadata)
	mux.HandleFunc("GET /v2/models/{name}/ready", g.modelReady)
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}/ready", g.modelReady)
	mux.HandleFunc("GET /v2/models/{name}", g.forward)
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}", g.forward)
	mux.HandleFunc("POST /v2/models/{name}/infer", g.forward)
	mux.HandleFunc("POST /v2/models/{name}/versions/{version}/infer", g.forward)
	g.mux = mux
	return g
}

// ServeHTTP answers OIP v2 requests.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

func (g *Gateway) serverReady(w http.ResponseWriter, _ *http.Request) {
	if !g.opts.Ready() {
		writeError(w, http.StatusServiceUnavailable, "ebb is starting or shutting down")
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (g *Gateway) serverMetadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, oip.ServerMetadata{Name: "ebb", Version: g.opts.Version, Extensions: []string{}})
}

// modelReady answers without waking the deployment: a deployment scaled to
// zero is ready, since a request would start it; one whose replicas fail to
// start is not.
func (g *Gateway) modelReady(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rt := g.routes.Lookup(name)
	if rt == nil {
		writeError(w, http.StatusNotFound, notFound(name))
		return
	}
	ready := len(rt.Endpoints) > 0 || rt.Failure == ""
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, oip.ModelReady{Name: name, Ready: ready})
}

func notFound(name string) string {
	return fmt.Sprintf("model %q not found: list deployments with `ebb get deployments`, or create one with `ebb deploy -f spec.yaml`", name)
}

// forward sends the request to a ready replica of its deployment, holding it
// while the deployment is cold and retrying on another replica when one
// fails before answering.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	start := g.opts.Clock.Now()
	rt := g.routes.Lookup(name)
	if rt == nil {
		g.opts.Metrics.observe("(unknown)", http.StatusNotFound, 0, false)
		writeError(w, http.StatusNotFound, notFound(name))
		return
	}
	if rt.Stats != nil {
		rt.Stats.Begin(start)
		defer func() { rt.Stats.End(g.opts.Clock.Now()) }()
	}
	g.opts.Metrics.begin(name)
	code := g.forwardTo(w, r, name)
	g.opts.Metrics.observe(name, code, g.opts.Clock.Since(start), true)
}

func (g *Gateway) forwardTo(w http.ResponseWriter, r *http.Request, name string) int {
	var body []byte
	if r.Method == http.MethodPost {
		// Not pooled: the transport may still read a request body after
		// the response arrived.
		var buf bytes.Buffer
		if r.ContentLength > 0 && r.ContentLength <= g.opts.MaxBodyBytes {
			buf.Grow(int(r.ContentLength) + bytes.MinRead)
		}
		_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, g.opts.MaxBodyBytes))
		body = buf.Bytes()
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return writeError(w, http.StatusRequestEntityTooLarge,
					fmt.Sprintf("request body exceeds %d bytes: send fewer rows per request", tooBig.Limit))
			}
			return writeError(w, http.StatusBadRequest, "cannot read request body: "+err.Error())
		}
	}
	var tried []*balance.Endpoint
	tried1 := func(e *balance.Endpoint) bool {
		for _, t := range tried {
			if t == e {
				return true
			}
		}
		return false
	}
	var lastErr error
	for len(tried) < g.opts.Attempts {
		rt, err := g.holder.Wait(r.Context(), name)
		if err != nil {
			return g.holdError(w, name, err)
		}
		var excluded func(*balance.Endpoint) bool
		if len(tried) > 0 {
			excluded = tried1 // no filtering, and no allocation, on a first try
		}
		ep := g.balancer.Pick(rt.Endpoints, excluded)
		if ep == nil {
			// Every routed replica failed for this request: wait for
			// the control loop to publish a change.
			if err := g.awaitChange(r.Context(), rt); err != nil {
				return writeUnavailable(w, 1, fmt.Sprintf("no replica of %q could take the request: %v", name, lastErr))
			}
			continue
		}
		tried = append(tried, ep)
		resp, err := g.send(r, ep, body)
		if err != nil {
			if r.Context().Err() != nil {
				return writeError(w, http.StatusServiceUnavailable, "request cancelled by the client")
			}
			lastErr = err
			g.opts.Logger.Debug("replica failed before answering; retrying", "deployment", name, "replica", ep.ID, "err", err)
			g.opts.Metrics.retried(name)
			continue
		}
		return copyResponse(w, resp)
	}
	return writeUnavailable(w, 1, fmt.Sprintf("%d replicas of %q failed to answer, last: %v", len(tried), name, lastErr))
}

func (g *Gateway) awaitChange(ctx context.Context, rt *routing.Route) error {
	ctx, cancel := context.WithTimeout(ctx, g.opts.HoldTimeout)
	defer cancel()
	select {
	case <-rt.Changed():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// send forwards r to ep. The endpoint's in-flight count covers the whole
// exchange, body included.
func (g *Gateway) send(r *http.Request, ep *balance.Endpoint, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, ep.URL+r.URL.Path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.URL.RawQuery = r.URL.RawQuery
	if ct := r.Header.Get("Content-Type"); ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if id := r.Header.Get("X-Request-Id"); id != "" {
		req.Header.Set("X-Request-Id", id)
	}
	ep.Acquire()
	resp, err := g.client.Do(req)
	if err != nil {
		ep.Release()
		return nil, err
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, ep: ep}
	resp.Header.Set("Ebb-Replica", ep.ID)
	return resp, nil
}

type releasingBody struct {
	io.ReadCloser
	ep   *balance.Endpoint
	done bool
}

func (b *releasingBody) Close() error {
	if !b.done {
		b.done = true
		b.ep.Release()
	}
	return b.ReadCloser.Close()
}

// copyBufs recycles the buffers responses are copied through; a fresh 32 KiB
// buffer per request was most of the gateway's allocation.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func copyResponse(w http.ResponseWriter, resp *http.Response) int {
	defer resp.Body.Close()
	h := w.Header()
	for _, k := range forwardedResponseHeaders {
		if v := resp.Header[k]; len(v) > 0 {
			h[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	buf := copyBufs.Get().(*[]byte)
	_, _ = io.CopyBuffer(writerOnly{w}, resp.Body, *buf)
	copyBufs.Put(buf)
	return resp.StatusCode
}

// forwardedResponseHeaders are the replica headers a client sees, in
// canonical form.
var forwardedResponseHeaders = []string{"Content-Type", "Content-Length", "Ebb-Replica"}

// writerOnly hides a ResponseWriter's ReadFrom so io.CopyBuffer uses the
// pooled buffer.
type writerOnly struct{ io.Writer }

// holdError turns an activator error into a response.
func (g *Gateway) holdError(w http.ResponseWriter, name string, err error) int {
	var failed *activator.FailedError
	switch {
	case errors.Is(err, activator.ErrNotFound):
		return writeError(w, http.StatusNotFound, notFound(name))
	case errors.As(err, &failed):
		return writeUnavailable(w, 10, fmt.Sprintf("deployment %q cannot start a replica: %s", name, failed.Reason))
	case errors.Is(err, activator.ErrQueueFull):
		return writeUnavailable(w, 1, fmt.Sprintf("deployment %q is starting and has too many requests waiting: retry shortly", name))
	case errors.Is(err, activator.ErrTimeout):
		return writeUnavailable(w, 5, fmt.Sprintf("deployment %q had no ready replica in time (%v): retry shortly", name, err))
	default:
		return writeUnavailable(w, 1, fmt.Sprintf("deployment %q: %v", name, err))
	}
}

func writeUnavailable(w http.ResponseWriter, retryAfter int, msg string) int {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	return writeError(w, http.StatusServiceUnavailable, msg)
}

func writeError(w http.ResponseWriter, code int, msg string) int {
	writeJSON(w, code, oip.ErrorResponse{Error: msg})
	return code
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
