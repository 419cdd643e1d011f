package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/server/servertest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestLimitsCounted: each refusal by a hard limit, REST or gRPC, is
// answered naming the limit and counted in ebb_replica_limited_total under
// its own label, and under no other.
func TestLimitsCounted(t *testing.T) {
	grpcReq := func(shape []int64, n int) *oipgrpc.ModelInferRequest {
		return &oipgrpc.ModelInferRequest{ModelName: "m", Inputs: []*oipgrpc.ModelInferRequest_InferInputTensor{{
			Name: "x", Datatype: "FP32", Shape: shape, Contents: &oipgrpc.InferTensorContents{Fp32Contents: make([]float32, n)}}}}
	}
	tests := []struct {
		name string
		// call makes the request and returns what the answer says.
		call     func(t *testing.T, c *servertest.Client) (code string, msg string)
		wantCode string
		wantMsg  string
		want     string // the label counted; "": none
	}{
		{
			name: "REST body over --max-body-bytes",
			call: func(t *testing.T, c *servertest.Client) (string, string) {
				resp, err := http.Post(c.Base+"/v2/models/m/infer", "application/json", strings.NewReader(strings.Repeat(" ", 300)))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return http.StatusText(resp.StatusCode), string(b)
			},
			wantCode: http.StatusText(http.StatusRequestEntityTooLarge), wantMsg: "limit of 256 bytes (--max-body-bytes)", want: limitBodyBytes,
		},
		{
			name: "gRPC message over --max-body-bytes",
			call: func(t *testing.T, c *servertest.Client) (string, string) {
				_, err := c.GRPC.ModelInfer(t.Context(), grpcReq([]int64{1, 3}, 100))
				return status.Code(err).String(), status.Convert(err).Message()
			},
			wantCode: codes.ResourceExhausted.String(), wantMsg: "larger than max", want: limitGRPCMessageSize,
		},
		{
			name: "gRPC elements over --max-request-elements",
			call: func(t *testing.T, c *servertest.Client) (string, string) {
				_, err := c.GRPC.ModelInfer(t.Context(), grpcReq([]int64{2, 3}, 6))
				return status.Code(err).String(), status.Convert(err).Message()
			},
			wantCode: codes.ResourceExhausted.String(), wantMsg: "more than the limit of 4", want: limitElements,
		},
		{
			name: "gRPC within the limits",
			call: func(t *testing.T, c *servertest.Client) (string, string) {
				_, err := c.GRPC.ModelInfer(t.Context(), grpcReq([]int64{1, 3}, 3))
				return status.Code(err).String(), ""
			},
			wantCode: codes.OK.String(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg, reg)
			c := servertest.Start(t, New("m", &fakeModel{width: 3}, Options{MaxRequestBytes: 256, MaxRequestElements: 4, Metrics: m}))
			code, msg := tt.call(t, c)
			if code != tt.wantCode || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("answer %s %q; want %s containing %q", code, msg, tt.wantCode, tt.wantMsg)
			}
			for _, l := range []string{limitBodyBytes, limitBodyTimeout, limitElements, limitGRPCMessageSize} {
				want := 0.0
				if l == tt.want {
					want = 1
				}
				// gRPC's refusal is counted once the call ended on the
				// server, which may be just after the client has its answer.
				got := testutil.ToFloat64(m.limited.WithLabelValues(l))
				for deadline := time.Now().Add(2 * time.Second); got < want && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
					got = testutil.ToFloat64(m.limited.WithLabelValues(l))
				}
				if got != want {
					t.Errorf("limited{%s} = %v; want %v", l, got, want)
				}
			}
		})
	}
}
