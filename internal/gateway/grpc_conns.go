package gateway

import (
	"crypto/tls"
	"fmt"
	"math"
	"net/url"
	"sync"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/oipgrpc"
	"github.com/ebb-ml/ebb/internal/routing"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// grpcConns keeps one gRPC client connection per replica endpoint, keyed by
// the endpoint's URL, shared by every deployment routed to it (the models
// of a multi-model pool share their replicas). A connection is closed when
// its endpoint has left the routes of every deployment that used it, once
// the calls using it have finished: the first use of a connection by a
// deployment starts a watcher that follows the deployment's routes until
// none of its connections is left, or until close.
type grpcConns struct {
	routes       Routes
	maxSendBytes int
	tls          *tls.Config // for https endpoints; nil: the system's CAs

	// done is closed by close; watchers stop on it.
	done chan struct{}

	// mu guards the fields below.
	mu       sync.Mutex
	closed   bool
	conns    map[string]*replicaConn // endpoint URL → connection
	watching map[string]bool         // deployments with a watcher
}

type replicaConn struct {
	// users are the deployments whose routes had the endpoint when they
	// called it; guarded by grpcConns.mu.
	users  map[string]bool
	cc     *grpc.ClientConn
	client oipgrpc.GRPCInferenceServiceClient
	// active counts calls using cc; guarded by grpcConns.mu.
	active int
	// removed is set when cc left the cache: the last call closes it.
	removed bool
}

func newGRPCConns(routes Routes, maxSendBytes int, tlsConfig *tls.Config) *grpcConns {
	return &grpcConns{
		routes:       routes,
		maxSendBytes: maxSendBytes,
		tls:          tlsConfig,
		done:         make(chan struct{}),
		conns:        map[string]*replicaConn{},
		watching:     map[string]bool{},
	}
}

// client returns the cached client of ep, a replica of rt's deployment,
// connecting (lazily: no I/O here) on first use. The caller must call
// release when its call is over.
func (p *grpcConns) client(rt *routing.Route, ep *balance.Endpoint) (_ oipgrpc.GRPCInferenceServiceClient, release func(), _ error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, fmt.Errorf("the gateway is shutting down")
	}
	c, ok := p.conns[ep.URL]
	if !ok {
		var err error
		if c, err = p.dialLocked(ep); err != nil {
			return nil, nil, err
		}
	}
	if !c.users[rt.Deployment] {
		c.users[rt.Deployment] = true
		if !p.watching[rt.Deployment] {
			p.watching[rt.Deployment] = true
			go p.watch(rt)
		}
	}
	c.active++
	return c.client, func() { p.release(c) }, nil
}

func (p *grpcConns) release(c *replicaConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.active--; c.active == 0 && c.removed {
		c.cc.Close()
	}
}

// removeLocked takes c out of the cache; it is closed now or by the last
// call using it.
func (p *grpcConns) removeLocked(u string, c *replicaConn) {
	delete(p.conns, u)
	c.removed = true
	if c.active == 0 {
		c.cc.Close()
	}
}

// dialLocked creates and caches the connection to ep.
func (p *grpcConns) dialLocked(ep *balance.Endpoint) (*replicaConn, error) {
	target, creds, err := grpcTarget(ep.URL, p.tls)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(p.maxSendBytes)))
	if err != nil {
		return nil, fmt.Errorf("replica %s at %s: %w", ep.ID, ep.URL, err)
	}
	c := &replicaConn{users: map[string]bool{}, cc: cc, client: oipgrpc.NewGRPCInferenceServiceClient(cc)}
	p.conns[ep.URL] = c
	return c, nil
}

// grpcTarget turns a replica's base URL (http://host:port) into a gRPC
// target that skips name resolution, and the credentials for its scheme:
// https ones use cfg (nil: the system's CAs).
func grpcTarget(base string, cfg *tls.Config) (string, credentials.TransportCredentials, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", nil, fmt.Errorf("replica URL %q is not http://host:port", base)
	}
	switch u.Scheme {
	case "http":
		return "passthrough:///" + u.Host, insecure.NewCredentials(), nil
	case "https":
		return "passthrough:///" + u.Host, credentials.NewTLS(cfg), nil
	}
	return "", nil, fmt.Errorf("replica URL %q: scheme %q is neither http nor https", base, u.Scheme)
}

// watch follows the routes of rt's deployment and closes the connections
// of endpoints that leave it.
func (p *grpcConns) watch(rt *routing.Route) {
	name := rt.Deployment
	for {
		select {
		case <-rt.Changed():
		case <-p.done:
			return
		}
		rt = p.routes.Lookup(name)
		if !p.sweep(name, rt) {
			return
		}
	}
}

// sweep drops name from the users of the connections whose endpoints rt
// (nil: the deployment is gone) does not route, closing those left without
// users, and reports whether name uses any still; when it uses none, it
// ends the watch.
func (p *grpcConns) sweep(name string, rt *routing.Route) bool {
	keep := map[string]bool{}
	if rt != nil {
		for _, ep := range rt.Endpoints {
			keep[ep.URL] = true
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	left := false
	for u, c := range p.conns {
		if !c.users[name] {
			continue
		}
		if keep[u] {
			left = true
			continue
		}
		delete(c.users, name)
		if len(c.users) == 0 {
			p.removeLocked(u, c)
		}
	}
	if !left {
		delete(p.watching, name)
		return false
	}
	return true
}

// len returns the number of cached connections.
func (p *grpcConns) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// close closes every connection (those in use when their calls end) and
// stops the watchers; client fails after.
func (p *grpcConns) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.done)
	for u, c := range p.conns {
		p.removeLocked(u, c)
	}
}
