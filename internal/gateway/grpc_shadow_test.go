package gateway

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/ebb-ml/ebb/internal/traffic"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// inferFunc is a gRPC replica's ModelInfer.
type inferFunc func(context.Context, *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error)

type inferServer struct {
	oipgrpc.UnimplementedGRPCInferenceServiceServer
	infer inferFunc
}

func (s inferServer) ModelInfer(ctx context.Context, req *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
	return s.infer(ctx, req)
}

// fakeGRPCReplica serves infer over gRPC on loopback as replica id.
func fakeGRPCReplica(t testing.TB, id string, infer inferFunc) *balance.Endpoint {
	t.Helper()
	ln := listenLoopback(t)
	s := grpc.NewServer()
	oipgrpc.RegisterGRPCInferenceServiceServer(s, inferServer{infer: infer})
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return balance.NewEndpoint(id, "http://"+ln.Addr().String())
}

// answeringGRPC answers every call with outputs.
func answeringGRPC(t testing.TB, outputs []oip.Tensor) inferFunc {
	t.Helper()
	resp := &oipgrpc.ModelInferResponse{ModelName: "m"}
	if err := oipgrpc.SetOutputs(resp, outputs, false); err != nil {
		t.Fatal(err)
	}
	return func(context.Context, *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
		return resp, nil
	}
}

// grpcShadowFixture is shadowFixture's gRPC twin: deployment m routed to
// primaries, with a shadow track m.shadow of shadows, served by a GRPC
// gateway.
type grpcShadowFixture struct {
	tab            *routing.Table
	sh             *routing.Shadow
	rec, shadowRec *stats.Recorder
	gw             *GRPC
	client         oipgrpc.GRPCInferenceServiceClient
}

func newGRPCShadowFixture(t *testing.T, primaries, shadows []*balance.Endpoint, sh routing.Shadow) *grpcShadowFixture {
	t.Helper()
	sh.Key, sh.Tally, sh.InFlight = "m.shadow", &traffic.Tally{}, new(atomic.Int32)
	if sh.Tolerance == (traffic.Tolerance{}) {
		sh.Tolerance = traffic.DefaultTolerance
	}
	f := &grpcShadowFixture{tab: &routing.Table{}, sh: &sh, rec: &stats.Recorder{}, shadowRec: &stats.Recorder{}}
	f.tab.Publish(routing.Route{Deployment: "m", Endpoints: primaries, Stats: f.rec, Shadow: f.sh})
	f.tab.Publish(routing.Route{Deployment: "m.shadow", Endpoints: shadows, Stats: f.shadowRec})
	act := activator.New(f.tab, &publisher{tab: f.tab, rec: f.rec}, activator.Options{Timeout: 2 * time.Second})
	f.gw = NewGRPC(f.tab, act, Options{HoldTimeout: 2 * time.Second})
	ln := listenLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.gw.Serve(ctx, ln, 5*time.Second) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		<-served
	})
	f.client = oipgrpc.NewGRPCInferenceServiceClient(cc)
	return f
}

// infer calls ModelInfer on m and fails the test unless the answer is the
// primary's (the echoed input).
func (f *grpcShadowFixture) infer(t *testing.T) {
	t.Helper()
	resp, err := f.client.ModelInfer(context.Background(), inferRequest(t, "m"))
	if err != nil {
		t.Errorf("ModelInfer: %v", err)
		return
	}
	if out, err := oipgrpc.OutputTensors(resp); err != nil || len(out) != 1 || !traffic.Compare(echoInput, out, traffic.DefaultTolerance).Agree {
		t.Errorf("ModelInfer = %v, %v; want the primary's echo", out, err)
	}
}

// settle waits until the shadow judged n mirrors and has none in flight.
func (f *grpcShadowFixture) settle(t *testing.T, n int64) traffic.Summary {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := f.sh.Tally.Summary()
		if s.Compared+s.ShadowErrors >= n && f.sh.InFlight.Load() == 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("judged %d of %d mirrors, %d in flight: %+v", s.Compared+s.ShadowErrors, n, f.sh.InFlight.Load(), s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestShadowGRPCCompares(t *testing.T) {
	changed := []oip.Tensor{{Name: "input", Datatype: oip.FP32, Shape: []int64{1, 2}, Data: []float32{1, 2.5}}}
	tests := []struct {
		name                     string
		primaries                int // echo replicas
		shadow                   func(t *testing.T) *balance.Endpoint
		wantCompared, wantAgreed int64
		wantErrors, wantNoise    int64
		wantErrorIn, wantSample  string
	}{
		{name: "identical replica", primaries: 1, shadow: func(t *testing.T) *balance.Endpoint { return grpcReplica(t, "s1") },
			wantCompared: 4, wantAgreed: 4},
		{name: "identical, with a noise floor", primaries: 2, shadow: func(t *testing.T) *balance.Endpoint { return grpcReplica(t, "s1") },
			wantCompared: 4, wantAgreed: 4, wantNoise: 4},
		{name: "changed numbers", primaries: 1, shadow: func(t *testing.T) *balance.Endpoint { return fakeGRPCReplica(t, "s1", answeringGRPC(t, changed)) },
			wantCompared: 4, wantSample: `output "input" differs at element 1: primary 2, shadow 2.5`},
		{name: "shadow error", primaries: 1, wantErrors: 4, wantErrorIn: "shadow replica s1 answered Internal: boom",
			shadow: func(t *testing.T) *balance.Endpoint {
				return fakeGRPCReplica(t, "s1", func(context.Context, *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
					return nil, status.Error(codes.Internal, "boom")
				})
			}},
		{name: "shadow gone", primaries: 1, shadow: func(t *testing.T) *balance.Endpoint { return deadEndpoint(t, "s1") },
			wantErrors: 4, wantErrorIn: `shadow "m.shadow": 1 replicas failed to answer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var primaries []*balance.Endpoint
			for i := range tt.primaries {
				primaries = append(primaries, grpcReplica(t, "p"+strconv.Itoa(i+1)))
			}
			f := newGRPCShadowFixture(t, primaries, []*balance.Endpoint{tt.shadow(t)}, routing.Shadow{Percent: 100, MaxConcurrency: 4})
			for i := range 4 {
				f.infer(t)
				f.settle(t, int64(i+1)) // one at a time: nothing is dropped
			}
			s := f.settle(t, 4)
			if s.Compared != tt.wantCompared || s.Agreed != tt.wantAgreed || s.ShadowErrors != tt.wantErrors || s.Dropped != 0 {
				t.Fatalf("compared %d agreed %d errors %d dropped %d; want %d %d %d 0 (%+v)", s.Compared, s.Agreed, s.ShadowErrors, s.Dropped, tt.wantCompared, tt.wantAgreed, tt.wantErrors, s)
			}
			if tt.wantAgreed > 0 && s.Agreement != 1 {
				t.Errorf("agreement %v; want 1", s.Agreement)
			}
			if s.Compared > 0 && s.LatencyRatio <= 0 {
				t.Errorf("latency ratio %v; want > 0", s.LatencyRatio)
			}
			if s.NoiseCompared != tt.wantNoise || (tt.wantNoise > 0 && s.NoiseAgreement != 1) {
				t.Errorf("noise compared %d at %v; want %d at 1", s.NoiseCompared, s.NoiseAgreement, tt.wantNoise)
			}
			if !strings.Contains(s.LastShadowError, tt.wantErrorIn) {
				t.Errorf("last shadow error %q; want it to contain %q", s.LastShadowError, tt.wantErrorIn)
			}
			if tt.wantSample != "" {
				if len(s.Samples) == 0 {
					t.Fatal("no sample disagreement kept")
				}
				sm := s.Samples[0]
				if !strings.HasPrefix(sm.Diff.Reason, tt.wantSample) || !strings.Contains(sm.Input, `"data":[1,2]`) || !strings.Contains(sm.Primary, `"data":[1,2]`) || !strings.Contains(sm.Shadow, `"data":[1,2.5]`) {
					t.Errorf("sample %+v; want the input, both outputs in JSON and the reason %q", sm, tt.wantSample)
				}
			}
			// The mirrors were demand on the shadow track, and ended.
			if got := f.shadowRec.Sample(time.Now()).Requests; got != 4 {
				t.Errorf("the shadow track saw %d requests; want 4", got)
			}
			if n := f.shadowRec.InFlight() + f.rec.InFlight(); n != 0 {
				t.Errorf("%d requests still in flight", n)
			}
		})
	}
}

// TestShadowGRPCAsksNoVersion: a call for the primary's version is
// mirrored without it, since the shadow serves its own.
func TestShadowGRPCAsksNoVersion(t *testing.T) {
	var asked atomic.Value
	shadow := fakeGRPCReplica(t, "s1", func(ctx context.Context, req *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
		asked.Store(req.GetModelName() + ":" + req.GetModelVersion())
		return answeringGRPC(t, echoInput)(ctx, req)
	})
	primary := fakeGRPCReplica(t, "p1", answeringGRPC(t, echoInput))
	primary.Version = "3"
	f := newGRPCShadowFixture(t, []*balance.Endpoint{primary}, []*balance.Endpoint{shadow}, routing.Shadow{Percent: 100, MaxConcurrency: 4})
	f.tab.Publish(routing.Route{Deployment: "m", Version: "3", Endpoints: []*balance.Endpoint{primary}, Stats: f.rec, Shadow: f.sh})
	req := inferRequest(t, "m")
	req.ModelVersion = "3"
	if _, err := f.client.ModelInfer(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if s := f.settle(t, 1); s.Compared != 1 || s.Agreed != 1 {
		t.Errorf("%+v; want one compared, agreeing", s)
	}
	if got := asked.Load(); got != "m:" {
		t.Errorf("the shadow was asked for %v; want m with no version", got)
	}
}

func TestShadowGRPCDropsBeyondMaxConcurrency(t *testing.T) {
	var got atomic.Int32
	release := make(chan struct{})
	shadow := fakeGRPCReplica(t, "s1", func(ctx context.Context, req *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
		got.Add(1)
		<-release
		return answeringGRPC(t, echoInput)(ctx, req)
	})
	f := newGRPCShadowFixture(t, []*balance.Endpoint{grpcReplica(t, "p1")}, []*balance.Endpoint{shadow}, routing.Shadow{Percent: 100, MaxConcurrency: 2})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	for range 2 {
		f.infer(t) // each holds a slot until released
	}
	for range 5 {
		start := time.Now()
		f.infer(t)
		if d := time.Since(start); d > time.Second {
			t.Errorf("the client waited %v with the shadow's slots full", d)
		}
	}
	if s := f.sh.Tally.Summary(); s.Dropped != 5 {
		t.Errorf("dropped %d; want 5", s.Dropped)
	}
	close(release)
	released = true
	s := f.settle(t, 2)
	if s.Compared != 2 || s.Agreed != 2 || got.Load() != 2 {
		t.Errorf("compared %d agreed %d, the shadow got %d; want 2 2 2", s.Compared, s.Agreed, got.Load())
	}
}

func TestShadowGRPCCloseEndsMirrors(t *testing.T) {
	var got atomic.Int32
	release := make(chan struct{})
	defer close(release)
	shadow := fakeGRPCReplica(t, "s1", func(ctx context.Context, req *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
		got.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return answeringGRPC(t, echoInput)(ctx, req)
	})
	f := newGRPCShadowFixture(t, []*balance.Endpoint{grpcReplica(t, "p1")}, []*balance.Endpoint{shadow}, routing.Shadow{Percent: 100, MaxConcurrency: 2})
	f.infer(t)
	for got.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	f.gw.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a mirror in flight", d)
	}
	if n := f.sh.InFlight.Load(); n != 0 {
		t.Errorf("%d mirrors in flight after Close", n)
	}
	if s := f.sh.Tally.Summary(); s.Compared+s.ShadowErrors+s.Dropped != 0 {
		t.Errorf("a closing gateway judged %+v; want nothing", s)
	}
}
