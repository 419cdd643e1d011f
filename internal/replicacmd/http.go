package replicacmd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/httpproxy"
	"github.com/ebb-ml/ebb/internal/server"
)

// runHTTPReplica fronts a model server (OIP v2, or the OpenAI API with
// --protocol openai), started from f.command with $PORT or running at
// f.upstream, on ln until SIGTERM: then it drains and stops the command.
// When the command exits on its own, the replica exits with its code.
func runHTTPReplica(ctx context.Context, f replicaFlags, ln net.Listener, notify io.WriteCloser, log *slog.Logger) error {
	notified, ready := false, false
	report := func(n server.Notice) {
		if notify == nil || notified {
			return
		}
		notified = true
		if err := server.WriteNotice(notify, n); err != nil {
			log.Warn("could not write the notice on --notify-fd", "error", err)
		}
		notify.Close()
	}
	r, err := httpproxy.New(httpproxy.Options{
		Command:         f.command,
		Upstream:        f.upstream,
		UpstreamModel:   f.upstreamModel,
		Protocol:        f.protocol,
		MaxRequestBytes: f.maxBodyBytes,
		ReplicaID:       f.id,
		Deployment:      f.deployment,
		DrainTimeout:    f.drainTimeout,
		Logger:          log,
		Secret:          f.secret,
		OnReady: func(loadedAt, readyAt time.Time) {
			ready = true
			log.Info("ready", "engine", "http", "command", f.command, "upstream", f.upstream, "protocol", f.protocol)
			report(server.Notice{ModelLoadedAt: loadedAt, ReadyAt: readyAt})
		},
	})
	if err != nil {
		ln.Close()
		report(server.Notice{Error: err.Error()})
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		// After the first signal, restore the default action so a second
		// one kills a replica whose drain hangs.
		<-ctx.Done()
		stop()
	}()
	err = r.Run(ctx, ln)
	var exit *httpproxy.ExitError
	switch {
	case err == nil:
		return nil
	case !ready:
		report(server.Notice{Error: err.Error()})
		return err
	case errors.As(err, &exit) && exit.Code > 0:
		// The command stopped while being served: exit as it did.
		log.Error("model server exited", "error", err, "code", exit.Code)
		os.Exit(exit.Code)
	case errors.As(err, &exit):
		log.Warn("model server exited", "error", err)
		return nil
	}
	return err
}
