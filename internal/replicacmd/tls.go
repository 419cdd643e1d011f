package replicacmd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"

	"github.com/ebb-ml/ebb/internal/certs"
	"github.com/ebb-ml/ebb/internal/connlimit"
)

// A replica given --tls-cert serves its one port two ways. Connections
// that open with a TLS handshake get TLS (mutual TLS with --tls-client-ca:
// a client without a certificate that CA signed fails the handshake) and
// reach the replica's server, REST and gRPC, as plain connections do
// without TLS. Plain-HTTP connections are served by a small server that
// answers only the health checks and /ebb/v1/replica (through an
// in-process connection to the replica's server) and refuses everything
// else with 403: a kubelet's readiness probe and the operator's control
// loop read those without a certificate, as they read them without a
// replica secret; they run no model. So a plain or certificate-less
// request straight to a replica pod never reaches its model.

// plainPaths are what a replica with TLS answers over plain HTTP.
var plainPaths = map[string]bool{"/v2/health/live": true, "/v2/health/ready": true, "/ebb/v1/replica": true}

// startReplicaTLS returns root serving TLS as the comment above says, for
// the replica's server to Serve; nil files returns root as it is. limits
// apply to root's connections too (their cap, and the plain server's
// timeouts; a connection must send its first byte within
// ReadHeaderTimeout). The certificate files are reloaded until ctx ends.
// Closing the returned listener closes root and stops the plain-HTTP
// server.
func startReplicaTLS(ctx context.Context, root net.Listener, o certs.Files, files *certs.Reloader, limits connlimit.Limits, log *slog.Logger) net.Listener {
	if files == nil {
		return root
	}
	limits = limits.WithDefaults()
	l := &tlsSplitListener{
		root:      limits.Listener(root),
		handshake: limits.ReadHeaderTimeout,
		config:    files.TLSConfig("h2", "http/1.1"),
		inner:     make(chan net.Conn),
		plain:     make(chan net.Conn),
		done:      make(chan struct{}),
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "replica"
		},
		Transport: &http.Transport{DialContext: l.dialInner, DisableKeepAlives: true},
		ErrorLog:  slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	l.health = limits.Server(plainOnly(proxy))
	l.health.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	go func() { _ = files.Run(ctx) }()
	go l.accept()
	go func() { _ = l.health.Serve(&chanListener{conns: l.plain, done: l.done, addr: root.Addr()}) }()
	log.Info("serving TLS; plain HTTP answers health checks only", "addr", root.Addr().String(), "clientCertificates", o.ClientCAFile != "")
	return l
}

// plainOnly serves plainPaths (GET and HEAD) with next and refuses the
// rest.
func plainOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if plainPaths[r.URL.Path] && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":"this replica serves inference over TLS with a client certificate only (mutual TLS): send requests through an ebb gateway; plain HTTP answers /v2/health/live, /v2/health/ready and /ebb/v1/replica"}` + "\n"))
	})
}

// tlsSplitListener hands the replica's server the TLS connections of root
// and the health proxy's in-process connections; plain ones go to the
// health server.
type tlsSplitListener struct {
	root      net.Listener
	handshake time.Duration // for the first byte; 0: no bound
	config    *tls.Config
	health    *http.Server
	inner     chan net.Conn // for the replica's server
	plain     chan net.Conn // for the health server
	done      chan struct{} // closed by Close

	closeOnce sync.Once
	// mu guards err.
	mu  sync.Mutex
	err error // root's Accept error, once it failed
}

// accept accepts root's connections until root is closed. Other errors
// (out of file descriptors) are retried after a back-off, as http.Server
// retries them.
func (l *tlsSplitListener) accept() {
	var backoff time.Duration
	for {
		c, err := l.root.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				l.mu.Lock()
				l.err = err
				l.mu.Unlock()
				l.Close()
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go l.classify(c)
	}
}

// classify reads c's first byte and hands c on: a TLS handshake record
// (0x16) to the replica's server, as a TLS server connection, anything
// else to the health server.
func (l *tlsSplitListener) classify(c net.Conn) {
	if l.handshake > 0 {
		_ = c.SetReadDeadline(time.Now().Add(l.handshake))
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	var pc net.Conn = &prefixedConn{Conn: c, prefix: b[:]}
	to := l.plain
	if b[0] == 0x16 {
		pc, to = tls.Server(pc, l.config), l.inner
	}
	select {
	case to <- pc:
	case <-l.done:
		c.Close()
	}
}

// dialInner is the health proxy's dialer: one end of an in-process
// connection for the replica's server.
func (l *tlsSplitListener) dialInner(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.inner <- server:
		return client, nil
	case <-l.done:
	case <-ctx.Done():
	}
	client.Close()
	server.Close()
	return nil, errors.New("the replica is not serving")
}

func (l *tlsSplitListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.inner:
		return c, nil
	case <-l.done:
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close closes root and the health server.
func (l *tlsSplitListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.root.Close()
		l.health.Close()
	})
	return err
}

func (l *tlsSplitListener) Addr() net.Addr { return l.root.Addr() }

// chanListener accepts the connections sent on conns until done closes.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	addr  net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { return nil } // the tlsSplitListener closes
func (l *chanListener) Addr() net.Addr { return l.addr }

// prefixedConn is a connection whose first bytes were read; Read returns
// them again first.
type prefixedConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
