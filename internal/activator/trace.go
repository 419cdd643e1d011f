package activator

import (
	"context"
	"errors"
	"time"

	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// ColdStarts tells which cold start of a deployment released a hold that
// began at t; *telemetry.ColdStarts is one (the control loop records them
// in the same process: ebb up).
type ColdStarts interface {
	Since(deployment string, t time.Time) (trace.SpanContext, bool)
}

// holdTraced is hold with a telemetry.SpanHold around it, the child of
// the request's span in ctx, when that span is sampled: its deployment,
// the queue it joined, how it ended (telemetry.AttrHoldOutcome) and, once
// released, a link to the cold start that released it when ColdStarts
// knows one. The request's span gets telemetry.AttrColdStart. A request
// that is not traced is held as hold holds it.
func (a *Activator) holdTraced(ctx context.Context, r *routing.Route, deployment, tenant string) (*routing.Route, error) {
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsSampled() {
		return a.hold(ctx, r, deployment, tenant, nil)
	}
	parent.SetAttributes(telemetry.AttrColdStart.Bool(true))
	began := time.Now()
	_, span := a.opts.Tracer.Start(ctx, telemetry.SpanHold, trace.WithTimestamp(began),
		trace.WithAttributes(telemetry.AttrDeployment.String(deployment)))
	if tenant != "" {
		span.SetAttributes(telemetry.AttrTenant.String(tenant))
	}
	depth := -1
	rt, err := a.hold(ctx, r, deployment, tenant, &depth)
	if depth >= 0 {
		span.SetAttributes(telemetry.AttrHoldQueueDepth.Int(depth))
	}
	span.SetAttributes(telemetry.AttrHoldOutcome.String(holdOutcome(ctx, err)))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	} else if a.opts.ColdStarts != nil {
		if sc, ok := a.opts.ColdStarts.Since(deployment, began); ok {
			span.AddLink(trace.Link{SpanContext: sc})
		}
	}
	span.End()
	return rt, err
}

// holdOutcome names how a hold ended, for telemetry.AttrHoldOutcome.
func holdOutcome(ctx context.Context, err error) string {
	var failed *FailedError
	switch {
	case err == nil:
		return "released"
	case ctx.Err() != nil:
		return "canceled"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrQueueFull), errors.Is(err, ErrTenantQueueFull):
		return "queue_full"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrScaledToZero):
		return "scaled_to_zero"
	case errors.As(err, &failed):
		return "failed"
	}
	return "failed"
}
