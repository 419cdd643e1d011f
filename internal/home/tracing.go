package home

import (
	"context"
	"log/slog"
	"time"

	"github.com/ebb-ml/ebb/internal/telemetry"
	"go.opentelemetry.io/otel/trace"
)

// Tracing is a long-running command's tracing, set up by StartTracing from
// its --otlp-endpoint, --otlp-protocol, --otlp-ca-file and
// --trace-sample-ratio flags (telemetry.Config.AddFlags), which ebb up,
// the cluster gateway and the operator all take.
type Tracing struct {
	// Tracer is for the gateway (gateway.Options.Tracer) and the
	// activator (activator.Options.Tracer); nil when tracing is off.
	Tracer trace.Tracer
	// ColdStarts records cold starts for the control loop
	// (control.Options.ColdStarts) and tells the activator which one
	// released a hold; nil when tracing is off.
	ColdStarts *telemetry.ColdStarts

	cfg      telemetry.Config
	shutdown func(context.Context) error
}

// StartTracing sets up tracing from cfg for service (its service.name:
// "ebb", "ebb-gateway", "ebb-operator"), and logs where spans go.
func StartTracing(ctx context.Context, cfg telemetry.Config, service string, log *slog.Logger) (*Tracing, error) {
	cfg.ServiceName = service
	tp, shutdown, err := telemetry.Setup(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t := &Tracing{cfg: cfg, shutdown: shutdown}
	if telemetry.Enabled(tp) {
		t.Tracer = tp.Tracer(telemetry.TracerName)
		t.ColdStarts = telemetry.NewColdStarts(tp)
		args := cfg.Args(false)
		log.Info("tracing on", "endpoint", args[1], "protocol", args[3], "sampleRatio", cfg.SampleRatio)
	}
	return t, nil
}

// ReplicaArgs are the flags that give the replicas this command starts the
// same tracing (none when off). caFile passes --otlp-ca-file too: ebb up's
// replica processes read the same file; a replica pod does not have it.
func (t *Tracing) ReplicaArgs(caFile bool) []string {
	if t.Tracer == nil {
		return nil
	}
	return t.cfg.Args(caFile)
}

// Stop flushes the spans not yet exported, within five seconds, and stops
// tracing.
func (t *Tracing) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.shutdown(ctx)
}
