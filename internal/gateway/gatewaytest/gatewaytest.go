// Package gatewaytest serves a gateway.Gateway for tests of other packages,
// as httptest serves an http.Handler.
package gatewaytest

import (
	"net"
	"testing"

	"github.com/ebb-ml/ebb/internal/gateway"
)

// Serve runs g behind its front server (gateway.Server, with no fallback)
// on a loopback listener until the test ends, and returns its base URL
// ("http://127.0.0.1:PORT").
func Serve(t testing.TB, g *gateway.Gateway) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := gateway.NewServer(g, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Serve(g.Listener(ln)); err != nil {
			t.Errorf("gateway server: %v", err)
		}
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}
