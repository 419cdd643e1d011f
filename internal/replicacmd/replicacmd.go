// Package replicacmd is the replica command: it loads one model and serves
// it over the Open Inference Protocol v2 (REST and gRPC on one port) until
// SIGTERM, for ebb's process backend (a local process) and kube backend (a
// pod). It is the root command of cmd/ebb-replica, the lean binary replicas
// run, and the hidden `ebb replica` subcommand, the fallback when that
// binary is not installed.
//
// The replica side of ebb imports no Kubernetes package (serving/core, not
// serving; see the test in cmd/ebb-replica): linked in, their package data
// alone keeps tens of MiB resident in every replica process.
package replicacmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/internal/certs"
	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/cpusched"
	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/serving/core"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

// replicaFlags are the arguments ebb's process backend passes to a replica.
type replicaFlags struct {
	deployment   string
	id           string
	model        string
	modelVersion string
	engine       string
	listenFD     int
	socketFD     int
	addr         string
	notifyFD     int
	drainTimeout time.Duration
	// schedBatch puts the replica under SCHED_BATCH (package cpusched).
	schedBatch bool
	// gateFD is the read end of the replica's gate: end-of-file before a
	// byte means the ebb that started it died before recording it (see
	// process.Backend.Recorded); -1: none.
	gateFD int

	// Dynamic batching (engines that batch); off when batchMaxSize is 0.
	batchMaxSize        int
	batchPreferredSizes []int
	batchMaxQueueDelay  time.Duration

	// Engine python: the user's class, the interpreter to run it and how
	// many worker processes run it.
	pythonClass       string
	pythonInterpreter string
	pythonWorkers     int

	// Engine http: the OIP v2 server to front, started (command, after
	// "--") or already running (upstream).
	upstream string
	command  []string
	// upstreamModel and protocol: see serving.Spec.
	upstreamModel string
	protocol      string

	// Registry artifacts: fetched through the artifact cache first.
	fetch fetchFlags

	// Hard limits (connlimit.AddFlags).
	limits             connlimit.Limits
	maxBodyBytes       int64
	maxRequestElements int64

	// secret, from $EBB_REPLICA_SECRET, must come with every request
	// but health checks (see replica.Handle.Secret).
	secret string

	tls certs.Files // --tls-*: serve (mutual) TLS (tls.go)

	// Pool mode (pool.go): host many models, loaded on demand.
	pool         bool
	memoryBudget string

	tracing telemetry.Config // --otlp-*, --trace-sample-ratio (tracing.go)

	// describe (--describe): load the model, print its signature, exit
	// (describe.go).
	describe bool
}

// Delegate returns the command line (a binary's absolute path and its
// arguments, to which the replica's own arguments are appended) of a
// replica command that serves the engines this build cannot: engine onnx
// in a build without cgo.
type Delegate func() ([]string, error)

// New returns the replica command under the name use: "replica" as a
// subcommand of ebb, "ebb-replica" as the root command of its own binary.
// When this build lacks the requested engine and delegate is not nil, the
// command replaces its process with delegate's (exec: same PID, same
// inherited socket and notify pipe, same environment), so backends need
// not know which binary serves which engine. The arguments passed on are
// os.Args[1:]: give a delegate only to a root command.
func New(use string, delegate Delegate) *cobra.Command {
	var f replicaFlags
	cmd := &cobra.Command{
		Use:   use + " --deployment NAME --id ID --model PATH [--listen-fd N | --addr HOST:PORT] [--socket-fd N] [--notify-fd N]",
		Short: "Serve one model over OIP v2 (started by ebb's process backend, not by hand)",
		Long: `Replica loads one model and serves it over the Open Inference Protocol v2 until
it receives SIGTERM or SIGINT, then finishes in-flight requests and exits 0.

ebb's process backend starts it with a listening socket (--listen-fd) and the
write end of a pipe (--notify-fd) on which the replica writes one JSON line
once it is ready, or the reason it failed to load; ebb up adds a listening
Unix socket (--socket-fd) on which the replica serves REST too, for its
gateway. For a manual run, use --addr instead.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 && len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q: an http engine command goes after --", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.engine == "onnx" && !cgoBuild && delegate != nil {
				return execDelegate(delegate)
			}
			if f.describe {
				return describe(cmd.OutOrStdout(), f)
			}
			f.command = args
			// Taken out of the environment, so neither an engine's
			// command nor Python code inherits it.
			f.secret = os.Getenv(core.SecretEnv)
			os.Unsetenv(core.SecretEnv)
			return runReplica(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.deployment, "deployment", "", "deployment name the model is served under (required)")
	fl.StringVar(&f.id, "id", "", "replica ID, reported at /ebb/v1/replica")
	fl.StringVar(&f.model, "model", "", "path of the model artifact (required)")
	fl.StringVar(&f.modelVersion, "model-version", "", `registry version the model is ("diabetes:3"): reported in metadata and the only /versions/{v} served`)
	fl.StringVar(&f.engine, "engine", "trees", "engine that loads the model: trees, onnx, python, http or echo")
	fl.IntVar(&f.listenFD, "listen-fd", -1, "inherited file descriptor of a listening socket to serve on")
	fl.IntVar(&f.socketFD, "socket-fd", -1, "inherited file descriptor of a listening Unix socket to serve REST on too (not gRPC), with the same secret and limits")
	fl.StringVar(&f.addr, "addr", "", "address to listen on, e.g. 127.0.0.1:8080 (instead of --listen-fd)")
	fl.IntVar(&f.notifyFD, "notify-fd", -1, "inherited file descriptor to write the readiness notice to, then close")
	fl.IntVar(&f.gateFD, "gate-fd", -1, "inherited read end of a pipe: the replica exits if it closes before a byte arrives (the process that started it died before recording it)")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", server.DefaultDrainTimeout, "how long to let in-flight requests finish after SIGTERM")
	fl.BoolVar(&f.schedBatch, "sched-batch", false, "run under Linux's SCHED_BATCH policy, as do the processes the replica starts: woken by a request, the replica does not preempt the gateway sharing its CPU (ebb up sets it; see --replica-sched-batch)")
	fl.IntVar(&f.batchMaxSize, "batch-max-size", 0, "dynamic batching: most rows in one model call (0: no batching)")
	fl.IntSliceVar(&f.batchPreferredSizes, "batch-preferred-sizes", nil, "dynamic batching: batch sizes sent as soon as reached")
	fl.DurationVar(&f.batchMaxQueueDelay, "batch-max-queue-delay", 0, "dynamic batching: longest a request waits for a batch to fill")
	fl.StringVar(&f.pythonClass, "python-class", "", `engine python: "FILE.py:ClassName" or "module:ClassName"`)
	fl.StringVar(&f.pythonInterpreter, "python-interpreter", "/usr/bin/python3", "engine python: the Python interpreter")
	fl.IntVar(&f.pythonWorkers, "python-workers", 1, "engine python: how many Python worker processes run the class (parallelism)")
	fl.StringVar(&f.upstream, "upstream", "", "engine http: URL of a running OIP v2 server to front")
	fl.StringVar(&f.upstreamModel, "upstream-model", "", "engine http: the model's name on the server behind (default: --deployment)")
	fl.StringVar(&f.protocol, "protocol", "", "engine http: the API the server behind speaks: oip (default) or openai")
	addFetchFlags(fl, &f.fetch)
	connlimit.AddFlags(fl, &f.limits)
	f.tls.AddFlags(fl)
	fl.Int64Var(&f.maxBodyBytes, "max-body-bytes", server.DefaultMaxRequestBytes, "most bytes of one infer request body (REST: more get 413) or gRPC request message (ResourceExhausted)")
	fl.Int64Var(&f.maxRequestElements, "max-request-elements", server.DefaultMaxRequestElements, "most tensor elements one infer request may declare, all inputs together; more get 413")
	addPoolFlags(fl, &f)
	f.tracing.AddFlags(fl)
	fl.BoolVar(&f.describe, "describe", false, "load --model with --engine, print its inputs and outputs as JSON and exit (the registry's check of a pushed model)")
	_ = fl.MarkHidden("describe")
	fl.StringVar(&onnxruntimeLib, "onnxruntime-lib", "", "engine onnx: path of libonnxruntime.so.1 (default: $"+onnx.EnvLibrary+", then where hack/install-onnxruntime.sh installs it)")
	return cmd
}

// execDelegate replaces this process with the delegate's replica command,
// given this process's arguments. Nothing was read from the inherited file
// descriptors or the environment yet: the delegate finds them as this
// process did.
func execDelegate(delegate Delegate) error {
	argv, err := delegate()
	if err != nil {
		return fmt.Errorf("engine onnx needs cgo, and this replica binary was built without it: %w", err)
	}
	fmt.Fprintf(os.Stderr, "engine onnx needs cgo, which this replica binary was built without: running %s in its place\n", strings.Join(argv, " "))
	argv = append(argv, os.Args[1:]...)
	if err := syscall.Exec(argv[0], argv, os.Environ()); err != nil {
		return fmt.Errorf("engine onnx needs cgo, and this replica binary was built without it; running %s failed: %w", argv[0], err)
	}
	return nil // not reached
}

// runReplica loads the model and serves it until a signal, reporting
// readiness or failure on the notify fd.
func runReplica(ctx context.Context, f replicaFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	started := time.Now()
	log := newLogger(os.Stderr).With("deployment", f.deployment, "replica", f.id)
	if f.gateFD >= 0 {
		go watchGate(os.NewFile(uintptr(f.gateFD), "gate"), log)
	}
	if f.schedBatch {
		// First, so that every thread and process started later
		// inherits it.
		if err := cpusched.Batch(); err != nil {
			log.Warn("could not run under SCHED_BATCH; the replica runs under the default policy", "error", err)
		}
	}
	var notify io.WriteCloser
	if f.notifyFD >= 0 {
		notify = os.NewFile(uintptr(f.notifyFD), "notify")
	}
	// fail reports a startup failure to the backend, then returns it so the
	// process exits 1.
	fail := func(err error) error {
		log.Error("replica failed to start", "error", err)
		if notify != nil {
			if werr := server.WriteNotice(notify, server.Notice{Error: err.Error()}); werr != nil {
				log.Warn("could not report the failure on --notify-fd", "error", werr)
			}
			notify.Close()
		}
		return err
	}

	if err := f.validate(); err != nil {
		return fail(err)
	}
	tracer, stopTracing, err := startTracing(ctx, f) // tracing.go
	if err != nil {
		return fail(err)
	}
	defer stopTracing()
	art := fetched{close: func() {}}
	if !f.pool {
		if art, err = fetchModel(ctx, log, f.model, f.fetch); err != nil {
			return fail(err)
		}
	}
	defer art.close()
	f.model = art.path
	ln, err := f.listen()
	if err != nil {
		return fail(err)
	}
	// more: the Unix socket (--socket-fd), served REST alone.
	more, err := f.listenSocket()
	if err != nil {
		ln.Close()
		return fail(err)
	}
	certFiles, err := f.tls.Load(log)
	if err != nil {
		closeAll(ln, more)
		return fail(err)
	}
	ln = startReplicaTLS(ctx, ln, f.tls, certFiles, f.limits, log)
	if f.pool {
		eng, err := preparePool(ctx, f, log)
		if err != nil {
			closeAll(ln, more)
			return fail(err)
		}
		defer eng.stop() // after the server drained
		return runPool(ctx, f, eng, tracer, ln, more, notify, log)
	}
	if f.engine == "http" {
		return runHTTPReplica(ctx, f, ln, notify, log)
	}
	var m engine.Model
	instances := 1 // batches in the model at once
	if f.engine == "python" {
		var stopWorkers func()
		m, instances, stopWorkers, err = startPython(ctx, f, log)
		if err == nil {
			defer stopWorkers() // after the server drained
		}
	} else {
		m, err = LoadModel(f.engine, f.model, onnxruntimeLib)
	}
	if err != nil {
		closeAll(ln, more)
		return fail(err)
	}
	loadedAt := time.Now()

	s := server.New(f.deployment, m, server.Options{
		ReplicaID:      f.id,
		Deployment:     f.deployment,
		Logger:         log,
		ModelLoadedAt:  loadedAt,
		ModelVersion:   f.modelVersion,
		Artifact:       art.info,
		DrainTimeout:   f.drainTimeout,
		Version:        buildVersion(),
		Batching:       server.BatchingPolicy(f.batchMaxSize, f.batchPreferredSizes, f.batchMaxQueueDelay),
		BatchInstances: instances,

		MaxRequestBytes:    f.maxBodyBytes,
		MaxRequestElements: f.maxRequestElements,
		Limits:             f.limits,
		Metrics:            newReplicaMetrics(),
		Secret:             f.secret,
		Tracer:             tracer,
		Engine:             f.engine,
		OnReady: func(readyAt time.Time) {
			log.Info("ready", "model", f.model, "engine", f.engine,
				"load", loadedAt.Sub(started).String(), "startup", readyAt.Sub(started).String())
			if notify == nil {
				return
			}
			if err := server.WriteNotice(notify, server.Notice{ModelLoadedAt: loadedAt, ReadyAt: readyAt, Artifact: art.info}); err != nil {
				log.Warn("could not report readiness on --notify-fd", "error", err)
			}
			notify.Close()
		},
	})

	return serveUntilSignal(ctx, s, ln, more)
}

// watchGate reads the replica's gate: a byte releases it, end-of-file
// without one means that the process that started the replica died before
// recording it, and nothing will ever stop it: it exits at once (it was
// never routed). It runs in a goroutine of its own from the start, while
// the model loads.
func watchGate(gate *os.File, log *slog.Logger) {
	defer gate.Close()
	var b [1]byte
	n, err := gate.Read(b[:])
	if n == 1 {
		return
	}
	log.Error("the process that started this replica exited before recording it; exiting, since nothing would ever stop this replica", "gate", err)
	os.Exit(3)
}

// serveUntilSignal serves s until SIGTERM or SIGINT, then drains it.
func serveUntilSignal(ctx context.Context, s *server.Server, ln net.Listener, more []net.Listener) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		// After the first signal, restore the default action so a second
		// one kills a replica whose drain hangs.
		<-ctx.Done()
		stop()
	}()
	// REST and the OIP v2 gRPC API share the one inherited port; the Unix
	// socket, if any, serves REST.
	return s.ServeWithGRPC(ctx, ln, more...)
}

func (f replicaFlags) validate() error {
	if err := f.validatePool(); err != nil {
		return err
	}
	switch {
	case f.deployment == "":
		return errors.New("--deployment is required: the name clients use in /v2/models/{name}")
	case f.model == "" && f.engine != "echo" && f.engine != "http" && !f.pool:
		return errors.New("--model is required: the path of the model file to serve")
	case f.listenFD >= 0 && f.addr != "":
		return errors.New("--listen-fd and --addr are exclusive: give one")
	case f.listenFD < 0 && f.addr == "":
		return errors.New("no socket to serve on: give --listen-fd N (an inherited listening socket) or --addr HOST:PORT")
	case f.socketFD >= 0 && f.engine == "http":
		return errors.New("--socket-fd is not served by engine http: give it --listen-fd or --addr alone")
	case f.socketFD >= 0 && f.tls.CertFile != "":
		return errors.New("--socket-fd serves plain HTTP, so not with --tls-cert: a replica with TLS serves its port alone")
	case f.drainTimeout <= 0:
		return fmt.Errorf("--drain-timeout must be positive, not %v", f.drainTimeout)
	case f.modelVersion != "" && core.OIPVersion(f.modelVersion) == "":
		return fmt.Errorf("--model-version %q is not a registry version: give MODEL:N, e.g. diabetes:3", f.modelVersion)
	}
	return server.CheckMaxBodyBytes(f.maxBodyBytes)
}

// listen returns the inherited listener (--listen-fd) or binds --addr.
func (f replicaFlags) listen() (net.Listener, error) {
	if f.addr != "" {
		ln, err := net.Listen("tcp", f.addr)
		if err != nil {
			return nil, fmt.Errorf("--addr %s: %w", f.addr, err)
		}
		return ln, nil
	}
	return inherited("--listen-fd", f.listenFD)
}

// listenSocket returns the inherited Unix socket listener (--socket-fd),
// or none.
func (f replicaFlags) listenSocket() ([]net.Listener, error) {
	if f.socketFD < 0 {
		return nil, nil
	}
	ln, err := inherited("--socket-fd", f.socketFD)
	if err != nil {
		return nil, err
	}
	if _, ok := ln.(*net.UnixListener); !ok {
		ln.Close()
		return nil, fmt.Errorf("--socket-fd %d is not a Unix socket (%s)", f.socketFD, ln.Addr().Network())
	}
	return []net.Listener{ln}, nil
}

// inherited returns the listening socket at fd, given by flag.
func inherited(flag string, fd int) (net.Listener, error) {
	file := os.NewFile(uintptr(fd), "listener")
	if file == nil {
		return nil, fmt.Errorf("%s %d is not a valid file descriptor", flag, fd)
	}
	defer file.Close() // FileListener holds its own duplicate.
	ln, err := net.FileListener(file)
	if err != nil {
		return nil, fmt.Errorf("%s %d is not an inherited listening socket: %w", flag, fd, err)
	}
	return ln, nil
}

// closeAll closes ln and more.
func closeAll(ln net.Listener, more []net.Listener) {
	ln.Close()
	for _, l := range more {
		l.Close()
	}
}

// onnxruntimeLib is --onnxruntime-lib: the ONNX Runtime library engine onnx
// loads; empty means onnx.FindLibrary's search.
var onnxruntimeLib string

// LoadModel loads the model at path with the named engine, one of those
// that run in this process (echo, onnx, trees). onnxLib is the ONNX Runtime
// library engine onnx loads; empty: onnx.FindLibrary's search.
func LoadModel(engineName, path, onnxLib string) (engine.Model, error) {
	switch engineName {
	case "echo":
		return echo.Load(path)
	case "onnx":
		m, err := onnx.Load(path, onnx.Options{Library: onnxLib})
		if err != nil {
			return nil, fmt.Errorf("engine onnx: %w", err)
		}
		return m, nil
	case "trees":
		m, err := trees.Load(path)
		if err != nil {
			return nil, fmt.Errorf("engine trees: %w", err)
		}
		return m, nil
	default:
		return nil, fmt.Errorf("unknown engine %q for model %s: use one of trees, onnx, python, http, echo", engineName, path)
	}
}

// newLogger logs JSON to w unless w is a terminal, where text reads better.
func newLogger(w *os.File) *slog.Logger {
	if isTerminal(w) {
		return slog.New(telemetry.NewLogHandler(slog.NewTextHandler(w, nil)))
	}
	return slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(w, nil)))
}

// buildVersion is the main module's version as the Go toolchain recorded it.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// newReplicaMetrics returns a replica's metrics, served at its /metrics.
func newReplicaMetrics() *server.Metrics {
	reg := prometheus.NewRegistry()
	return server.NewMetrics(reg, reg)
}
