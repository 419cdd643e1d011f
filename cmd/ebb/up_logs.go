package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/ebb-ml/ebb/internal/replica/process"
	"github.com/spf13/pflag"
)

// upLogOptions bound the replica log files `ebb up` keeps in DATA-DIR/logs.
type upLogOptions struct {
	logMaxBytes  int64
	logKeep      int
	logRetention time.Duration
}

func addUpLogFlags(f *pflag.FlagSet, o *upLogOptions) {
	f.Int64Var(&o.logMaxBytes, "replica-log-max-bytes", process.DefaultLogMaxBytes, "rotate a replica's log file (DATA-DIR/logs/<replica>.log) once it is this big; 0: never")
	f.IntVar(&o.logKeep, "replica-log-keep", process.DefaultLogKeep, "rotated log files kept per replica (<replica>.log.1 …)")
	f.DurationVar(&o.logRetention, "replica-log-retention", process.DefaultLogRetention, "how long the logs of a replica that no longer runs are kept; 0: forever")
}

// logMaintenanceEvery is how often replica logs are checked for rotation.
const logMaintenanceEvery = 30 * time.Second

// maintainReplicaLogs rotates and prunes replica logs until ctx ends.
func maintainReplicaLogs(ctx context.Context, b *process.Backend, log *slog.Logger) {
	b.RunLogMaintenance(ctx, logMaintenanceEvery, func(err error) { log.Warn("replica logs", "err", err) })
}
