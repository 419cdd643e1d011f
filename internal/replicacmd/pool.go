package replicacmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/engine"
	"github.com/ebb-ml/ebb/internal/engine/onnx"
	"github.com/ebb-ml/ebb/internal/engine/python"
	"github.com/ebb-ml/ebb/internal/pool"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel/trace"
)

// In pool mode (--pool) a replica hosts many models of one engine, loaded
// and unloaded on demand through OIP v2's model repository extension
// (server.NewPool): POST /v2/repository/models/{m}/load with the model's
// artifact as --model, --model-sha256, --model-unpack and --model-entry
// take it, the parameters named as those flags. Its models' measured
// memory stays within --memory-budget. --deployment names the pool.
//
// Engines trees, onnx and python run in pool mode; http (one upstream
// server) and echo are single-model. Engine python's pool is one set of
// worker processes (--python-workers, --python-interpreter: a
// python.Host) that every model loads into, each an instance of the class
// its load names (parameter python-class, which --python-class is not
// given for a pool): the class must opt in to sharing its process
// (ebb_multi_model = True; see package python), and a load that names
// another interpreter than the pool's is refused. A worker that exits
// takes every model with it: the replica then stops, exit status 1, so
// that the control loop restarts it and blames the model that was loading
// or serving, as it does for any pool replica that dies.

func addPoolFlags(fl *pflag.FlagSet, f *replicaFlags) {
	fl.BoolVar(&f.pool, "pool", false, "host many models of --engine, loaded on demand by POST /v2/repository/models/{m}/load (engines trees, onnx and python); --deployment names the pool and --model is not given")
	fl.StringVar(&f.memoryBudget, "memory-budget", "", "with --pool: the most memory the loaded models may hold together, measured after each load (e.g. 512MiB, 2Gi); a load that does not fit is refused with 507")
}

// poolRSSMargin is taken off a pool's replica's soft memory limit for
// the pages it touches outside the memory Go holds as it serves (its code
// and data, first read by the first loads), which the limit does not
// count but its resident memory does.
const poolRSSMargin = 4 << 20

// poolGCPercent is a pool's replica's GOGC: its heap is mostly models,
// long-lived, so collecting more often costs little and keeps its
// resident memory near what they hold.
const poolGCPercent = 50

// poolEngines are the engines that can host several models in one process
// (python: in one set of worker processes).
var poolEngines = map[string]bool{"trees": true, "onnx": true, "python": true}

// validatePool checks the pool flags.
func (f replicaFlags) validatePool() error {
	if !f.pool {
		if f.memoryBudget != "" {
			return errors.New("--memory-budget needs --pool: a replica of one model has no budget to keep")
		}
		return nil
	}
	switch {
	case !poolEngines[f.engine]:
		return fmt.Errorf("--pool runs engines trees, onnx and python, not %s", f.engine)
	case f.model != "":
		return errors.New("--pool takes no --model: models are loaded by POST /v2/repository/models/{m}/load")
	case f.pythonClass != "":
		return errors.New("--pool takes no --python-class: each model's class comes with its load (parameter python-class)")
	}
	_, err := f.poolBudget()
	return err
}

// poolBudget parses --memory-budget, which --pool requires.
func (f replicaFlags) poolBudget() (int64, error) {
	if f.memoryBudget == "" {
		return 0, errors.New("--pool needs --memory-budget: the most memory the loaded models may hold, e.g. 512MiB")
	}
	b, err := pool.ParseBytes(f.memoryBudget)
	if err != nil {
		return 0, fmt.Errorf("--memory-budget: %w", err)
	}
	if b <= 0 {
		return 0, fmt.Errorf("--memory-budget must be positive, not %s", f.memoryBudget)
	}
	return b, nil
}

// poolEngine is what a pool's engine runs beside the models: for engine
// python, the worker processes (nil for the others).
type poolEngine struct {
	python *python.Host
}

// stop ends what the engine runs; call it once the server drained.
func (e poolEngine) stop() {
	if e.python != nil {
		e.python.Close()
	}
}

// preparePool readies the pool's engine before the first load, so that a
// missing library or interpreter stops the replica at start and the
// engine's own memory is not counted as the first model's: ONNX Runtime
// loaded and its first session made, or the Python workers started.
func preparePool(ctx context.Context, f replicaFlags, log *slog.Logger) (poolEngine, error) {
	switch f.engine {
	case "onnx":
		return poolEngine{}, onnx.Init(onnxruntimeLib)
	case "python":
		h, err := python.StartHost(ctx, python.Options{
			Interpreter: f.pythonInterpreter,
			Workers:     f.pythonWorkers,
			Logger:      log,
		})
		return poolEngine{python: h}, err
	}
	return poolEngine{}, nil
}

// runPool serves a pool of models, none loaded at first, until a signal.
// tracer, when set, traces their infer requests as a single model's
// replica does (each model's server takes it).
func runPool(ctx context.Context, f replicaFlags, eng poolEngine, tracer trace.Tracer, ln net.Listener, more []net.Listener, notify io.WriteCloser, log *slog.Logger) error {
	budget, _ := f.poolBudget() // validated
	// The garbage collector keeps the heap near what the models hold,
	// rather than letting it reach twice that (GOGC's 100%), so that the
	// replica's resident memory grows by its budget at most: it collects
	// at half the live heap's growth, and the memory Go holds may grow by
	// no more than the budget over what it holds now, with no model.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(poolGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		debug.SetMemoryLimit(max(budget+int64(ms.Sys-ms.HeapReleased)-poolRSSMargin, budget))
	}
	started := time.Now()
	s := server.NewPool(f.deployment, server.Options{
		ReplicaID:          f.id,
		Deployment:         f.deployment,
		Logger:             log,
		ModelLoadedAt:      started,
		DrainTimeout:       f.drainTimeout,
		Version:            buildVersion(),
		MaxRequestBytes:    f.maxBodyBytes,
		MaxRequestElements: f.maxRequestElements,
		Limits:             f.limits,
		Metrics:            newReplicaMetrics(),
		Secret:             f.secret,
		Tracer:             tracer,
		Engine:             f.engine,
		// Each model batches on its own.
		Batching:       server.BatchingPolicy(f.batchMaxSize, f.batchPreferredSizes, f.batchMaxQueueDelay),
		BatchInstances: eng.instances(),
		OnReady: func(readyAt time.Time) {
			log.Info("ready", "pool", f.deployment, "engine", f.engine, "memoryBudget", pool.FormatBytes(budget))
			if notify == nil {
				return
			}
			if err := server.WriteNotice(notify, server.Notice{ModelLoadedAt: started, ReadyAt: readyAt}); err != nil {
				log.Warn("could not report readiness on --notify-fd", "error", err)
			}
			notify.Close()
		},
	}, server.PoolOptions{Budget: budget, Engine: f.engine, Load: poolLoader(f, eng, log), ServingBytes: server.DefaultServingBytes})
	if eng.python == nil {
		return serveUntilSignal(ctx, s, ln, more)
	}
	// A Python worker that exits takes the models with it: stop, so that
	// the control loop restarts the replica.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-eng.python.Failed():
			log.Error("a python worker of this pool exited, taking its models with it: the replica stops", "error", eng.python.Err())
			cancel()
		case <-sctx.Done():
		}
	}()
	err := serveUntilSignal(sctx, s, ln, more)
	if werr := eng.python.Err(); werr != nil {
		return fmt.Errorf("a python worker of this pool replica exited, and its models with it, so the replica stopped (the control loop starts another): %w", werr)
	}
	return err
}

// instances is how many batches may run at once in one model: one per
// Python worker.
func (e poolEngine) instances() int {
	if e.python != nil {
		return e.python.Workers()
	}
	return 0
}

// poolLoader loads a pool's models as a single-model replica loads its
// one: the artifact fetched (through the cache for a content-addressed
// one) and kept until the model is unloaded, then the engine.
func poolLoader(f replicaFlags, eng poolEngine, log *slog.Logger) server.Loader {
	return func(ctx context.Context, req server.LoadRequest) (server.LoadedModel, error) {
		if req.Engine == "python" {
			if err := checkPoolPython(f, req); err != nil {
				return server.LoadedModel{}, err
			}
		}
		ff := f.fetch
		ff.sha256, ff.unpack, ff.entry = req.ModelSHA256, req.ModelUnpack, req.ModelEntry
		art, err := fetchModel(ctx, log.With("model", req.Name), req.Model, ff)
		if err != nil {
			return server.LoadedModel{}, err
		}
		var m engine.Model
		if req.Engine == "python" {
			m, err = eng.python.Load(ctx, req.Name, req.PythonClass, art.path)
		} else {
			m, err = LoadModel(req.Engine, art.path, onnxruntimeLib)
		}
		if err != nil {
			art.close()
			return server.LoadedModel{}, err
		}
		return server.LoadedModel{Model: m, Release: art.close}, nil
	}
}

// checkPoolPython checks a load of a Python model into the pool: it names
// its class, and no interpreter but the one the pool's workers run.
func checkPoolPython(f replicaFlags, req server.LoadRequest) error {
	if strings.TrimSpace(req.PythonClass) == "" {
		return fmt.Errorf(`model %s: engine python needs its class: give parameter python-class ("FILE.py:ClassName" or "module:ClassName", spec.python.class of its deployment)`, req.Name)
	}
	if req.PythonInterpreter == "" || sameProgram(req.PythonInterpreter, f.pythonInterpreter) {
		return nil
	}
	return fmt.Errorf("model %s asks for python interpreter %s, but this pool's workers run %s, shared by all its models: leave spec.python.interpreter empty or set it to %s, or deploy the model on its own",
		req.Name, req.PythonInterpreter, f.pythonInterpreter, f.pythonInterpreter)
}

// sameProgram reports whether a and b name the same program: the same
// path, or the same file once looked up in PATH and links followed.
func sameProgram(a, b string) bool {
	if a == b {
		return true
	}
	resolve := func(p string) (os.FileInfo, error) {
		path, err := exec.LookPath(p)
		if err != nil {
			return nil, err
		}
		return os.Stat(path)
	}
	fa, erra := resolve(a)
	fb, errb := resolve(b)
	return erra == nil && errb == nil && os.SameFile(fa, fb)
}
