package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/valyala/fasthttp"
)

// DefaultMaxConnsPerReplica bounds the connections the gateway opens to one
// replica when Options.MaxConnsPerReplica is zero.
const DefaultMaxConnsPerReplica = 256

// upstreams keeps one HTTP/1.1 client (a fasthttp.HostClient, which pools
// keep-alive connections) per replica endpoint (the control loop and the
// cluster's routes keep one *balance.Endpoint per replica), as grpcConns
// keeps gRPC connections. A client dials the endpoint's Unix socket when it
// has one (balance.Endpoint.Socket: a replica of ebb up), its URL's host
// otherwise. A client is dropped, and its idle connections closed, when its
// endpoint leaves its deployment's route. Each client opens at most
// maxConns connections; a request beyond them waits up to wait for one to
// be free, so a burst of held requests released at once does not open a
// connection each.
type upstreams struct {
	routes   Routes
	tls      *tls.Config // for https endpoints, HTTP/1.1 only; nil: the system's CAs
	maxConns int
	wait     time.Duration

	// byEndpoint holds the clients (*upstream), read without a lock on
	// the request path; they are added and removed with mu held. A
	// streaming client (answers passed on as they arrive: the OpenAI API)
	// and a buffering one (OIP v2) may serve one endpoint: byEndpoint[1]
	// holds the streaming ones. Keyed by the endpoint's pointer alone,
	// whose hash costs less than a struct's.
	byEndpoint [2]sync.Map // *balance.Endpoint → *upstream

	// mu guards the fields below.
	mu       sync.Mutex
	closed   bool
	done     chan struct{}   // closed by close; watchers stop on it
	watching map[string]bool // deployments with a watcher
}

// upstream is one endpoint's client.
type upstream struct {
	hc         *fasthttp.HostClient
	deployment string
	scheme     string // http or https
	host       string // host:port
}

func newUpstreams(routes Routes, tlsConfig *tls.Config, maxConns int, wait time.Duration) *upstreams {
	return &upstreams{routes: routes, tls: restTLS(tlsConfig), maxConns: maxConns, wait: wait,
		done: make(chan struct{}), watching: map[string]bool{}}
}

// get returns the client of ep, a replica of rt's deployment, creating it
// (no I/O) on first use.
func (u *upstreams) get(rt *routing.Route, ep *balance.Endpoint, stream bool) (*upstream, error) {
	m := &u.byEndpoint[b2i(stream)]
	if v, ok := m.Load(ep); ok {
		return v.(*upstream), nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, errors.New("the gateway is shutting down")
	}
	if v, ok := m.Load(ep); ok {
		return v.(*upstream), nil
	}
	up, err := u.newUpstream(rt.Deployment, ep, stream)
	if err != nil {
		return nil, err
	}
	m.Store(ep, up)
	if !u.watching[rt.Deployment] {
		u.watching[rt.Deployment] = true
		go u.watch(rt)
	}
	return up, nil
}

func (u *upstreams) newUpstream(deployment string, ep *balance.Endpoint, stream bool) (*upstream, error) {
	p, err := url.Parse(ep.URL)
	if err != nil || p.Host == "" || (p.Scheme != "http" && p.Scheme != "https") {
		return nil, fmt.Errorf("replica %s: URL %q is not http://host:port or https://host:port", ep.ID, ep.URL)
	}
	host := p.Host
	if p.Port() == "" {
		host += map[string]string{"http": ":80", "https": ":443"}[p.Scheme]
	}
	hc := &fasthttp.HostClient{
		Addr:                     host,
		IsTLS:                    p.Scheme == "https",
		TLSConfig:                u.tls,
		MaxConns:                 u.maxConns,
		MaxConnWaitTimeout:       u.wait,
		MaxIdleConnDuration:      upstreamIdle,
		NoDefaultUserAgentHeader: true,
		StreamResponseBody:       stream,
		RetryIfErr:               retryStale,
	}
	switch {
	case ep.Socket != "":
		// A local replica's Unix socket: a request and its answer cost
		// the kernel less than over loopback TCP. Addr, and so the Host
		// header, stay the URL's.
		hc.DialTimeout = dialUnix(ep.Socket)
	case !hc.IsTLS:
		hc.DialTimeout = dialTCP
	}
	return &upstream{hc: hc, deployment: deployment, scheme: p.Scheme, host: host}, nil
}

// dialUnix returns a dialer of the Unix socket at socket (a path, or a
// Linux abstract name "@…"), whatever address it is asked for. Its
// connections send a request as they wait for the answer (upconn.go).
func dialUnix(socket string) fasthttp.DialFuncWithTimeout {
	return func(_ string, timeout time.Duration) (net.Conn, error) {
		return upDialed(net.DialTimeout("unix", socket, timeout))
	}
}

// dialTCP dials addr as fasthttp does (within fasthttp's default timeout
// when timeout is 0, as the client passes without a deadline); its
// connections send a request as they wait for the answer (upconn.go).
func dialTCP(addr string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = fasthttp.DefaultDialTimeout
	}
	return upDialed(fasthttp.DialTimeout(addr, timeout))
}

// upDialed wraps a dialer's new connection in an upConn.
func upDialed(c net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return nil, err
	}
	return newUpConn(c), nil
}

// upstreamIdle is how long an idle connection to a replica stays open;
// shorter than a replica's idle timeout (connlimit's 2 minutes), so the
// gateway closes it first and never sends on a connection being closed.
const upstreamIdle = 30 * time.Second

// retryStale lets the client send a request once more, on a new
// connection, when the one it used was closed before answering a byte
// (a keep-alive connection the replica had just closed). A replica that
// died fails again at once (the dial is refused) and the gateway tries
// another one.
func retryStale(_ *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	return false, attempts < 2 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
}

// watch follows the routes of rt's deployment and drops the clients of
// endpoints that leave it.
func (u *upstreams) watch(rt *routing.Route) {
	name := rt.Deployment
	for {
		select {
		case <-rt.Changed():
		case <-u.done:
			return
		}
		rt = u.routes.Lookup(name)
		if !u.sweep(name, rt) {
			return
		}
	}
}

// sweep drops name's clients whose endpoints rt (nil: the deployment is
// gone) does not route, and reports whether any are left; when none is, it
// ends the watch.
func (u *upstreams) sweep(name string, rt *routing.Route) bool {
	keep := map[*balance.Endpoint]bool{}
	if rt != nil {
		for _, ep := range rt.Endpoints {
			keep[ep] = true
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	left := false
	for i := range u.byEndpoint {
		m := &u.byEndpoint[i]
		m.Range(func(k, v any) bool {
			up := v.(*upstream)
			switch {
			case up.deployment != name:
			case keep[k.(*balance.Endpoint)]:
				left = true
			default:
				m.Delete(k)
				up.hc.CloseIdleConnections()
			}
			return true
		})
	}
	if !left {
		delete(u.watching, name)
	}
	return left
}

// len returns the number of clients.
func (u *upstreams) len() int {
	n := 0
	for i := range u.byEndpoint {
		u.byEndpoint[i].Range(func(any, any) bool { n++; return true })
	}
	return n
}

// close drops every client and stops the watchers; requests in flight
// finish, and get fails after.
func (u *upstreams) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return
	}
	u.closed = true
	close(u.done)
	for i := range u.byEndpoint {
		m := &u.byEndpoint[i]
		m.Range(func(k, v any) bool {
			m.Delete(k)
			v.(*upstream).hc.CloseIdleConnections()
			return true
		})
	}
}

// b2i is 1 for true, 0 for false.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// restTLS returns cfg for REST over TLS to replicas: HTTP/1.1 only, since a
// replica hands HTTP/2 connections to its gRPC server. nil stays nil.
func restTLS(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	c := cfg.Clone()
	c.NextProtos = []string{"http/1.1"}
	return c
}
