package certs_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/certs"
	"github.com/ebb-ml/ebb/internal/certs/certstest"
	clocktesting "k8s.io/utils/clock/testing"
)

// serve starts a real HTTPS server with r's configuration.
func serve(t *testing.T, r *certs.Reloader) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if len(req.TLS.PeerCertificates) > 0 {
			io.WriteString(w, req.TLS.PeerCertificates[0].Subject.CommonName)
			return
		}
		io.WriteString(w, "ok")
	}))
	srv.TLS = r.TLSConfig("http/1.1")
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// served returns the CommonName of the certificate a new connection to
// srv is served, trusting ca.
func served(t *testing.T, srv *httptest.Server, ca *certstest.CA, client *tls.Certificate) (string, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool()}
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
	resp, err := c.Get(srv.URL)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	return resp.TLS.PeerCertificates[0].Subject.CommonName, nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestReloadOnChange(t *testing.T) {
	ca := certstest.NewCA(t, "test CA")
	dir := t.TempDir()
	files := ca.Server(t, "first").Write(t, dir, nil)
	clk := clocktesting.NewFakeClock(time.Now())
	r, err := certs.New(certs.Options{CertFile: files.Cert, KeyFile: files.Key, Clock: clk, Every: time.Second, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, r)
	if cn, err := served(t, srv, ca, nil); err != nil || cn != "first" {
		t.Fatalf("served %q, %v; want first", cn, err)
	}

	// Run picks up a new pair on its next tick.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ca.Server(t, "second").Write(t, dir, nil)
	waitTicker(t, clk)
	clk.Step(time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		cn, err := served(t, srv, ca, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cn == "second" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still served %q after the files changed and Run ticked", cn)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitTicker(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
}

func TestBadPairKeepsTheOld(t *testing.T) {
	ca := certstest.NewCA(t, "test CA")
	dir := t.TempDir()
	files := ca.Server(t, "good").Write(t, dir, nil)
	var logs strings.Builder
	r, err := certs.New(certs.Options{CertFile: files.Cert, KeyFile: files.Key, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, r)

	for _, tc := range []struct {
		name  string
		write func()
	}{
		{"key of another certificate", func() {
			certstest.WriteFile(t, files.Key, ca.Server(t, "other").KeyPEM)
		}},
		{"half-written certificate", func() {
			good := ca.Server(t, "new")
			certstest.WriteFile(t, files.Key, good.KeyPEM)
			certstest.WriteFile(t, files.Cert, good.CertPEM[:len(good.CertPEM)/2])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			tc.write()
			if ok, err := r.Reload(); ok || err == nil {
				t.Fatalf("Reload = %v, %v; want the bad pair refused", ok, err)
			}
			if !strings.Contains(logs.String(), "still serving the previous certificate") {
				t.Errorf("the refusal was not logged: %s", logs.String())
			}
			// Logged once, not on every tick.
			logs.Reset()
			r.Reload()
			if logs.Len() != 0 {
				t.Errorf("the same bad files were logged again: %s", logs.String())
			}
			if cn, err := served(t, srv, ca, nil); err != nil || cn != "good" {
				t.Errorf("served %q, %v; want the previous certificate", cn, err)
			}
		})
	}

	// A good pair again is taken.
	ca.Server(t, "fixed").Write(t, dir, nil)
	if ok, err := r.Reload(); !ok || err != nil {
		t.Fatalf("Reload = %v, %v; want the good pair", ok, err)
	}
	if cn, err := served(t, srv, ca, nil); err != nil || cn != "fixed" {
		t.Errorf("served %q, %v; want fixed", cn, err)
	}
	if ok, err := r.Reload(); ok || err != nil {
		t.Errorf("Reload of unchanged files = %v, %v; want no change", ok, err)
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	ca := certstest.NewCA(t, "test CA")
	dir := t.TempDir()
	files := ca.Server(t, "s").Write(t, dir, ca)
	for _, o := range []certs.Options{
		{CertFile: files.Cert},
		{CertFile: files.Cert, KeyFile: dir + "/missing.key"},
		{CertFile: files.Key, KeyFile: files.Key},
		{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.Key},
	} {
		if _, err := certs.New(o); err == nil {
			t.Errorf("New(%+v) succeeded; want an error", o)
		}
	}
}

func TestClientCertificateRequired(t *testing.T) {
	ca := certstest.NewCA(t, "server CA")
	clients := certstest.NewCA(t, "client CA")
	dir := t.TempDir()
	files := ca.Server(t, "server").Write(t, dir, clients)
	r, err := certs.New(certs.Options{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.CA, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, r)

	if _, err := served(t, srv, ca, nil); err == nil {
		t.Error("a client without a certificate was served")
	}
	stranger := certstest.NewCA(t, "other CA").Client(t, "stranger").TLS(t)
	if _, err := served(t, srv, ca, &stranger); err == nil {
		t.Error("a client with a certificate of another CA was served")
	}
	gw := clients.Client(t, "gateway").TLS(t)
	if _, err := served(t, srv, ca, &gw); err != nil {
		t.Errorf("a client with a certificate of the client CA: %v", err)
	}

	// The client CA file is reloaded too: after a rotation to a new CA
	// only its clients get in.
	next := certstest.NewCA(t, "next client CA")
	certstest.WriteFile(t, files.CA, next.PEM)
	if ok, err := r.Reload(); !ok || err != nil {
		t.Fatalf("Reload = %v, %v", ok, err)
	}
	if _, err := served(t, srv, ca, &gw); err == nil {
		t.Error("a client of the previous client CA was served after the rotation")
	}
	gw2 := next.Client(t, "gateway").TLS(t)
	if _, err := served(t, srv, ca, &gw2); err != nil {
		t.Errorf("a client of the new client CA: %v", err)
	}
}
