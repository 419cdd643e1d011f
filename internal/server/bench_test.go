package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/server/servertest"
)

// discardWriter is a minimal http.ResponseWriter so the benchmark measures
// the server, not the recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkInferOneRow measures the server's overhead for one 10-feature row
// with a model that does no work.
func BenchmarkInferOneRow(b *testing.B) {
	trivial := &fakeModel{width: 10, predict: func(_ context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
		return []oip.Tensor{{Name: "score", Datatype: oip.FP32, Shape: []int64{1}, Data: []float32{0.25}}}, nil
	}}
	s := New("m", trivial, Options{})
	body := []byte(`{"id":"42","inputs":[{"name":"x","shape":[1,10],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,6.2,2.9,4.3,1.3,0.7,-1.25]}]}`)
	req := httptest.NewRequest("POST", "/v2/models/m/infer", nil)
	w := &discardWriter{h: http.Header{}}
	rd := bytes.NewReader(body)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		clear(w.h)
		s.ServeHTTP(w, req)
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
}

// echoModel returns its one input "x" (FP32, any shape) as output "y".
type echoModel struct{}

func (echoModel) Metadata() oip.ModelMetadata {
	return oip.ModelMetadata{
		Inputs:  []oip.TensorMetadata{{Name: "x", Datatype: oip.FP32, Shape: []int64{-1}}},
		Outputs: []oip.TensorMetadata{{Name: "y", Datatype: oip.FP32, Shape: []int64{-1}}},
	}
}

func (echoModel) Predict(_ context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
	return []oip.Tensor{{Name: "y", Datatype: oip.FP32, Shape: in[0].Shape, Data: in[0].Data}}, nil
}

// BenchmarkTensor1MB sends a 1 MiB FP32 tensor (262,144 values) to a
// replica over loopback TCP and reads the same tensor back, end to end:
// the client encodes the request and decodes the response, the server
// decodes, runs an echo model and encodes. JSON writes every value as text
// both ways; binary tensor data (Triton's extension) sends the raw bytes
// after a small JSON header. Goal (issue 11): binary ≥ 5× faster.
func BenchmarkTensor1MB(b *testing.B) {
	const n = 1 << 18
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i%1000)*0.001 - 0.5 // 3 to 6 digits each, like real features
	}
	in := []oip.Tensor{{Name: "x", Datatype: oip.FP32, Shape: []int64{n}, Data: x}}
	c := servertest.Start(b, New("m", echoModel{}, Options{}))
	for _, binary := range []bool{false, true} {
		name := map[bool]string{false: "JSON", true: "binary"}[binary]
		b.Run(name, func(b *testing.B) {
			var req oip.InferRequest
			if binary {
				req.Parameters = map[string]any{oip.ParamBinaryDataOutput: true}
			}
			b.SetBytes(4 * n)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.PostREST("m", req, in, binary)
				if err != nil {
					b.Fatal(err)
				}
				if got := resp.Outputs[0].Data.([]float32); len(got) != n || got[n-1] != x[n-1] || resp.Binary != binary {
					b.Fatalf("wrong answer: %d values, binary %v", len(got), resp.Binary)
				}
			}
		})
	}
}
