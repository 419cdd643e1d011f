package activator

import (
	"context"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/telemetry"
	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// routeOnWake routes its deployment on the first wake, after recording a
// cold start in coldStarts, as the control loop does.
type routeOnWake struct {
	tab        *routing.Table
	coldStarts *telemetry.ColdStarts
	woken      bool
}

func (w *routeOnWake) Wake(d string) {
	if w.woken {
		return
	}
	w.woken = true
	go func() {
		time.Sleep(10 * time.Millisecond)
		now := time.Now()
		w.coldStarts.Record(d, now.Add(-5*time.Millisecond), []telemetry.Phase{{Name: telemetry.SpanPhaseReady, End: now}})
		w.tab.Publish(ready(d))
	}()
}

// TestHoldSpan checks the SpanHold of a held request: recorded only under
// a sampled request span, with the deployment, the queue it joined and its
// outcome, linked to the cold start that released it; the request span
// gets ebb.cold_start.
func TestHoldSpan(t *testing.T) {
	tests := []struct {
		name      string
		route     bool // a wake routes the deployment
		sampled   bool
		wantHold  map[attribute.Key]attribute.Value // nil: no hold span
		wantLink  bool
		wantError bool
	}{
		{name: "released", route: true, sampled: true, wantLink: true, wantHold: map[attribute.Key]attribute.Value{
			telemetry.AttrDeployment: attribute.StringValue("m"), telemetry.AttrTenant: attribute.StringValue("acme"),
			telemetry.AttrHoldQueueDepth: attribute.IntValue(0), telemetry.AttrHoldOutcome: attribute.StringValue("released")}},
		{name: "timeout", sampled: true, wantError: true, wantHold: map[attribute.Key]attribute.Value{
			telemetry.AttrDeployment: attribute.StringValue("m"), telemetry.AttrTenant: attribute.StringValue("acme"),
			telemetry.AttrHoldQueueDepth: attribute.IntValue(0), telemetry.AttrHoldOutcome: attribute.StringValue("timeout")}},
		{name: "not sampled", route: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			sampler := sdktrace.NeverSample()
			if tt.sampled {
				sampler = sdktrace.AlwaysSample()
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSpanProcessor(rec))
			tracer := tp.Tracer(telemetry.TracerName)
			coldStarts := telemetry.NewColdStarts(tp)
			var tab routing.Table
			tab.Publish(routing.Route{Deployment: "m"})
			var waker Waker = newWakes()
			if tt.route {
				waker = &routeOnWake{tab: &tab, coldStarts: coldStarts}
			}
			a := New(&tab, waker, Options{Timeout: 50 * time.Millisecond, Tracer: tracer, ColdStarts: coldStarts})
			ctx, req := tracer.Start(context.Background(), telemetry.SpanRequest)
			_, err := a.WaitTenant(ctx, "m", "acme")
			req.End()
			if (err != nil) != tt.wantError {
				t.Fatalf("WaitTenant: %v", err)
			}
			var hold, request, cold sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				switch s.Name() {
				case telemetry.SpanHold:
					hold = s
				case telemetry.SpanRequest:
					request = s
				case telemetry.SpanColdStart:
					cold = s
				}
			}
			if tt.wantHold == nil {
				if hold != nil {
					t.Fatalf("a hold span %v for a request not sampled", hold.Attributes())
				}
				return
			}
			if hold == nil {
				t.Fatal("no hold span")
			}
			if hold.Parent().SpanID() != request.SpanContext().SpanID() {
				t.Errorf("the hold's parent is %s; want the request %s", hold.Parent().SpanID(), request.SpanContext().SpanID())
			}
			got := map[attribute.Key]attribute.Value{}
			for _, kv := range hold.Attributes() {
				got[kv.Key] = kv.Value
			}
			if diff := cmp.Diff(tt.wantHold, got, cmp.AllowUnexported(attribute.Value{})); diff != "" {
				t.Errorf("hold attributes (-want +got):\n%s", diff)
			}
			var links []trace.SpanContext
			for _, l := range hold.Links() {
				links = append(links, l.SpanContext)
			}
			switch {
			case tt.wantLink && (cold == nil || len(links) != 1 || !links[0].Equal(cold.SpanContext())):
				t.Errorf("the hold links to %v; want the cold start", links)
			case !tt.wantLink && len(links) > 0:
				t.Errorf("the hold links to %v; want nothing", links)
			}
			coldAttr := false
			for _, kv := range request.Attributes() {
				if kv.Key == telemetry.AttrColdStart {
					coldAttr = kv.Value.AsBool()
				}
			}
			if !coldAttr {
				t.Errorf("the request span has no %s=true: %v", telemetry.AttrColdStart, request.Attributes())
			}
		})
	}
}
