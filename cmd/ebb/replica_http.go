package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"

	"github.com/ebb-ml/ebb/internal/server"
)

// runHTTPReplica fronts an OIP v2 server (started from f.command, or at
// f.upstream) on ln. Placeholder until engine http lands.
func runHTTPReplica(ctx context.Context, f replicaFlags, ln net.Listener, notify io.WriteCloser, log *slog.Logger) error {
	ln.Close()
	err := errors.New("engine http is not available in this build yet")
	if notify != nil {
		_ = server.WriteNotice(notify, server.Notice{Error: err.Error()})
		notify.Close()
	}
	return err
}
