package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/certs"
	"github.com/ebb-ml/ebb/internal/certs/certstest"
)

func TestVerifyServer(t *testing.T) {
	ca := certstest.NewCA(t, "ca")
	other := certstest.NewCA(t, "other")
	replica := ca.Server(t, "replica", "ebb-replica")
	byIP := ca.Server(t, "operator", "127.0.0.9")
	client := ca.Client(t, "a client")
	tests := []struct {
		name    string
		leaf    certstest.Pair
		roots   *certstest.CA
		host    string
		wantErr string
	}{
		{"name", replica, ca, "ebb-replica", ""},
		{"IP address", byIP, ca, "127.0.0.9", ""},
		{"another name", replica, ca, "ebb-operator", "not ebb-operator"},
		{"another CA", replica, other, "ebb-replica", "unknown authority"},
		{"a client certificate", client, ca, "", "key usage"}, // no name: only the usage fails
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verifyServer([]*x509.Certificate{tt.leaf.Cert}, tt.roots.Pool(), tt.host)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("verifyServer = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if err := verifyServer(nil, ca.Pool(), "x"); err == nil {
		t.Error("no certificate verified")
	}
}

// serveMTLS serves 200 over TLS on loopback with the certificate in dir,
// asking for client certificates that ca signs; it returns the address.
func serveMTLS(t *testing.T, dir string) string {
	t.Helper()
	r, err := certs.New(certs.Options{CertFile: dir + "/tls.crt", KeyFile: dir + "/tls.key", ClientCAFile: dir + "/ca.crt", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}), ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(tls.NewListener(ln, r.TLSConfig("http/1.1")))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestClientFilesReload checks a client's TLS from files: it presents its
// certificate, verifies the server for the configured name (not the IP
// it dials), and follows its files as they change, keeping the set in use
// when a changed one does not load.
func TestClientFilesReload(t *testing.T) {
	ca := certstest.NewCA(t, "ca")
	serverDir, clientDir := t.TempDir(), t.TempDir()
	ca.Server(t, "replica", "ebb-replica").Write(t, serverDir, ca)
	files := ca.Client(t, "gateway-1").Write(t, clientDir, ca)
	addr := serveMTLS(t, serverDir)

	cf, err := newClientFiles(files.CA, files.Cert, files.Key, "ebb-replica", false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	get := func() (string, error) {
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cf.config("http/1.1"), DisableKeepAlives: true}}
		resp, err := hc.Get("https://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if cn, err := get(); err != nil || cn != "gateway-1" {
		t.Fatalf("GET = %q, %v; want the server to see gateway-1", cn, err)
	}

	// A renewed client certificate is presented without a new client.
	ca.Client(t, "gateway-2").Write(t, clientDir, ca)
	if changed, err := cf.reload(); !changed || err != nil {
		t.Fatalf("reload = %v, %v; want true, nil", changed, err)
	}
	if cn, err := get(); err != nil || cn != "gateway-2" {
		t.Errorf("after reload: GET = %q, %v; want gateway-2", cn, err)
	}
	if changed, err := cf.reload(); changed || err != nil {
		t.Errorf("reload of unchanged files = %v, %v; want false, nil", changed, err)
	}

	// A key that does not match keeps the pair in use.
	certstest.WriteFile(t, files.Key, certstest.NewCA(t, "x").Client(t, "x").KeyPEM)
	if changed, err := cf.reload(); changed || err == nil {
		t.Errorf("reload of a mismatched key = %v, %v; want false and an error", changed, err)
	}
	if cn, err := get(); err != nil || cn != "gateway-2" {
		t.Errorf("after a bad reload: GET = %q, %v; want gateway-2 still", cn, err)
	}

	// A CA that did not sign the server's certificate: refused.
	other := certstest.NewCA(t, "other")
	other.Client(t, "gateway-3").Write(t, clientDir, other)
	if changed, err := cf.reload(); !changed || err != nil {
		t.Fatalf("reload = %v, %v", changed, err)
	}
	if _, err := get(); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("GET with a CA that did not sign the server: %v, want unknown authority", err)
	}

	// The server's certificate is checked for the configured name.
	ca.Client(t, "gateway-4").Write(t, clientDir, ca)
	wrong, err := newClientFiles(files.CA, files.Cert, files.Key, "ebb-operator", false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: wrong.config(), DisableKeepAlives: true}}
	if _, err := hc.Get("https://" + addr + "/"); err == nil || !strings.Contains(err.Error(), "ebb-operator") {
		t.Errorf("GET verifying for another name: %v, want an error naming it", err)
	}

	for _, tt := range []struct{ ca, cert, key, name, want string }{
		{files.CA, files.Cert, "", "n", "both"},
		{files.CA, "", "", "", "no server name"},
		{clientDir + "/missing.crt", "", "", "n", "no such file"},
		{files.Key, "", "", "n", "no PEM certificate"},
	} {
		if _, err := newClientFiles(tt.ca, tt.cert, tt.key, tt.name, false, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("newClientFiles(%q, %q, %q, %q) = %v, want %q", tt.ca, tt.cert, tt.key, tt.name, err, tt.want)
		}
	}
}
