package replicacmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/onnx"
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
// Engines trees and onnx run in pool mode. Engine python does not: its
// worker protocol loads one class with one model path when the worker
// starts and has no message to load another, so each model would need
// worker processes of its own, which is what a pool is meant to avoid.
// Engines http (one upstream server) and echo are single-model too.

func addPoolFlags(fl *pflag.FlagSet, f *replicaFlags) {
	fl.BoolVar(&f.pool, "pool", false, "host many models of --engine, loaded on demand by POST /v2/repository/models/{m}/load (engines trees and onnx); --deployment names the pool and --model is not given")
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

// poolEngines are the engines that can host several models in one process.
var poolEngines = map[string]bool{"trees": true, "onnx": true}

// validatePool checks the pool flags.
func (f replicaFlags) validatePool() error {
	if !f.pool {
		if f.memoryBudget != "" {
			return errors.New("--memory-budget needs --pool: a replica of one model has no budget to keep")
		}
		return nil
	}
	switch {
	case f.engine == "python":
		return errors.New("--pool does not run engine python: its worker loads one class with one model when it starts, and cannot load another; deploy each Python model on its own, or give its class several models behind one artifact")
	case !poolEngines[f.engine]:
		return fmt.Errorf("--pool runs engines trees and onnx, not %s", f.engine)
	case f.model != "":
		return errors.New("--pool takes no --model: models are loaded by POST /v2/repository/models/{m}/load")
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

// preparePool readies the pool's engine before the first load: ONNX
// Runtime loaded and its first session made, so that a missing library
// stops the replica at start and the runtime's own memory is not counted
// as the first model's.
func preparePool(f replicaFlags) error {
	if f.engine == "onnx" {
		return onnx.Init(onnxruntimeLib)
	}
	return nil
}

// runPool serves a pool of models, none loaded at first, until a signal.
// tracer, when set, traces their infer requests as a single model's
// replica does (each model's server takes it).
func runPool(ctx context.Context, f replicaFlags, tracer trace.Tracer, ln net.Listener, more []net.Listener, notify io.WriteCloser, log *slog.Logger) error {
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
		Batching: server.BatchingPolicy(f.batchMaxSize, f.batchPreferredSizes, f.batchMaxQueueDelay),
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
	}, server.PoolOptions{Budget: budget, Engine: f.engine, Load: poolLoader(f, log), ServingBytes: server.DefaultServingBytes})
	return serveUntilSignal(ctx, s, ln, more)
}

// poolLoader loads a pool's models as a single-model replica loads its
// one: the artifact fetched (through the cache for a content-addressed
// one) and kept until the model is unloaded, then the engine.
func poolLoader(f replicaFlags, log *slog.Logger) server.Loader {
	return func(ctx context.Context, req server.LoadRequest) (server.LoadedModel, error) {
		ff := f.fetch
		ff.sha256, ff.unpack, ff.entry = req.ModelSHA256, req.ModelUnpack, req.ModelEntry
		art, err := fetchModel(ctx, log.With("model", req.Name), req.Model, ff)
		if err != nil {
			return server.LoadedModel{}, err
		}
		m, err := LoadModel(req.Engine, art.path, onnxruntimeLib)
		if err != nil {
			art.close()
			return server.LoadedModel{}, err
		}
		return server.LoadedModel{Model: m, Release: art.close}, nil
	}
}
