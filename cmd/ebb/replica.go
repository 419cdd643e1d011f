package main

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
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/engine/trees"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/spf13/cobra"
)

// replicaFlags are the arguments ebb's process backend passes to a replica.
type replicaFlags struct {
	deployment   string
	id           string
	model        string
	engine       string
	listenFD     int
	addr         string
	notifyFD     int
	drainTimeout time.Duration

	// Dynamic batching (engines that batch); off when batchMaxSize is 0.
	batchMaxSize        int
	batchPreferredSizes []int
	batchMaxQueueDelay  time.Duration

	// Engine python: the user's class and the interpreter to run it.
	pythonClass       string
	pythonInterpreter string

	// Engine http: the OIP v2 server to front, started (command, after
	// "--") or already running (upstream).
	upstream string
	command  []string
}

func newReplicaCmd() *cobra.Command {
	var f replicaFlags
	cmd := &cobra.Command{
		Use:   "replica --deployment NAME --id ID --model PATH [--listen-fd N | --addr HOST:PORT] [--notify-fd N]",
		Short: "Serve one model over OIP v2 (started by ebb's process backend, not by hand)",
		Long: `Replica loads one model and serves it over the Open Inference Protocol v2 until
it receives SIGTERM or SIGINT, then finishes in-flight requests and exits 0.

ebb's process backend starts it with a listening socket (--listen-fd) and the
write end of a pipe (--notify-fd) on which the replica writes one JSON line
once it is ready, or the reason it failed to load. For a manual run, use
--addr instead.`,
		Hidden: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 && len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q: an http engine command goes after --", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f.command = args
			return runReplica(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.deployment, "deployment", "", "deployment name the model is served under (required)")
	fl.StringVar(&f.id, "id", "", "replica ID, reported at /ebb/v1/replica")
	fl.StringVar(&f.model, "model", "", "path of the model artifact (required)")
	fl.StringVar(&f.engine, "engine", "trees", "engine that loads the model: trees, onnx, python, http or echo")
	fl.IntVar(&f.listenFD, "listen-fd", -1, "inherited file descriptor of a listening socket to serve on")
	fl.StringVar(&f.addr, "addr", "", "address to listen on, e.g. 127.0.0.1:8080 (instead of --listen-fd)")
	fl.IntVar(&f.notifyFD, "notify-fd", -1, "inherited file descriptor to write the readiness notice to, then close")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", server.DefaultDrainTimeout, "how long to let in-flight requests finish after SIGTERM")
	fl.IntVar(&f.batchMaxSize, "batch-max-size", 0, "dynamic batching: most rows in one model call (0: no batching)")
	fl.IntSliceVar(&f.batchPreferredSizes, "batch-preferred-sizes", nil, "dynamic batching: batch sizes sent as soon as reached")
	fl.DurationVar(&f.batchMaxQueueDelay, "batch-max-queue-delay", 0, "dynamic batching: longest a request waits for a batch to fill")
	fl.StringVar(&f.pythonClass, "python-class", "", `engine python: "FILE.py:ClassName" or "module:ClassName"`)
	fl.StringVar(&f.pythonInterpreter, "python-interpreter", "/usr/bin/python3", "engine python: the Python interpreter")
	fl.StringVar(&f.upstream, "upstream", "", "engine http: URL of a running OIP v2 server to front")
	fl.StringVar(&onnxruntimeLib, "onnxruntime-lib", "", "engine onnx: path of libonnxruntime.so.1 (default: $"+onnx.EnvLibrary+", then where hack/install-onnxruntime.sh installs it)")
	return cmd
}

// runReplica loads the model and serves it until a signal, reporting
// readiness or failure on the notify fd.
func runReplica(ctx context.Context, f replicaFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	started := time.Now()
	log := newLogger(os.Stderr).With("deployment", f.deployment, "replica", f.id)
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
	if f.engine == "python" {
		// The Python shim serves on the same inherited descriptors.
		return fail(execPython(f))
	}
	ln, err := f.listen()
	if err != nil {
		return fail(err)
	}
	if f.engine == "http" {
		return runHTTPReplica(ctx, f, ln, notify, log)
	}
	m, err := loadModel(f.engine, f.model)
	if err != nil {
		ln.Close()
		return fail(err)
	}
	loadedAt := time.Now()

	s := server.New(f.deployment, m, server.Options{
		ReplicaID:     f.id,
		Deployment:    f.deployment,
		Logger:        log,
		ModelLoadedAt: loadedAt,
		DrainTimeout:  f.drainTimeout,
		Version:       buildVersion(),
		Batching:      server.BatchingPolicy(f.batchMaxSize, f.batchPreferredSizes, f.batchMaxQueueDelay),
		OnReady: func(readyAt time.Time) {
			log.Info("ready", "model", f.model, "engine", f.engine,
				"load", loadedAt.Sub(started).String(), "startup", readyAt.Sub(started).String())
			if notify == nil {
				return
			}
			if err := server.WriteNotice(notify, server.Notice{ModelLoadedAt: loadedAt, ReadyAt: readyAt}); err != nil {
				log.Warn("could not report readiness on --notify-fd", "error", err)
			}
			notify.Close()
		},
	})

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		// After the first signal, restore the default action so a second
		// one kills a replica whose drain hangs.
		<-ctx.Done()
		stop()
	}()
	// REST and the OIP v2 gRPC API share the one inherited port.
	return s.ServeWithGRPC(ctx, ln)
}

func (f replicaFlags) validate() error {
	switch {
	case f.deployment == "":
		return errors.New("--deployment is required: the name clients use in /v2/models/{name}")
	case f.model == "" && f.engine != "echo" && f.engine != "http":
		return errors.New("--model is required: the path of the model file to serve")
	case f.listenFD >= 0 && f.addr != "":
		return errors.New("--listen-fd and --addr are exclusive: give one")
	case f.listenFD < 0 && f.addr == "":
		return errors.New("no socket to serve on: give --listen-fd N (an inherited listening socket) or --addr HOST:PORT")
	case f.drainTimeout <= 0:
		return fmt.Errorf("--drain-timeout must be positive, not %v", f.drainTimeout)
	}
	return nil
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
	file := os.NewFile(uintptr(f.listenFD), "listener")
	if file == nil {
		return nil, fmt.Errorf("--listen-fd %d is not a valid file descriptor", f.listenFD)
	}
	defer file.Close() // FileListener holds its own duplicate.
	ln, err := net.FileListener(file)
	if err != nil {
		return nil, fmt.Errorf("--listen-fd %d is not an inherited listening socket: %w", f.listenFD, err)
	}
	return ln, nil
}

// onnxruntimeLib is --onnxruntime-lib: the ONNX Runtime library engine onnx
// loads; empty means onnx.FindLibrary's search.
var onnxruntimeLib string

// loadModel loads the model at path with the named engine.
func loadModel(engineName, path string) (engine.Model, error) {
	switch engineName {
	case "echo":
		return echo.Load(path)
	case "onnx":
		m, err := onnx.Load(path, onnx.Options{Library: onnxruntimeLib})
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
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// buildVersion is the main module's version as the Go toolchain recorded it.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}
