package replicacmd

import (
	"context"
	"log/slog"

	"github.com/ebb-ml/ebb/internal/engine/python"
)

// startPython starts the Python workers that run f's class and a supervisor
// that restarts those that exit. It returns the model, how many batches it
// can run at once (one per worker), and stop, which ends the supervisor and
// stops the workers: call it once the server drained.
func startPython(ctx context.Context, f replicaFlags, log *slog.Logger) (*python.Model, int, func(), error) {
	m, err := python.Load(ctx, python.Options{
		Interpreter: f.pythonInterpreter,
		Class:       f.pythonClass,
		Model:       f.model,
		Workers:     f.pythonWorkers,
		Logger:      log,
	})
	if err != nil {
		return nil, 0, nil, err
	}
	// Not ctx: the workers must outlive the signal that starts the drain.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(rctx)
	}()
	return m, m.Workers(), func() { cancel(); <-done }, nil
}
