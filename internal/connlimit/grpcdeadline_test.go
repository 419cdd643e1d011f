package connlimit

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ebb-ml/ebb/internal/oipgrpc"
)

// slowInfer answers ModelInfer after a pause with a large output, and
// reports how each call's context ended.
type slowInfer struct {
	oipgrpc.UnimplementedGRPCInferenceServiceServer
	pause time.Duration
	size  int
	ended chan error // context.Cause of each call, once the call is over
}

func (s *slowInfer) ModelInfer(ctx context.Context, _ *oipgrpc.ModelInferRequest) (*oipgrpc.ModelInferResponse, error) {
	go func() {
		<-ctx.Done()
		s.ended <- context.Cause(ctx)
	}()
	time.Sleep(s.pause)
	return &oipgrpc.ModelInferResponse{RawOutputContents: [][]byte{make([]byte, s.size)}}, nil
}

func (s *slowInfer) ServerLive(context.Context, *oipgrpc.ServerLiveRequest) (*oipgrpc.ServerLiveResponse, error) {
	return &oipgrpc.ServerLiveResponse{Live: true}, nil
}

// TestGRPCMessageDeadlines: a client that opens a call, unary or
// streaming, and never sends its request message has the call ended after
// BodyTimeout and counted; a handler slower than that, with a client that
// sends promptly, is not cut.
func TestGRPCMessageDeadlines(t *testing.T) {
	const bound = 300 * time.Millisecond
	var timeouts atomic.Int64
	l := Limits{BodyTimeout: bound, OnMessageTimeout: func() { timeouts.Add(1) }}
	svc := &slowInfer{size: 8 << 20, ended: make(chan error, 16)}
	s := grpc.NewServer(l.GRPCOptions()...)
	oipgrpc.RegisterGRPCInferenceServiceServer(s, svc)
	grpc_health_v1.RegisterHealthServer(s, exhaustedHealth{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
		// A fixed window (no BDP growth): an unread answer stops at it.
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("slow handler, prompt client: served", func(t *testing.T) {
		svc.pause = 3 * bound
		defer func() { svc.pause = 0 }()
		resp, err := oipgrpc.NewGRPCInferenceServiceClient(cc).ModelInfer(ctx, &oipgrpc.ModelInferRequest{ModelName: "m"})
		if err != nil {
			t.Fatalf("ModelInfer with a handler slower than the bounds: %v", err)
		}
		if len(resp.RawOutputContents) != 1 || len(resp.RawOutputContents[0]) != svc.size {
			t.Fatalf("response has %d outputs; want one of %d bytes", len(resp.RawOutputContents), svc.size)
		}
		if err := <-svc.ended; err == ErrGRPCReadTimeout {
			t.Fatalf("served call ended by %v", err)
		}
		if n := timeouts.Load(); n != 0 {
			t.Fatalf("timeouts counted = %d; want 0", n)
		}
	})

	t.Run("request message never sent: ended after the body timeout", func(t *testing.T) {
		// A unary method on a raw stream: headers go out, the message never.
		desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}
		st, err := cc.NewStream(ctx, desc, "/grpc.health.v1.Health/Check")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var resp grpc_health_v1.HealthCheckResponse
		err = st.RecvMsg(&resp)
		if err == nil {
			t.Fatal("call without a request message answered")
		}
		if took := time.Since(start); took > 10*bound {
			t.Fatalf("call ended after %v; want about %v", took, bound)
		}
		if n := timeouts.Load(); n != 1 {
			t.Fatalf("timeouts counted = %d; want 1 (call ended with %v)", n, err)
		}
	})

	t.Run("streaming call's message never sent: ended after the body timeout", func(t *testing.T) {
		// Health.Watch reads its request inside the handler (RecvMsg).
		st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/grpc.health.v1.Health/Watch")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var resp grpc_health_v1.HealthCheckResponse
		if err := st.RecvMsg(&resp); err == nil {
			t.Fatal("stream without a request message answered")
		}
		if took := time.Since(start); took > 10*bound {
			t.Fatalf("stream ended after %v; want about %v", took, bound)
		}
		if n := timeouts.Load(); n != 2 {
			t.Fatalf("timeouts counted = %d; want 2", n)
		}
	})

	t.Run("unread response holds no handler", func(t *testing.T) {
		svc.pause = 0
		st, err := cc.NewStream(ctx, &grpc.StreamDesc{}, "/inference.GRPCInferenceService/ModelInfer")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SendMsg(&oipgrpc.ModelInferRequest{ModelName: "m"}); err != nil {
			t.Fatal(err)
		}
		st.CloseSend()
		// Read nothing: gRPC queues the 8 MiB answer and ends the call.
		select {
		case err := <-svc.ended:
			if err == ErrGRPCReadTimeout {
				t.Fatalf("call ended by %v", err)
			}
		case <-time.After(10 * bound):
			t.Fatal("handler's call still open with its response unread")
		}
	})

	t.Run("server still serves", func(t *testing.T) {
		if _, err := oipgrpc.NewGRPCInferenceServiceClient(cc).ServerLive(ctx, &oipgrpc.ServerLiveRequest{}); err != nil {
			t.Fatal(err)
		}
	})
}
