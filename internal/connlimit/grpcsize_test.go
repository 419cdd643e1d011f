package connlimit

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// exhaustedHealth answers every check ResourceExhausted, as a handler
// refusing a request over one of its own limits does.
type exhaustedHealth struct {
	grpc_health_v1.UnimplementedHealthServer
}

func (exhaustedHealth) Check(context.Context, *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	return nil, status.Error(codes.ResourceExhausted, "over the handler's own limit")
}

// TestCountSizeRefusals: a request message over MaxRecvMsgSize, refused in
// gRPC's transport, is counted; a handler's own ResourceExhausted, after
// its message arrived, is not.
func TestCountSizeRefusals(t *testing.T) {
	const maxMsg = 64
	var refused atomic.Int64
	s := grpc.NewServer(grpc.MaxRecvMsgSize(maxMsg), CountSizeRefusals(func() { refused.Add(1) }))
	grpc_health_v1.RegisterHealthServer(s, exhaustedHealth{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	client := grpc_health_v1.NewHealthClient(cc)

	tests := []struct {
		name    string
		service string
		want    int64 // refusals counted so far
	}{
		{name: "handler's own ResourceExhausted is not counted", service: "small", want: 0},
		{name: "message over MaxRecvMsgSize is counted", service: strings.Repeat("x", 2*maxMsg), want: 1},
		{name: "and again", service: strings.Repeat("x", 10*maxMsg), want: 2},
		{name: "a small one after it is not", service: "", want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.Check(t.Context(), &grpc_health_v1.HealthCheckRequest{Service: tt.service})
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("Check: %v; want ResourceExhausted", err)
			}
			// The server counts once the call ended, which may be just
			// after the client has its answer.
			deadline := time.Now().Add(2 * time.Second)
			for refused.Load() < tt.want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := refused.Load(); got != tt.want {
				t.Errorf("refusals counted = %d; want %d", got, tt.want)
			}
		})
	}
}
