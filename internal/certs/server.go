package certs

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
)

// Server is a server's TLS as its Files give it. A nil *Server is TLS off:
// its listeners serve plain TCP, so a server uses it the same either way.
type Server struct {
	r *Reloader
}

// Server returns the server TLS of the files: nil without --tls-cert and
// --tls-key. Errors are Load's.
func (o Files) Server(log *slog.Logger) (*Server, error) {
	r, err := o.Load(log)
	if err != nil || r == nil {
		return nil, err
	}
	return &Server{r: r}, nil
}

// Run reloads the files until ctx ends; with TLS off it returns at once.
func (s *Server) Run(ctx context.Context) {
	if s != nil {
		_ = s.r.Run(ctx)
	}
}

// Scheme is "https" with TLS, else "http".
func (s *Server) Scheme() string {
	if s == nil {
		return "http"
	}
	return "https"
}

// HTTPListener returns ln serving TLS to an HTTP/1.1 server (a
// gateway.Server, an admin API's http.Server). It offers HTTP/1.1 only,
// as the plain listener serves: graceful keep-alive drain and body
// deadlines work per connection. With TLS off it returns ln.
func (s *Server) HTTPListener(ln net.Listener) net.Listener {
	if s == nil {
		return ln
	}
	return tls.NewListener(ln, s.r.TLSConfig("http/1.1"))
}

// GRPCConfig returns the configuration of a gRPC listener (ALPN h2): nil
// with TLS off.
func (s *Server) GRPCConfig() *tls.Config {
	if s == nil {
		return nil
	}
	return s.r.TLSConfig("h2")
}
