package httpproxy

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving/core"
)

// handler serves the replica's port: gRPC calls (HTTP/2 with content type
// application/grpc) go to the gRPC service, /ebb/v1/replica and the health
// checks the replica answers itself (readiness while draining; all of them
// for an OpenAI server, which has no OIP v2 health checks), and everything
// else goes through the reverse proxy to base.
func (r *Replica) handler(base *url.URL) http.Handler {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 256
	errorLog := slog.NewLogLogger(r.log.Handler(), slog.LevelWarn)
	newProxy := func(modify func(*http.Response) error) *httputil.ReverseProxy {
		return &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(base) // also sets Host to the upstream's
				pr.Out.Header.Del(core.SecretHeader)
				pr.SetXForwarded()
			},
			Transport:      transport,
			FlushInterval:  -1, // stream (server-sent events from LLM servers)
			ModifyResponse: modify,
			ErrorLog:       errorLog,
			ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
				if req.Context().Err() != nil {
					return // the client is gone
				}
				r.log.Warn("upstream request failed", "path", req.URL.Path, "error", err)
				writeError(w, http.StatusBadGateway, fmt.Sprintf("the model server behind this replica did not answer %s %s: %v", req.Method, req.URL.Path, err))
			},
		}
	}
	h := &handler{
		r:        r,
		base:     base,
		client:   &http.Client{Transport: transport},
		proxy:    newProxy(nil),
		renaming: newProxy(r.renameAnswer),
	}
	h.grpc = r.newGRPCServer(base, h.client)
	return h
}

// handler is the replica's http.Handler; see Replica.handler.
type handler struct {
	r      *Replica
	base   *url.URL
	client *http.Client // to base, for the gRPC translation and probes
	proxy  *httputil.ReverseProxy
	// renaming is proxy for requests whose model the replica renamed: it
	// renames the model back in the answer.
	renaming *httputil.ReverseProxy
	grpc     http.Handler
}

func (h *handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r := h.r
	if req.ProtoMajor == 2 && strings.HasPrefix(req.Header.Get("Content-Type"), "application/grpc") {
		h.grpc.ServeHTTP(w, req) // checks the secret itself
		return
	}
	if !r.hasSecret(req) {
		writeError(w, http.StatusUnauthorized, "this replica serves only ebb's gateway: send the request to the gateway")
		return
	}
	switch req.URL.Path {
	case "/ebb/v1/replica":
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", http.MethodGet)
			writeError(w, http.StatusMethodNotAllowed, "method "+req.Method+" not allowed on /ebb/v1/replica: use GET")
			return
		}
		writeJSON(w, http.StatusOK, r.Info())
		return
	case "/v2/health/live":
		if r.openAI() {
			w.WriteHeader(http.StatusOK)
			return
		}
	case "/v2/health/ready":
		if !r.ready.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]bool{"ready": false})
			return
		}
		if r.openAI() {
			h.openAIReady(w, req)
			return
		}
	}
	if r.openAI() {
		h.serveOpenAI(w, req)
		return
	}
	h.serveOIP(w, req)
}

// serveOIP proxies an OIP v2 request, with the deployment's name in its
// path replaced by the upstream's name for the model.
func (h *handler) serveOIP(w http.ResponseWriter, req *http.Request) {
	r := h.r
	rest, isModel := strings.CutPrefix(req.URL.Path, "/v2/models/")
	if isModel && !r.ready.Load() && strings.HasSuffix(rest, "/ready") {
		// Draining: the server behind may still say ready.
		writeError(w, http.StatusServiceUnavailable, "this replica is shutting down")
		return
	}
	if isModel && r.opts.UpstreamModel != r.opts.Deployment {
		if name, tail, _ := strings.Cut(rest, "/"); name == r.opts.Deployment {
			path := "/v2/models/" + r.opts.UpstreamModel
			if tail != "" || strings.HasSuffix(rest, "/") {
				path += "/" + tail
			}
			h.renaming.ServeHTTP(w, withPath(req, path))
			return
		}
	}
	h.proxy.ServeHTTP(w, req)
}

// withPath returns a shallow copy of req for path.
func withPath(req *http.Request, path string) *http.Request {
	out := req.WithContext(req.Context())
	u := *req.URL
	u.Path, u.RawPath = path, ""
	out.URL = &u
	return out
}

// openAIReady answers the OIP v2 readiness check for an OpenAI server:
// ready while the server lists its models.
func (h *handler) openAIReady(w http.ResponseWriter, req *http.Request) {
	ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
	defer cancel()
	status, err := getStatus(ctx, h.client, h.base.JoinPath(h.r.readyPath()).String())
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("the model server behind this replica does not answer GET %s: %v", h.r.readyPath(), err))
	case status != http.StatusOK:
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("the model server behind this replica answers GET %s with status %d", h.r.readyPath(), status))
	default:
		writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := jsonMarshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, oip.ErrorResponse{Error: msg})
}

// hasSecret reports whether req may be served: it carries the secret, or
// needs none (see Options.Secret).
func (r *Replica) hasSecret(req *http.Request) bool {
	switch req.URL.Path {
	case "/v2/health/live", "/v2/health/ready", "/ebb/v1/replica":
		return true
	}
	return r.secretOK(req.Header.Get(core.SecretHeader))
}

// secretOK reports whether got is the replica's secret, or none is needed.
func (r *Replica) secretOK(got string) bool {
	return r.opts.Secret == "" || subtle.ConstantTimeCompare([]byte(got), []byte(r.opts.Secret)) == 1
}
