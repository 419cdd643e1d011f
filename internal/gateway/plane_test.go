package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/control"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/registry"
	replicas "github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/resolve"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The tests in this file run the whole data and control plane of `ebb up`
// in this process: a SQLite store, the real control loop, activator and
// gateways (REST and gRPC), and real replica servers (the echo engine,
// REST and gRPC on one port). Only where replicas run differs: inProcess
// serves them on loopback listeners instead of child processes.

// inProcess is a replicas.Backend that runs each replica as a server.Server
// in this process, serving the registry version its spec names.
type inProcess struct {
	mu      sync.Mutex
	started []replicas.Spec
	stops   map[string]func()
	done    map[string]chan struct{}
}

func newInProcess() *inProcess {
	return &inProcess{stops: map[string]func(){}, done: map[string]chan struct{}{}}
}

func (b *inProcess) Start(_ context.Context, spec replicas.Spec) (replicas.Handle, error) {
	m, err := echo.Load("")
	if err != nil {
		return replicas.Handle{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return replicas.Handle{}, err
	}
	s := server.New(spec.Deployment, m, server.Options{ReplicaID: spec.ID, ModelVersion: spec.Version, DrainTimeout: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.ServeWithGRPC(ctx, ln); close(done) }()
	b.mu.Lock()
	b.started = append(b.started, spec)
	b.stops[spec.ID], b.done[spec.ID] = cancel, done
	b.mu.Unlock()
	now := time.Now()
	return replicas.Handle{Spec: spec, Backend: "in-process", Endpoint: "http://" + ln.Addr().String(), ScheduledAt: now, StartedAt: now}, nil
}

func (b *inProcess) Ready(context.Context, replicas.Handle) (replicas.Startup, error) {
	now := time.Now()
	return replicas.Startup{ModelLoadedAt: now, ReadyAt: now}, nil
}

func (b *inProcess) Wait(ctx context.Context, h replicas.Handle) (replicas.Exit, error) {
	b.mu.Lock()
	done := b.done[h.Spec.ID]
	b.mu.Unlock()
	select {
	case <-done:
		return replicas.Exit{}, nil
	case <-ctx.Done():
		return replicas.Exit{}, ctx.Err()
	}
}

func (b *inProcess) Stop(_ context.Context, h replicas.Handle) error {
	b.mu.Lock()
	stop := b.stops[h.Spec.ID]
	b.mu.Unlock()
	if stop != nil {
		stop()
	}
	return nil
}

func (b *inProcess) Recover(context.Context, replicas.Handle) error { return replicas.ErrNotFound }

// startedCount returns how many replicas were ever started.
func (b *inProcess) startedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.started)
}

// catalog resolves "m@prod" to version current of model m, whose signature
// is the echo model's input; paths pass through.
type catalog struct {
	mu      sync.Mutex
	current int
}

func (c *catalog) Resolve(_ context.Context, spec serving.Spec) (resolve.Resolution, error) {
	if _, ok := serving.ParseModelRef(spec.Model); !ok {
		return resolve.Resolution{Spec: spec}, nil
	}
	c.mu.Lock()
	v := c.current
	c.mu.Unlock()
	out := spec
	out.Engine, out.Model = "echo", ""
	sig := registry.Signature{Inputs: []oip.TensorMetadata{{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 2}}}}
	return resolve.Resolution{Spec: out, Version: serving.ModelRef{Model: "m", Version: v}.String(), Signature: &sig}, nil
}

func (c *catalog) Serving(context.Context, string, string) error { return nil }

type plane struct {
	t       *testing.T
	store   *sqlite.Store
	backend *inProcess
	catalog *catalog
	ctl     *control.Controller
	url     string
	grpc    oipgrpc.GRPCInferenceServiceClient
}

// newPlane runs `ebb up`'s planes over deps.
func newPlane(t *testing.T, deps ...serving.Deployment) *plane {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ebb.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, d := range deps {
		d.Spec.Default()
		if _, err := st.CreateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	p := &plane{t: t, store: st, backend: newInProcess(), catalog: &catalog{current: 3}}
	tab := &routing.Table{}
	p.ctl = control.New(st, p.backend, tab, control.Options{
		Resolver:     p.catalog,
		DrainTimeout: time.Second,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { _ = p.ctl.Run(runCtx); close(ran) }()
	t.Cleanup(func() { cancel(); <-ran; p.ctl.Wait() })
	<-p.ctl.Loaded()

	act := activator.New(tab, p.ctl, activator.Options{Timeout: 10 * time.Second})
	p.url = serve(t, New(tab, act, Options{HoldTimeout: 10 * time.Second}))

	gw := NewGRPC(tab, act, Options{HoldTimeout: 10 * time.Second})
	ln := listenLoopback(t)
	gctx, gcancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- gw.Serve(gctx, ln, 5*time.Second) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); gcancel(); <-served })
	p.grpc = oipgrpc.NewGRPCInferenceServiceClient(cc)
	for _, d := range deps {
		p.waitRoute(d.Name)
	}
	return p
}

func (p *plane) waitRoute(name string) {
	p.t.Helper()
	if err := p.ctl.Sync(context.Background(), name); err != nil {
		p.t.Fatal(err)
	}
}

// setSpec changes a deployment as the admin API does.
func (p *plane) setSpec(name string, change func(*serving.Spec)) {
	p.t.Helper()
	if _, err := p.store.UpdateDeployment(context.Background(), name, func(d *serving.Deployment) error {
		change(&d.Spec)
		return nil
	}); err != nil {
		p.t.Fatal(err)
	}
	p.waitRoute(name)
}

// do sends a request and returns the status, a header and the body.
func (p *plane) do(method, path, header string) (int, string, string) {
	p.t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`)
	}
	req, _ := http.NewRequest(method, p.url+path, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get(header), string(b)
}

// noneStarted checks, after a moment for a wake-up to act, that no
// replica beyond want was ever started.
func (p *plane) noneStarted(want int, after string) {
	p.t.Helper()
	time.Sleep(50 * time.Millisecond)
	if n := p.backend.startedCount(); n != want {
		p.t.Fatalf("%s started %d replica(s); want %d", after, n-want, 0)
	}
}

func (p *plane) waitReady(name string, n int32) serving.Status {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := p.ctl.Status(name)
		if st.ReadyReplicas == n && st.Replicas == n {
			return st
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: %d ready replicas not reached; status %+v", name, n, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func pathDep(name string) serving.Deployment {
	return serving.Deployment{Name: name, Spec: serving.Spec{Engine: "echo"}}
}

func registryDep(name string) serving.Deployment {
	return serving.Deployment{Name: name, Spec: serving.Spec{Model: "m@prod"}}
}

// TestPinnedZeroRefusesWithoutWaking sends REST and gRPC requests to a
// deployment its owner pinned at zero: each gets 503 (Unavailable)
// deployment/scaled_to_zero, saying how to undo it, and no replica starts.
// Unpinned, the next request wakes it.
func TestPinnedZeroRefusesWithoutWaking(t *testing.T) {
	d := pathDep("off")
	d.Spec.Replicas = new(int32)
	p := newPlane(t, d)
	code, _, body := p.do(http.MethodPost, "/v2/models/off/infer", "")
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || code != http.StatusServiceUnavailable || e.Code != "deployment/scaled_to_zero" ||
		!strings.Contains(e.Error, "scaled to zero by its owner") || !strings.Contains(e.Error, "ebb scale off --auto") || !strings.Contains(e.Error, "--replicas N") {
		t.Errorf("REST infer = %d %s; want 503 deployment/scaled_to_zero saying how to undo it", code, body)
	}
	var trailer metadata.MD
	_, err := p.grpc.ModelInfer(context.Background(), inferRequest(t, "off"), grpc.Trailer(&trailer))
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "scaled to zero by its owner") || trailer.Get("ebb-error-code")[0] != "deployment/scaled_to_zero" {
		t.Errorf("gRPC infer = %v (trailer %v); want Unavailable scaled to zero", err, trailer)
	}
	if code, _, body := p.do(http.MethodGet, "/v2/models/off/ready", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, `"ready":false`) {
		t.Errorf("ready = %d %s; want 503 not ready", code, body)
	}
	if r, err := p.grpc.ModelReady(context.Background(), &oipgrpc.ModelReadyRequest{Name: "off"}); err != nil || r.GetReady() {
		t.Errorf("gRPC ready = %v, %v; want not ready", r, err)
	}
	p.noneStarted(0, "requests pinned at zero")

	p.setSpec("off", func(s *serving.Spec) { s.Replicas = nil })
	if code, _, body := p.do(http.MethodPost, "/v2/models/off/infer", ""); code != http.StatusOK {
		t.Errorf("infer after unpinning = %d %s; want 200", code, body)
	}
}

// TestMetadataAtZero asks for metadata and readiness of deployments at
// zero: none wakes. A registry version answers from its signature; a model
// given by path has nothing known until a replica answered once, and then
// the gateway's copy answers at zero.
func TestMetadataAtZero(t *testing.T) {
	p := newPlane(t, registryDep("reg"), pathDep("path"))

	code, src, body := p.do(http.MethodGet, "/v2/models/reg", "Ebb-Metadata-Source")
	var m oip.ModelMetadata
	if err := json.Unmarshal([]byte(body), &m); err != nil || code != http.StatusOK || src != "registry" ||
		m.Name != "reg" || len(m.Versions) != 1 || m.Versions[0] != "3" || len(m.Inputs) != 1 {
		t.Errorf("registry metadata at zero = %d (%s) %s; want 200 from the registry, version 3", code, src, body)
	}
	if code, src, _ := p.do(http.MethodGet, "/v2/models/reg/versions/3", "Ebb-Metadata-Source"); code != http.StatusOK || src != "registry" {
		t.Errorf("versioned registry metadata at zero = %d (%s)", code, src)
	}
	var hdr metadata.MD
	gm, err := p.grpc.ModelMetadata(context.Background(), &oipgrpc.ModelMetadataRequest{Name: "reg"}, grpc.Header(&hdr))
	if err != nil || gm.GetName() != "reg" || len(gm.GetInputs()) != 1 || hdr.Get("ebb-metadata-source")[0] != "registry" {
		t.Errorf("gRPC registry metadata at zero = %v, %v (%v)", gm, err, hdr)
	}
	code, _, body = p.do(http.MethodGet, "/v2/models/path", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "deployment/metadata_unavailable") || !strings.Contains(body, "after its first request") {
		t.Errorf("path metadata at zero = %d %s; want 503 that says when it is known", code, body)
	}
	if _, err := p.grpc.ModelMetadata(context.Background(), &oipgrpc.ModelMetadataRequest{Name: "path"}); status.Code(err) != codes.Unavailable {
		t.Errorf("gRPC path metadata at zero = %v; want Unavailable", err)
	}
	for _, name := range []string{"reg", "path"} {
		if code, _, body := p.do(http.MethodGet, "/v2/models/"+name+"/ready", ""); code != http.StatusOK || !strings.Contains(body, `"ready":true`) {
			t.Errorf("%s ready at zero = %d %s; want 200: a request would start it", name, code, body)
		}
	}
	p.noneStarted(0, "metadata and ready at zero")

	// Warm: metadata comes from a replica and is remembered.
	if code, _, body := p.do(http.MethodPost, "/v2/models/path/infer", ""); code != http.StatusOK {
		t.Fatalf("infer = %d %s", code, body)
	}
	if code, src, body := p.do(http.MethodGet, "/v2/models/path", "Ebb-Metadata-Source"); code != http.StatusOK || src != "replica" || !strings.Contains(body, "ebb_echo") {
		t.Errorf("warm metadata = %d (%s) %s; want the replica's", code, src, body)
	}
	p.setSpec("path", func(s *serving.Spec) { s.Replicas = new(int32) })
	p.waitReady("path", 0)
	started := p.backend.startedCount()
	if code, src, body := p.do(http.MethodGet, "/v2/models/path", "Ebb-Metadata-Source"); code != http.StatusOK || src != "cache" || !strings.Contains(body, "ebb_echo") {
		t.Errorf("metadata at zero after a warm answer = %d (%s) %s; want the cached copy", code, src, body)
	}
	p.noneStarted(started, "metadata of a pinned deployment")
}

// TestVersionedRouting checks /versions/{v} at the gateway: a version the
// deployment does not serve is 404 without waking it; its own version
// holds and wakes like any request, and the replica reports it; after an
// alias move only the new version is served.
func TestVersionedRouting(t *testing.T) {
	p := newPlane(t, registryDep("reg"), pathDep("path"))
	code, _, body := p.do(http.MethodPost, "/v2/models/reg/versions/999/infer", "")
	if code != http.StatusNotFound || !strings.Contains(body, "deployment/version_not_found") || !strings.Contains(body, "serves version 3") {
		t.Errorf("/versions/999 at zero = %d %s; want 404 naming version 3", code, body)
	}
	req := inferRequest(t, "reg")
	req.ModelVersion = "999"
	if _, err := p.grpc.ModelInfer(context.Background(), req); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "serves version 3") {
		t.Errorf("gRPC version 999 = %v; want NotFound naming version 3", err)
	}
	if code, _, _ := p.do(http.MethodGet, "/v2/models/reg/versions/999/ready", ""); code != http.StatusNotFound {
		t.Errorf("/versions/999/ready = %d; want 404", code)
	}
	if code, _, body := p.do(http.MethodPost, "/v2/models/path/versions/1/infer", ""); code != http.StatusNotFound || !strings.Contains(body, "no registry version") {
		t.Errorf("versioned request to a path model = %d %s; want 404", code, body)
	}
	p.noneStarted(0, "requests for versions not served")

	code, _, body = p.do(http.MethodPost, "/v2/models/reg/versions/3/infer", "")
	var out oip.InferResponse
	if err := json.Unmarshal([]byte(body), &out); err != nil || code != http.StatusOK || out.ModelVersion != "3" {
		t.Fatalf("/versions/3 at zero = %d %s; want it held, woken and answered by version 3", code, body)
	}
	if code, _, body := p.do(http.MethodPost, "/v2/models/reg/infer", ""); code != http.StatusOK || !strings.Contains(body, `"model_version":"3"`) {
		t.Errorf("unversioned infer = %d %s; want model_version 3", code, body)
	}
	req.ModelVersion = "3"
	if r, err := p.grpc.ModelInfer(context.Background(), req); err != nil || r.GetModelVersion() != "3" {
		t.Errorf("gRPC version 3 = %v, %v", r, err)
	}

	// The alias moves to version 4: once rolled, 3 is gone.
	p.catalog.mu.Lock()
	p.catalog.current = 4
	p.catalog.mu.Unlock()
	p.ctl.NotifyModel("m")
	deadline := time.Now().Add(10 * time.Second)
	for {
		rt := p.ctl.Status("reg")
		if rt.ModelVersion == "m:4" && rt.ReadyReplicas == 1 && rt.Replicas == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alias move not rolled: %+v", rt)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, _, body := p.do(http.MethodPost, "/v2/models/reg/versions/4/infer", ""); code != http.StatusOK || !strings.Contains(body, `"model_version":"4"`) {
		t.Errorf("/versions/4 after the move = %d %s", code, body)
	}
	if code, _, body := p.do(http.MethodPost, "/v2/models/reg/versions/3/infer", ""); code != http.StatusNotFound || !strings.Contains(body, "serves version 4") {
		t.Errorf("/versions/3 after the move = %d %s; want 404 naming version 4", code, body)
	}
}
