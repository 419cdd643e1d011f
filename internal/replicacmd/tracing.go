package replicacmd

import (
	"context"
	"time"

	"github.com/ebb-ml/ebb/internal/telemetry"
	"go.opentelemetry.io/otel/trace"
)

// startTracing sets up the replica's tracing from its --otlp-* and
// --trace-sample-ratio flags, which ebb up and the operator pass on from
// their own: spans of service ebb-replica whose resource names the
// deployment and the replica. It returns the tracer for the server, nil
// when tracing is off, and the function that flushes the spans left (within
// five seconds) once the replica drained.
func startTracing(ctx context.Context, f replicaFlags) (trace.Tracer, func(), error) {
	cfg := f.tracing
	cfg.ServiceName = "ebb-replica"
	cfg.ResourceAttributes = map[string]string{string(telemetry.AttrDeployment): f.deployment}
	if f.id != "" {
		cfg.ResourceAttributes[string(telemetry.AttrReplica)] = f.id
	}
	tp, shutdown, err := telemetry.Setup(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}
	if !telemetry.Enabled(tp) {
		return nil, stop, nil
	}
	return tp.Tracer(telemetry.TracerName), stop, nil
}
