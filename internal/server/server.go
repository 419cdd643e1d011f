// Package server is the replica-side Open Inference Protocol v2 server: it
// serves one loaded engine.Model under its deployment's name (or, made by
// NewPool, the many models of a multi-model pool, pool.go), answers the
// health, metadata and infer endpoints, and drains gracefully on shutdown.
// Infer requests and responses carry tensors of every OIP v2 datatype, as
// JSON (NaN and infinities as Triton writes them) or as binary tensor data
// after the JSON (Triton's extension, infer.go); docs/protocol.md has the
// details.
//
// It also defines the Notice a replica process writes to tell the backend that
// started it that it is ready (or why it failed), and the ReplicaInfo document
// at /ebb/v1/replica that lets the control plane check which replica answers.
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/internal/batch"
	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving/core"
	"go.opentelemetry.io/otel/trace"
)

// Defaults for Options fields left zero.
const (
	DefaultDrainTimeout    = 30 * time.Second
	DefaultMaxRequestBytes = 64 << 20
)

// Options configures a Server. The zero value is usable.
type Options struct {
	// ReplicaID and Deployment identify the replica in /ebb/v1/replica.
	// Deployment defaults to the name given to New.
	ReplicaID  string
	Deployment string
	// Now returns the current time; defaults to time.Now.
	Now func() time.Time
	// Logger receives errors and lifecycle events; defaults to discarding.
	Logger *slog.Logger
	// ModelLoadedAt is when the model finished loading; defaults to Now()
	// at New.
	ModelLoadedAt time.Time
	// Artifact, when the replica fetched its model artifact, says how; it
	// is reported in /ebb/v1/replica.
	Artifact *core.ArtifactFetch
	// ModelVersion is the registry version the replica serves
	// ("diabetes:3"); empty for a model given by path. Its number is the
	// model's only OIP v2 version: metadata lists it, responses carry it,
	// and /v2/models/{m}/versions/{v} answers 404 for any other v. Without
	// it the versions are those of the engine's metadata, usually none, and
	// every /versions/{v} is 404.
	ModelVersion string
	// DrainTimeout bounds how long Serve waits for in-flight requests after
	// its context ends; defaults to DefaultDrainTimeout.
	DrainTimeout time.Duration
	// MaxRequestBytes bounds an infer request body; larger ones get 413.
	// Defaults to DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// MaxRequestElements bounds the tensor elements one infer request may
	// declare (all inputs together); more get 413 (gRPC
	// ResourceExhausted) before anything is decoded. Defaults to
	// DefaultMaxRequestElements.
	MaxRequestElements int64
	// Limits bound the connections Serve accepts: timeouts, keepalive and
	// a cap on open connections (see package connlimit). Its BodyTimeout
	// bounds reading an infer request body (408 when it passes).
	Limits connlimit.Limits
	// Metrics, when set, counts requests refused by a limit and is served
	// at GET /metrics.
	Metrics *Metrics
	// Version is the server version reported by GET /v2; defaults to "dev".
	Version string
	// OnReady, when set, is called once by Serve, with the time readiness
	// began, just before it accepts connections on its (already listening)
	// listener; it should return quickly.
	OnReady func(readyAt time.Time)
	// Batching, when set, groups concurrent infer requests into one model
	// call (see package batch). It applies only to a model that can batch:
	// dimension 0 of every input and output is -1 in its metadata;
	// otherwise requests go to the model one by one and New logs why.
	Batching *core.Batching
	// BatchInstances is how many batches may run in the model at once;
	// defaults to 1 (Triton's one instance per model).
	BatchInstances int
	// Secret, when set, must be sent in core.SecretHeader (REST) or
	// that metadata key (gRPC) by every request but health checks and
	// /ebb/v1/replica; others get 401 (Unauthenticated). See secret.go.
	Secret string
	// Tracer, when set, traces infer requests that come with a sampled
	// traceparent (trace.go); Engine names the engine in their spans.
	Tracer trace.Tracer
	Engine string
}

// ReplicaInfo is the body of GET /ebb/v1/replica: who this replica is, so the
// control plane can verify it talks to the replica it started.
type ReplicaInfo struct {
	ID            string    `json:"id"`
	Deployment    string    `json:"deployment"`
	PID           int       `json:"pid"`
	ModelLoadedAt time.Time `json:"modelLoadedAt"`
	// ReadyAt is zero (and omitted) until Serve starts.
	ReadyAt time.Time `json:"readyAt,omitzero"`
	// Artifact says how the model artifact was fetched, if it was.
	Artifact *core.ArtifactFetch `json:"artifact,omitempty"`
	// ModelVersion is the registry version served ("diabetes:3"), if any.
	ModelVersion string `json:"modelVersion,omitempty"`
	// Pool, for a replica that hosts many models (NewPool), is its memory.
	Pool *PoolInfo `json:"pool,omitempty"`
}

// Server serves one model over OIP v2 REST. It is an http.Handler; Serve
// serves the same endpoints on a listener, with fasthttp (fast.go), and
// drains gracefully. Safe for concurrent use.
type Server struct {
	name  string
	model engine.Model
	opts  Options
	log   *slog.Logger
	pid   int

	// batcher is nil when batching is off.
	batcher *batch.Batcher

	meta oip.ModelMetadata
	// anyInputs is true for a model that takes whatever inputs a request
	// carries (see anyInputsModel).
	anyInputs   bool
	inputIndex  map[string]int
	outputIndex map[string]int
	// Pre-encoded bodies of the read-only endpoints.
	modelMetaJSON     []byte
	serverMetaJSON    []byte
	modelReadyJSON    []byte
	modelNotReadyJSON []byte

	draining atomic.Bool
	// stopped is the context of the infer requests Serve answers; stop
	// cancels it when the drain times out.
	stopped context.Context
	stop    context.CancelFunc
	// secret is Options.Secret.
	secret []byte

	// pool is nil for a Server of one model (New), and hosts the models
	// of a Server made by NewPool (pool.go).
	pool *modelPool

	mu sync.Mutex
	// readyAt is when Serve began serving; zero before.
	readyAt time.Time
}

// New returns a Server that serves m under name, the deployment name clients
// use in /v2/models/{name}. m must be loaded; the Server reports ready until
// Serve starts draining.
func New(name string, m engine.Model, opts Options) *Server {
	opts = opts.withDefaults(name)
	meta := m.Metadata()
	meta.Name = name
	if v := core.OIPVersion(opts.ModelVersion); v != "" {
		meta.Versions = []string{v}
	}
	if meta.Inputs == nil {
		meta.Inputs = []oip.TensorMetadata{}
	}
	if meta.Outputs == nil {
		meta.Outputs = []oip.TensorMetadata{}
	}
	s := &Server{
		name:        name,
		model:       m,
		opts:        opts,
		log:         opts.Logger,
		pid:         os.Getpid(),
		meta:        meta,
		inputIndex:  make(map[string]int, len(meta.Inputs)),
		outputIndex: make(map[string]int, len(meta.Outputs)),
		secret:      []byte(opts.Secret),
	}
	s.stopped, s.stop = context.WithCancel(context.Background())
	if a, ok := m.(anyInputsModel); ok && a.AnyInputs() {
		s.anyInputs = true
	}
	for i, in := range meta.Inputs {
		s.inputIndex[in.Name] = i
	}
	for i, out := range meta.Outputs {
		s.outputIndex[out.Name] = i
	}
	s.batcher = s.newBatcher(opts.Batching, opts.BatchInstances)
	s.modelMetaJSON = mustJSON(meta)
	s.serverMetaJSON = mustJSON(oip.ServerMetadata{Name: "ebb", Version: opts.Version, Extensions: Extensions()})
	s.modelReadyJSON = mustJSON(oip.ModelReady{Name: name, Ready: true})
	s.modelNotReadyJSON = mustJSON(oip.ModelReady{Name: name, Ready: false})
	return s
}

// withDefaults fills the fields left zero, the deployment with name.
func (opts Options) withDefaults(name string) Options {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Deployment == "" {
		opts.Deployment = name
	}
	if opts.ModelLoadedAt.IsZero() {
		opts.ModelLoadedAt = opts.Now()
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.MaxRequestElements <= 0 {
		opts.MaxRequestElements = DefaultMaxRequestElements
	}
	opts.Limits = opts.Limits.WithDefaults()
	if opts.Version == "" {
		opts.Version = "dev"
	}
	return opts
}

// anyInputsModel is a Model that may take whatever inputs a request
// carries (a Python class that declares none): when AnyInputs is true, the
// server checks only that each input is well formed, named once and within
// the element limit, and passes them in the request's order.
type anyInputsModel interface {
	AnyInputs() bool
}

// Extensions lists the protocol extensions a replica server supports, as
// GET /v2 and the gRPC ServerMetadata report them.
func Extensions() []string { return []string{oip.ExtensionBinaryData} }

// newBatcher returns the batcher for policy, or nil, logged once with the
// reason, when batching is off.
func (s *Server) newBatcher(policy *core.Batching, instances int) *batch.Batcher {
	if policy == nil {
		return nil
	}
	if reason := cannotBatch(s.meta); reason != "" {
		s.log.Info("batching is off: "+reason, "model", s.name)
		return nil
	}
	b, err := batch.New(batch.PredictFunc(s.predict), *policy, batch.Options{Instances: instances, Tracer: s.opts.Tracer, SpanAttrs: s.engineAttrs()})
	if err != nil {
		s.log.Error("batching is off: invalid policy; fix the deployment's spec.batching", "model", s.name, "error", err)
		return nil
	}
	s.log.Info("batching on", "model", s.name, "maxBatchSize", policy.MaxBatchSize,
		"preferredBatchSizes", policy.PreferredBatchSizes, "maxQueueDelay", policy.MaxQueueDelay.String())
	return b
}

// cannotBatch returns why a model with metadata meta cannot be batched, or
// "" when it can: it has inputs, and dimension 0 of every input and output
// is dynamic (-1).
func cannotBatch(meta oip.ModelMetadata) string {
	if len(meta.Inputs) == 0 {
		return "the model declares no inputs"
	}
	for _, group := range [][]oip.TensorMetadata{meta.Inputs, meta.Outputs} {
		for _, t := range group {
			if t.Shape == nil {
				return fmt.Sprintf("tensor %q is declared without a shape; batching needs dimension 0 of every input and output to be the dynamic batch dimension (-1)", t.Name)
			}
			if len(t.Shape) == 0 || t.Shape[0] != -1 {
				return fmt.Sprintf("tensor %q has shape %s; batching needs dimension 0 of every input and output to be the dynamic batch dimension (-1)", t.Name, oip.FormatShape(t.Shape))
			}
		}
	}
	return ""
}

// BatchingPolicy returns the batching policy for Options.Batching from its
// parts (as command-line flags give them), or nil, batching off, when
// maxBatchSize is 0 or less.
func BatchingPolicy(maxBatchSize int, preferredBatchSizes []int, maxQueueDelay time.Duration) *core.Batching {
	if maxBatchSize <= 0 {
		return nil
	}
	return &core.Batching{
		MaxBatchSize:        maxBatchSize,
		PreferredBatchSizes: preferredBatchSizes,
		MaxQueueDelay:       core.D(maxQueueDelay),
	}
}

// Batching reports whether infer requests go through the batcher.
func (s *Server) Batching() bool { return s.batcher != nil }

// Ready reports whether the server accepts inference: the model is loaded and
// the server is not draining.
func (s *Server) Ready() bool { return !s.draining.Load() }

// Info returns the replica's identity and startup times.
func (s *Server) Info() ReplicaInfo {
	s.mu.Lock()
	readyAt := s.readyAt
	s.mu.Unlock()
	return ReplicaInfo{
		ID:            s.opts.ReplicaID,
		Deployment:    s.opts.Deployment,
		PID:           s.pid,
		ModelLoadedAt: s.opts.ModelLoadedAt,
		ReadyAt:       readyAt,
		Artifact:      s.opts.Artifact,
		ModelVersion:  s.opts.ModelVersion,
		Pool:          s.pool.info(),
	}
}

// setDraining makes the server, and each model of a pool, report not
// ready.
func (s *Server) setDraining() {
	s.draining.Store(true)
	s.pool.drain()
}

// Serve serves REST on ln, and on each of more with the same handler and
// limits (a replica's Unix socket beside its TCP port; each listener is
// capped at Limits.MaxConns on its own), until ctx ends, then drains: it
// first reports not ready, then stops accepting connections on all of
// them, closes idle ones and waits up to Options.DrainTimeout for
// in-flight requests to finish. It returns nil after a clean drain, and an
// error when a listener fails (the others are closed then) or the drain
// times out (the remaining requests' contexts are then cancelled and their
// connections closed). Serve closes the listeners. Call it once.
func (s *Server) Serve(ctx context.Context, ln net.Listener, more ...net.Listener) error {
	return s.serve(ctx, s.capped(append([]net.Listener{ln}, more...)))
}

// serve is Serve on listeners already capped by Options.Limits.
func (s *Server) serve(ctx context.Context, lns []net.Listener) error {
	rest := s.newREST()
	// The listeners already listen, so connections made from here on
	// queue in their backlogs until accepted: the replica is ready now.
	readyAt := s.opts.Now()
	s.mu.Lock()
	s.readyAt = readyAt
	s.mu.Unlock()
	if s.opts.OnReady != nil {
		s.opts.OnReady(readyAt)
	}
	s.log.Info("serving", "addr", addrs(lns), "model", s.name)
	errc, als := rest.serveAll(lns)

	failed := func(r served) error {
		s.setDraining()
		closeAll(lns) // the others stop too
		for range len(lns) - 1 {
			<-errc
		}
		err := r.err
		if err == nil {
			err = net.ErrClosed // fasthttp returns nil when ln is closed
		}
		return fmt.Errorf("serving on %s: %w", lns[r.i].Addr(), err)
	}
	select {
	case r := <-errc:
		return failed(r)
	case <-ctx.Done():
	}
	for _, al := range als {
		select {
		case r := <-errc:
			return failed(r)
		case <-al.accepted: // the server holds al: the shutdown closes it
		}
	}

	s.setDraining()
	s.log.Info("draining", "timeout", s.opts.DrainTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.DrainTimeout)
	defer cancel()
	err := rest.srv.ShutdownWithContext(sctx)
	for range lns {
		<-errc // each Serve returns as the shutdown starts
	}
	if err != nil {
		s.stop()
		rest.closeConns()
		return fmt.Errorf("drain: in-flight requests did not finish within %v; closed them: %w", s.opts.DrainTimeout, err)
	}
	s.log.Info("drained")
	return nil
}

// ServeHTTP routes OIP v2 and /ebb/v1 requests.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.refuseREST(w, r) {
		return
	}
	path := r.URL.Path
	switch path {
	case "/v2/health/live":
		if s.allow(w, r, http.MethodGet) {
			writeRaw(w, http.StatusOK, []byte(`{"live":true}`))
		}
		return
	case "/v2/health/ready":
		if s.allow(w, r, http.MethodGet) {
			s.writeReady(w, []byte(`{"ready":true}`), []byte(`{"ready":false}`))
		}
		return
	case "/v2", "/v2/":
		if s.allow(w, r, http.MethodGet) {
			writeRaw(w, http.StatusOK, s.serverMetaJSON)
		}
		return
	case "/metrics":
		if s.opts.Metrics != nil && s.allow(w, r, http.MethodGet) {
			s.opts.Metrics.handler.ServeHTTP(w, r)
			return
		}
	case "/ebb/v1/replica":
		if s.allow(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, s.Info())
		}
		return
	}
	if s.pool != nil {
		s.pool.serveHTTP(w, r)
		return
	}
	rest, ok := strings.CutPrefix(path, "/v2/models/")
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s: this OIP v2 server serves /v2/health/{live,ready}, /v2/models/%s[/versions/{v}][/ready|/infer]", r.Method, path, s.name))
		return
	}
	name, rest, _ := strings.Cut(rest, "/")
	version := ""
	if v, ok := strings.CutPrefix(rest, "versions/"); ok {
		version, rest, _ = strings.Cut(v, "/")
		if version == "" {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s: the version is empty", r.Method, path))
			return
		}
	}
	var action string
	switch rest {
	case "", "infer", "ready":
		action = rest
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s: use /v2/models/%s[/versions/{v}][/ready|/infer]", r.Method, path, s.name))
		return
	}
	if name != s.name {
		writeError(w, http.StatusNotFound, fmt.Sprintf("model %q not found: this replica serves %q", name, s.name))
		return
	}
	if !s.hasVersion(version) {
		writeError(w, http.StatusNotFound, s.noVersion(version))
		return
	}
	switch action {
	case "":
		if s.allow(w, r, http.MethodGet) {
			writeRaw(w, http.StatusOK, s.modelMetaJSON)
		}
	case "ready":
		if s.allow(w, r, http.MethodGet) {
			s.writeReady(w, s.modelReadyJSON, s.modelNotReadyJSON)
		}
	case "infer":
		if s.allow(w, r, http.MethodPost) {
			s.infer(w, r, version)
		}
	}
}

// hasVersion reports whether v may be served: empty means the one served,
// otherwise it must be listed in the metadata (see Options.ModelVersion).
func (s *Server) hasVersion(v string) bool {
	return v == "" || slices.Contains(s.meta.Versions, v)
}

// version returns the OIP v2 version that responses report: the one the
// replica serves when it has exactly one, else the requested one.
func (s *Server) version(requested string) string {
	if len(s.meta.Versions) == 1 {
		return s.meta.Versions[0]
	}
	return requested
}

// noVersion says why version v is not served here.
func (s *Server) noVersion(v string) string {
	if len(s.meta.Versions) == 0 {
		return fmt.Sprintf("model %q has no version %q: it serves a model given by path, which has no registry version; use /v2/models/%s/infer without /versions/", s.name, v, s.name)
	}
	return fmt.Sprintf("model %q has no version %q: this replica serves version %s", s.name, v, strings.Join(s.meta.Versions, ", "))
}

func (s *Server) writeReady(w http.ResponseWriter, yes, no []byte) {
	if s.Ready() {
		writeRaw(w, http.StatusOK, yes)
		return
	}
	writeRaw(w, http.StatusServiceUnavailable, no)
}

// allow answers 405 and returns false unless r uses method (GET also allows
// HEAD).
func (s *Server) allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	w.Header().Set("Allow", method)
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s: use %s", r.Method, r.URL.Path, method))
	return false
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// bodyPool holds the buffers infer responses are encoded into.
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

func getBody() *[]byte { return bodyPool.Get().(*[]byte) }

func putBody(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	bodyPool.Put(b)
}

// maxPooledBuffer keeps one huge request from pinning its buffer forever.
const maxPooledBuffer = 1 << 20

func getBuffer() *bytes.Buffer { return bufPool.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	bufPool.Put(b)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("server: encoding %T: %v", v, err))
	}
	return b
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	w.WriteHeader(status)
	w.Write(body)
}

// writeJSON encodes v as the response body. An encoding failure (a value
// JSON cannot express, such as NaN) becomes a 500.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	buf := getBuffer()
	defer putBuffer(buf)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("encoding the response: %v", err))
		return err
	}
	writeRaw(w, status, buf.Bytes())
	return nil
}

func writeError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(oip.ErrorResponse{Error: msg})
	writeRaw(w, status, b)
}
