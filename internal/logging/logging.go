// Package logging sets up the log of ebb's long-running commands (ebb up,
// the operator, the gateway): JSON lines when stderr is not a terminal (a
// pod's log, a file), text on a terminal. A record logged with the context
// of a traced request carries its trace_id and span_id.
package logging

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/ebb-ml/ebb/internal/telemetry"
)

// New returns a logger to stderr at level (debug, info, warn or error,
// as --log-level gives it) and makes it slog's default.
func New(level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewJSONHandler(os.Stderr, opts)
	if isTerminal(os.Stderr) {
		h = slog.NewTextHandler(os.Stderr, opts)
	}
	l := slog.New(telemetry.NewLogHandler(h)) // trace_id and span_id of a traced request's records
	slog.SetDefault(l)
	return l, nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
