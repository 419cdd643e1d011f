// Package certs provides TLS configurations whose certificate, key and
// optional client CA come from PEM files and follow those files as they
// change, without a restart.
//
// A Reloader loads the files once in New (an error there is fatal: a server
// must not start without its certificate) and again on every tick of Run.
// A changed set of files that does not load (a key that does not match its
// certificate, a half-written file, a CA bundle without a certificate)
// leaves the pair in use as it was and is logged once; the next good set
// replaces it. Handshakes always see one consistent pair: the certificate,
// key and client CAs are swapped together.
//
// Files are read, not watched: a poll every few seconds costs a few small
// reads, sees a Kubernetes Secret's symlink swap and an editor's rename
// alike, and needs no platform notification API.
package certs

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

	"k8s.io/utils/clock"
)

// DefaultEvery is how often Run looks at the files by default.
const DefaultEvery = 5 * time.Second

// Options say where the files are and how often to look at them.
type Options struct {
	// CertFile and KeyFile hold the serving certificate (chain) and its
	// private key, PEM. Both are required.
	CertFile, KeyFile string
	// ClientCAFile, when set, holds the PEM certificates of the CAs that
	// sign client certificates: every client must then present one
	// (mutual TLS).
	ClientCAFile string

	// Every is how often Run reads the files; default DefaultEvery.
	Every time.Duration
	// Clock drives Run's ticks; default the real clock.
	Clock clock.WithTicker
	// Logger reports reloads and rejected files; default slog.Default().
	Logger *slog.Logger
}

// Reloader serves the current certificate of its files. Its TLSConfig
// is safe for concurrent handshakes while Run reloads.
type Reloader struct {
	opts Options

	// mu guards cur and rejected.
	mu  sync.RWMutex
	cur *loaded
	// rejected is the content last refused, so that a bad set is logged
	// once, not on every tick.
	rejected []byte
}

// loaded is one consistent set of files.
type loaded struct {
	raw       []byte // cert, key and CA bytes, to see changes
	cert      *tls.Certificate
	clientCAs *x509.CertPool // nil: no client certificates asked for
	notAfter  time.Time
}

// New loads the files named in o. It fails when they do not load: a
// missing file, a key that does not match the certificate, or a client CA
// file without a certificate.
func New(o Options) (*Reloader, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("TLS needs both a certificate file and a key file")
	}
	if o.Every <= 0 {
		o.Every = DefaultEvery
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Reloader{opts: o}
	l, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cur = l
	return r, nil
}

// load reads and parses the files.
func (r *Reloader) load() (*loaded, error) {
	certPEM, err := os.ReadFile(r.opts.CertFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(r.opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS key: %w", err)
	}
	var caPEM []byte
	if r.opts.ClientCAFile != "" {
		if caPEM, err = os.ReadFile(r.opts.ClientCAFile); err != nil {
			return nil, fmt.Errorf("TLS client CA: %w", err)
		}
	}
	raw := bytes.Join([][]byte{certPEM, keyPEM, caPEM}, []byte{0})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return &loaded{raw: raw}, fmt.Errorf("TLS certificate %s and key %s: %w", r.opts.CertFile, r.opts.KeyFile, err)
	}
	l := &loaded{raw: raw, cert: &cert, notAfter: cert.Leaf.NotAfter}
	if r.opts.ClientCAFile != "" {
		l.clientCAs = x509.NewCertPool()
		if !l.clientCAs.AppendCertsFromPEM(caPEM) {
			return &loaded{raw: raw}, fmt.Errorf("TLS client CA %s holds no PEM certificate", r.opts.ClientCAFile)
		}
	}
	return l, nil
}

// Reload reads the files and, when they changed and load, puts them in
// use. It returns whether they were put in use, and why not when they
// changed but did not load; the pair in use then stays.
func (r *Reloader) Reload() (bool, error) {
	l, err := r.load()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case l != nil && bytes.Equal(l.raw, r.cur.raw):
		r.rejected = nil // back to the files in use
		return false, nil
	case err != nil:
		seen := []byte(err.Error()) // a file that cannot be read
		if l != nil {
			seen = l.raw
		}
		if bytes.Equal(seen, r.rejected) {
			return false, err // logged already
		}
		r.rejected = seen
		r.opts.Logger.Warn("TLS files changed but do not load: still serving the previous certificate", "err", err)
		return false, err
	}
	r.cur, r.rejected = l, nil
	r.opts.Logger.Info("TLS certificate reloaded", "cert", r.opts.CertFile, "notAfter", l.notAfter)
	return true, nil
}

// Run reloads the files every Options.Every until ctx ends; it returns
// nil then.
func (r *Reloader) Run(ctx context.Context) error {
	t := r.opts.Clock.NewTicker(r.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			_, _ = r.Reload() // logged
		}
	}
}

func (r *Reloader) current() *loaded {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cur
}

// Certificate returns the certificate in use.
func (r *Reloader) Certificate() *tls.Certificate { return r.current().cert }

// TLSConfig returns a server configuration (TLS 1.2 or later) that
// presents the certificate in use at each handshake and, with a client CA
// file, requires and verifies a client certificate against the CAs in use.
// nextProtos are the ALPN protocols offered ("h2" for gRPC).
func (r *Reloader) TLSConfig(nextProtos ...string) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: nextProtos}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		l := r.current()
		c := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			NextProtos:   nextProtos,
			Certificates: []tls.Certificate{*l.cert},
		}
		if l.clientCAs != nil {
			c.ClientAuth = tls.RequireAndVerifyClientCert
			c.ClientCAs = l.clientCAs
		}
		return c, nil
	}
	// GetCertificate serves callers that clone base without the hook
	// above (none in ebb; it keeps base a valid config on its own).
	base.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.current().cert, nil }
	if r.opts.ClientCAFile != "" {
		base.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return base
}
