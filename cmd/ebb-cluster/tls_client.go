package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/certs"
)

// clientFiles is a client's TLS from PEM files that it rereads as they
// change, as certs.Reloader does for servers (a Kubernetes Secret renewed
// in place): the CAs that verify the server and, optionally, the
// certificate and key the client presents (mutual TLS). A changed set that
// does not load leaves the one in use, logged once.
//
// The server's certificate is verified for serverName, not for the host
// dialed: replica pods come and go by IP, and share one certificate named
// for all of them.
type clientFiles struct {
	caFile, certFile, keyFile string
	serverName                string
	systemToo                 bool // trust the system's CAs beside caFile's
	log                       *slog.Logger

	// mu guards cur and rejected.
	mu       sync.RWMutex
	cur      *clientSet
	rejected []byte
}

// clientSet is one consistent load of a clientFiles' files.
type clientSet struct {
	raw   []byte
	roots *x509.CertPool   // nil: the system's
	cert  *tls.Certificate // nil: none presented
}

// newClientFiles loads the files: caFile (optional: the system's CAs
// without it; with it, the system's too when systemToo), and certFile with
// keyFile (both or neither). It fails when they do not load, or when
// serverName is empty.
func newClientFiles(caFile, certFile, keyFile, serverName string, systemToo bool, log *slog.Logger) (*clientFiles, error) {
	switch {
	case serverName == "":
		return nil, errors.New("no server name to verify the server's certificate for")
	case (certFile == "") != (keyFile == ""):
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	if log == nil {
		log = slog.Default()
	}
	c := &clientFiles{caFile: caFile, certFile: certFile, keyFile: keyFile, serverName: serverName, systemToo: systemToo, log: log}
	s, err := c.load()
	if err != nil {
		return nil, err
	}
	c.cur = s
	return c, nil
}

func (c *clientFiles) load() (*clientSet, error) {
	var caPEM, certPEM, keyPEM []byte
	var err error
	for _, f := range []struct {
		name, what string
		into       *[]byte
	}{{c.caFile, "CA", &caPEM}, {c.certFile, "client certificate", &certPEM}, {c.keyFile, "client key", &keyPEM}} {
		if f.name == "" {
			continue
		}
		if *f.into, err = os.ReadFile(f.name); err != nil {
			return nil, fmt.Errorf("%s: %w", f.what, err)
		}
	}
	s := &clientSet{raw: bytes.Join([][]byte{caPEM, certPEM, keyPEM}, []byte{0})}
	if c.caFile != "" {
		s.roots = x509.NewCertPool()
		if sys, err := x509.SystemCertPool(); err == nil && sys != nil && c.systemToo {
			s.roots = sys
		}
		if !s.roots.AppendCertsFromPEM(caPEM) {
			return s, fmt.Errorf("CA file %s holds no PEM certificate", c.caFile)
		}
	}
	if c.certFile != "" {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return s, fmt.Errorf("client certificate %s and key %s: %w", c.certFile, c.keyFile, err)
		}
		s.cert = &cert
	}
	return s, nil
}

// reload rereads the files and puts them in use when they changed and
// load; it reports whether it did.
func (c *clientFiles) reload() (bool, error) {
	s, err := c.load()
	c.mu.Lock()
	defer c.mu.Unlock()
	if s != nil && bytes.Equal(s.raw, c.cur.raw) {
		c.rejected = nil
		return false, nil
	}
	if err != nil {
		seen := []byte(err.Error())
		if s != nil {
			seen = s.raw
		}
		if !bytes.Equal(seen, c.rejected) {
			c.rejected = seen
			c.log.Warn("client TLS files changed but do not load: still using the previous ones", "err", err)
		}
		return false, err
	}
	c.cur, c.rejected = s, nil
	c.log.Info("client TLS files reloaded", "ca", c.caFile, "cert", c.certFile)
	return true, nil
}

// run rereads the files every certs.DefaultEvery until ctx ends.
func (c *clientFiles) run(ctx context.Context) {
	t := time.NewTicker(certs.DefaultEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = c.reload() // logged
		}
	}
}

func (c *clientFiles) current() *clientSet {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cur
}

// config returns a client configuration that verifies the server with the
// CAs in use and presents the certificate in use, at each handshake.
// nextProtos are the ALPN protocols offered.
func (c *clientFiles) config(nextProtos ...string) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		// The chain and name are checked by VerifyConnection, against
		// the CAs in use now and for serverName: a static RootCAs could
		// not follow a renewed CA file.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs.PeerCertificates, c.current().roots, c.serverName)
		},
	}
	if c.certFile != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.current().cert, nil
		}
	}
	return cfg
}

// verifyServer checks that chain (leaf first, as the server sent it)
// leads to one of roots (nil: the system's CAs) and that its leaf is valid
// for name (a DNS name or an IP address) and for server authentication.
func verifyServer(chain []*x509.Certificate, roots *x509.CertPool, name string) error {
	if len(chain) == 0 {
		return errors.New("tls: the server presented no certificate")
	}
	opts := x509.VerifyOptions{Roots: roots, DNSName: name, Intermediates: x509.NewCertPool()}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := chain[0].Verify(opts); err != nil {
		return fmt.Errorf("tls: the server's certificate: %w", err)
	}
	return nil
}
