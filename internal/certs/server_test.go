package certs_test

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ebb-ml/ebb/internal/certs"
	"github.com/ebb-ml/ebb/internal/certs/certstest"
)

func TestServerOff(t *testing.T) {
	s, err := certs.Files{}.Server(quiet())
	if err != nil || s != nil {
		t.Fatalf("Server without files = %v, %v; want nil, nil", s, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := s.HTTPListener(ln); got != ln || s.Scheme() != "http" || s.GRPCConfig() != nil {
		t.Errorf("TLS off: HTTPListener %v (want the plain listener), scheme %s, gRPC config %v", got, s.Scheme(), s.GRPCConfig())
	}
	if _, err := (certs.Files{ClientCAFile: "ca.pem"}).Server(quiet()); err == nil {
		t.Error("Server with a client CA and no certificate: no error")
	}
}

// TestServerOn checks that an HTTP listener serves the files' certificate
// offering HTTP/1.1 only, even to a client that prefers h2, and that the
// gRPC configuration offers h2.
func TestServerOn(t *testing.T) {
	ca := certstest.NewCA(t, "ca")
	pair := ca.Server(t, "server", "127.0.0.1")
	dir := t.TempDir()
	files := certs.Files{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	for path, b := range map[string][]byte{files.CertFile: pair.CertPEM, files.KeyFile: pair.KeyPEM} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := files.Server(quiet())
	if err != nil || s == nil {
		t.Fatalf("Server = %v, %v", s, err)
	}
	if s.Scheme() != "https" || !slices.Equal(s.GRPCConfig().NextProtos, []string{"h2"}) {
		t.Errorf("scheme %s, gRPC ALPN %q; want https, [h2]", s.Scheme(), s.GRPCConfig().NextProtos)
	}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := s.HTTPListener(plain)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer c.Close()
	st := c.ConnectionState()
	if st.NegotiatedProtocol != "http/1.1" || st.PeerCertificates[0].Subject.CommonName != "server" {
		t.Errorf("negotiated %q with certificate %q; want http/1.1 with the files' certificate", st.NegotiatedProtocol, st.PeerCertificates[0].Subject.CommonName)
	}
}
