package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/routing"
)

// BenchmarkForward measures the gateway's work for one small infer request
// forwarded to a real replica server over loopback (the replica's own cost
// included; compare against BenchmarkDirect).
func BenchmarkForward(b *testing.B) {
	t := &testing.T{}
	f := newFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(t, "r1")}})
	defer f.srv.Close()
	g := f.srv.Config.Handler
	req := httptest.NewRequest("POST", "/v2/models/m/infer", nil)
	req.Header.Set("Content-Type", "application/json")
	body := []byte(body)
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		req.Body = io.NopCloser(bytes.NewReader(body))
		clear(w.h)
		g.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

type discard struct {
	h      http.Header
	status int
}

func (w *discard) Header() http.Header         { return w.h }
func (w *discard) WriteHeader(status int)      { w.status = status }
func (w *discard) Write(p []byte) (int, error) { return len(p), nil }
