// Package httpproxy makes any model server an ebb replica: Triton,
// MLServer, a user's own OIP v2 server, or an LLM server that speaks the
// OpenAI API (vLLM, TGI, llama.cpp). A Replica either starts the server's
// command with $PORT set to a free loopback port, or fronts a server already
// running at a URL; it waits until the server answers ready (GET
// /v2/health/ready, or GET /v1/models for the OpenAI API), then serves on
// its own listener, answering /ebb/v1/replica itself.
//
// For an OIP v2 server (Options.Protocol "oip", the default) the replica
// reverse-proxies REST, and answers the OIP v2 gRPC API on the same port by
// translating each call to the server's REST API (grpc.go): clients and the
// gateway reach every engine over gRPC, whatever the server behind speaks.
// The deployment's name maps to the server's model name
// (Options.UpstreamModel) in paths, and back in the names of answers.
//
// For an OpenAI server (Options.Protocol "openai") the replica passes
// /v1/... through unchanged and unbuffered: server-sent events reach the
// gateway as the server writes them. Only the request's "model" field is
// rewritten when the server knows the model by another name. The replica
// answers its own health checks; OIP v2 requests are refused with a 404
// that says where the API lives.
//
// When its context ends (the replica got SIGTERM) it reports not ready,
// drains the proxy, then stops the command: SIGTERM to its process group,
// SIGKILL after the stop timeout. When the command exits on its own, Run
// returns an *ExitError carrying its exit code.
package httpproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/serving/core"
	"github.com/ebb-ml/ebb/internal/tailbuf"
)

// Defaults for Options fields left zero.
const (
	DefaultReadyTimeout = 5 * time.Minute
	DefaultPollInterval = 100 * time.Millisecond
	DefaultDrainTimeout = server.DefaultDrainTimeout
	DefaultStopTimeout  = 10 * time.Second
	// DefaultMaxRequestBytes is the gateway's default body limit.
	DefaultMaxRequestBytes = 64 << 20
)

// Options configure a Replica. Exactly one of Command and Upstream is set.
type Options struct {
	// Command is the argv of the OIP v2 server to start. It runs in its own
	// process group with PORT=<port> added to its environment and must
	// serve on 127.0.0.1:$PORT (or all interfaces).
	Command []string
	// Env is added to the command's environment.
	Env []string
	// Dir is the command's working directory; default the current one.
	Dir string
	// Upstream is the base URL of a running OIP v2 server to front.
	Upstream string
	// UpstreamModel is the name the server knows the model by; default
	// Deployment.
	UpstreamModel string
	// Protocol is the API the server speaks: core.ProtocolOIP (also
	// "") or core.ProtocolOpenAI.
	Protocol string
	// MaxRequestBytes bounds a gRPC request message, and an OpenAI
	// request body whose model the replica renames; default
	// DefaultMaxRequestBytes.
	MaxRequestBytes int64

	// ReplicaID and Deployment identify the replica at /ebb/v1/replica.
	ReplicaID  string
	Deployment string
	// ReadyTimeout bounds the wait for the server to answer ready.
	ReadyTimeout time.Duration
	// PollInterval is the longest pause between readiness probes; the
	// first ones come sooner.
	PollInterval time.Duration
	// DrainTimeout bounds how long in-flight requests may finish after the
	// context of Run ends.
	DrainTimeout time.Duration
	// StopTimeout is how long the command has to exit after SIGTERM before
	// it is killed.
	StopTimeout time.Duration
	// Output receives the command's stdout and stderr; default os.Stderr.
	Output io.Writer
	// Logger receives lifecycle events; default discards.
	Logger *slog.Logger
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// OnReady, when set, is called once with the time the server answered
	// ready (the model is loaded) and the time the proxy began accepting.
	OnReady func(modelLoadedAt, readyAt time.Time)
	// Secret, when set, must be sent in core.SecretHeader by every
	// request but health checks and /ebb/v1/replica (401 otherwise); it
	// is not passed on to the server behind.
	Secret string
}

// ExitError reports that the command exited: before it was ready, or while
// it was being served.
type ExitError struct {
	// Code is the command's exit status; 128+N when signal N killed it.
	Code int
	// Msg says what happened, with the end of the command's output when it
	// had not become ready.
	Msg string
}

func (e *ExitError) Error() string { return e.Msg }

// Replica fronts one OIP v2 server. Use New; Run it once.
type Replica struct {
	opts  Options
	log   *slog.Logger
	pid   int
	tail  *tailbuf.Buffer
	ready atomic.Bool // false until the server is ready, and while draining

	// mu guards the times reported at /ebb/v1/replica.
	mu            sync.Mutex
	modelLoadedAt time.Time
	readyAt       time.Time
}

// New checks opts and returns a Replica; nothing starts until Run.
func New(opts Options) (*Replica, error) {
	switch {
	case len(opts.Command) > 0 && opts.Upstream != "":
		return nil, errors.New("engine http: give a command or an upstream URL, not both")
	case len(opts.Command) == 0 && opts.Upstream == "":
		return nil, errors.New("engine http needs the OIP v2 server to front: set spec.command (the argv that serves on $PORT) or spec.url")
	}
	if opts.Upstream != "" {
		u, err := url.Parse(opts.Upstream)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("engine http: upstream %q is not an http:// or https:// URL such as http://127.0.0.1:8000", opts.Upstream)
		}
	}
	switch opts.Protocol {
	case "", core.ProtocolOIP:
		opts.Protocol = core.ProtocolOIP
	case core.ProtocolOpenAI:
	default:
		return nil, fmt.Errorf("engine http: unknown protocol %q: use oip (an OIP v2 server) or openai (an OpenAI API server such as vLLM)", opts.Protocol)
	}
	if opts.UpstreamModel == "" {
		opts.UpstreamModel = opts.Deployment
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	if opts.Output == nil {
		opts.Output = os.Stderr
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Replica{opts: opts, log: opts.Logger, pid: os.Getpid(), tail: tailbuf.New(20, 4096)}, nil
}

// Run starts the command (or reaches the upstream), waits until it is ready,
// and serves the proxy on ln until ctx ends or the command exits; then it
// drains and stops the command. It returns nil after a clean drain, an
// *ExitError when the command exited on its own, and another error when the
// server never became ready. Run closes ln.
func (r *Replica) Run(ctx context.Context, ln net.Listener) error {
	defer ln.Close()
	target := r.opts.Upstream
	var c *child
	if len(r.opts.Command) > 0 {
		var err error
		c, err = r.startCommand()
		if err != nil {
			return err
		}
		defer c.stop(r.opts.StopTimeout)
		target = c.url
	}
	base, _ := url.Parse(target)

	loadedAt, err := r.waitReady(ctx, base, c)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.modelLoadedAt = loadedAt
	r.mu.Unlock()
	return r.serve(ctx, ln, base, c)
}

func (r *Replica) startCommand() (*child, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("engine http: pick a port for %s: %w", r.opts.Command[0], err)
	}
	cmd := exec.Command(r.opts.Command[0], r.opts.Command[1:]...)
	cmd.Dir = r.opts.Dir
	cmd.Env = append(append(os.Environ(), r.opts.Env...), "PORT="+strconv.Itoa(port))
	out := io.MultiWriter(r.opts.Output, r.tail)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own group, so stopping it reaches the processes it starts too;
	// Pdeathsig, so it does not outlive a replica that is killed. What it
	// starts inherits the replica's marker, so when the replica is killed
	// the process backend kills that as well
	// (internal/replica/process/tree.go).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	// Output copying must not hang on a grandchild that keeps the pipe.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("engine http: start %q: %w", r.opts.Command, err)
	}
	c := &child{cmd: cmd, url: "http://127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{})}
	r.log.Info("started", "command", r.opts.Command, "pid", cmd.Process.Pid, "port", port)
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// readyPath is where the server behind answers 200 once it serves: the OIP
// v2 readiness check, or, for the OpenAI API, its model list (vLLM and TGI
// serve it only once the model is loaded; llama.cpp answers 503 until then).
func (r *Replica) readyPath() string {
	if r.openAI() {
		return "/v1/models"
	}
	return "/v2/health/ready"
}

func (r *Replica) openAI() bool { return r.opts.Protocol == core.ProtocolOpenAI }

// waitReady probes base's readyPath until it answers 200, the command
// exits, ReadyTimeout passes, or ctx ends.
func (r *Replica) waitReady(ctx context.Context, base *url.URL, c *child) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.ReadyTimeout)
	defer cancel()
	probe := base.JoinPath(r.readyPath()).String()
	client := &http.Client{Timeout: 5 * time.Second}
	var exited <-chan struct{}
	if c != nil {
		exited = c.done
	}
	// Probe often at first, a server that starts fast is ready at once,
	// then back off to PollInterval.
	wait := min(5*time.Millisecond, r.opts.PollInterval)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	last := "no answer yet"
	for {
		status, err := getStatus(ctx, client, probe)
		switch {
		case err == nil && status == http.StatusOK:
			return r.opts.Now(), nil
		case err == nil:
			last = "status " + strconv.Itoa(status)
		case ctx.Err() == nil:
			last = err.Error()
		}
		select {
		case <-exited:
			e := c.exitError()
			e.Msg = fmt.Sprintf("engine http: command %q exited (%s) before it answered ready at %s%s",
				r.opts.Command, e.Msg, probe, r.outputEnd())
			return time.Time{}, e
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				what := fmt.Sprintf("upstream %s", r.opts.Upstream)
				if c != nil {
					what = fmt.Sprintf("command %q", r.opts.Command)
				}
				return time.Time{}, fmt.Errorf("engine http: %s did not answer ready at %s within %v (last: %s)%s",
					what, probe, r.opts.ReadyTimeout, last, r.outputEnd())
			}
			return time.Time{}, fmt.Errorf("engine http: stopped while waiting for %s to answer ready: %w", probe, ctx.Err())
		case <-timer.C:
			wait = min(2*wait, r.opts.PollInterval)
			timer.Reset(wait)
		}
	}
}

func getStatus(ctx context.Context, client *http.Client, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// outputEnd is the end of the command's output, for error messages.
func (r *Replica) outputEnd() string {
	if len(r.opts.Command) == 0 {
		return ""
	}
	t := strings.TrimSpace(r.tail.String())
	if t == "" {
		return "; it printed nothing"
	}
	return "; its output ends with:\n" + t
}

func (r *Replica) serve(ctx context.Context, ln net.Listener, base *url.URL, c *child) error {
	// HTTP/1 for REST, cleartext HTTP/2 (prior knowledge) for gRPC: the
	// gateway dials replicas that way. Without it a gRPC call met an
	// HTTP/1 answer to its preface, failed as Unavailable, and the
	// gateway, taking the replica for dead, held the call until its
	// deadline.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           r.handler(base),
		Protocols:         &protocols,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
	readyAt := r.opts.Now()
	r.mu.Lock()
	r.readyAt = readyAt
	loadedAt := r.modelLoadedAt
	r.mu.Unlock()
	r.ready.Store(true)
	if r.opts.OnReady != nil {
		r.opts.OnReady(loadedAt, readyAt)
	}
	r.log.Info("serving", "addr", ln.Addr().String(), "upstream", base.String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	var exited <-chan struct{}
	if c != nil {
		exited = c.done
	}
	select {
	case err := <-errc:
		r.ready.Store(false)
		return fmt.Errorf("engine http: serving on %s: %w", ln.Addr(), err)
	case <-exited:
		r.ready.Store(false)
		srv.Close()
		<-errc
		e := c.exitError()
		e.Msg = fmt.Sprintf("engine http: command %q exited (%s)", r.opts.Command, e.Msg)
		return e
	case <-ctx.Done():
	}

	r.ready.Store(false)
	r.log.Info("draining", "timeout", r.opts.DrainTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.DrainTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
	}
	<-errc
	if err != nil {
		return fmt.Errorf("engine http: drain: in-flight requests did not finish within %v; closed them: %w", r.opts.DrainTimeout, err)
	}
	r.log.Info("drained")
	return nil // Run's deferred stop ends the command
}

// Info returns the replica's identity and startup times.
func (r *Replica) Info() server.ReplicaInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return server.ReplicaInfo{
		ID:            r.opts.ReplicaID,
		Deployment:    r.opts.Deployment,
		PID:           r.pid,
		ModelLoadedAt: r.modelLoadedAt,
		ReadyAt:       r.readyAt,
	}
}

// freePort returns a loopback port that was free a moment ago. The command
// binds it itself, so another process could take it in between; that shows
// as the command failing to start.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
