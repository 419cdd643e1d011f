package replicacmd

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/certs"
)

// giveFD returns a duplicate of ln's descriptor that the caller owns, as a
// replica owns the descriptors it inherits.
func giveFD(t *testing.T, ln interface{ File() (*os.File, error) }) int {
	t.Helper()
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// TestSocketFD: --socket-fd takes an inherited Unix socket listener and
// refuses anything else.
func TestSocketFD(t *testing.T) {
	dir, err := os.MkdirTemp("", "ebb-sock")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	unixLn, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
	if err != nil {
		t.Skipf("no Unix sockets here: %v", err)
	}
	defer unixLn.Close()
	tcpLn, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tcpLn.Close()

	tests := []struct {
		name    string
		fd      func(t *testing.T) int
		want    int // listeners
		wantErr string
	}{
		{"none", func(*testing.T) int { return -1 }, 0, ""},
		{"unix", func(t *testing.T) int { return giveFD(t, unixLn) }, 1, ""},
		{"tcp", func(t *testing.T) int { return giveFD(t, tcpLn) }, 0, "not a Unix socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := replicaFlags{socketFD: tt.fd(t)}
			lns, err := f.listenSocket()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("listenSocket = %v; want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(lns) != tt.want {
				t.Fatalf("listenSocket = %d listeners, %v; want %d", len(lns), err, tt.want)
			}
			for _, ln := range lns {
				if ln.Addr().String() != unixLn.Addr().String() {
					t.Errorf("listener at %s; want %s", ln.Addr(), unixLn.Addr())
				}
				ln.Close()
			}
		})
	}
}

// TestSocketFDValidate: --socket-fd goes with engines the replica's
// server serves, without TLS.
func TestSocketFDValidate(t *testing.T) {
	tests := []struct {
		name    string
		engine  string
		tls     certs.Files
		wantErr string
	}{
		{name: "echo", engine: "echo"},
		{name: "http", engine: "http", wantErr: "engine http"},
		{name: "tls", engine: "echo", tls: certs.Files{CertFile: "c.pem", KeyFile: "k.pem"}, wantErr: "--tls-cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := replicaFlags{deployment: "d", engine: tt.engine, listenFD: 3, socketFD: 5, drainTimeout: time.Second,
				maxBodyBytes: 1 << 20, tls: tt.tls, upstream: "http://127.0.0.1:1"}
			err := f.validate()
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("validate() = %v; want an error with %q", err, tt.wantErr)
			}
		})
	}
}
