package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ebb-ml/ebb/internal/oip"
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
