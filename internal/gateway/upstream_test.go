package gateway

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
)

// unixSocket returns a Unix socket address: a Linux abstract name when
// abstract is true, else a path in a short private directory.
func unixSocket(t testing.TB, abstract bool) string {
	t.Helper()
	if abstract {
		if runtime.GOOS != "linux" {
			t.Skip("abstract Unix sockets are Linux's")
		}
		return fmt.Sprintf("@ebb-test-%016x", rand.Uint64())
	}
	dir, err := os.MkdirTemp("", "ebb-sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "r.sock")
}

// socketReplica serves a real replica server (echo model, with a secret)
// on a Unix socket only, and returns its endpoint: a URL where nothing
// listens, so that only the socket answers, and the socket.
func socketReplica(t testing.TB, id string, abstract bool) *balance.Endpoint {
	t.Helper()
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	sock := unixSocket(t, abstract)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no Unix sockets here: %v", err)
	}
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + dead.Addr().String()
	dead.Close()
	s := server.New("m", m, server.Options{ReplicaID: id, Secret: "s-" + id, DrainTimeout: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("replica %s: %v", id, err)
		}
	})
	ep := balance.NewEndpoint(id, base)
	ep.Secret, ep.Socket = "s-"+id, sock
	return ep
}

// TestUpstreamSocket forwards through the gateway to replicas reached on
// their Unix sockets (their URLs' ports are closed), abstract or a path;
// a replica whose socket is gone is retried elsewhere, as a dead port is.
func TestUpstreamSocket(t *testing.T) {
	tests := []struct {
		name string
		eps  func(t *testing.T) []*balance.Endpoint
		want string
	}{
		{"abstract", func(t *testing.T) []*balance.Endpoint {
			return []*balance.Endpoint{socketReplica(t, "r1", true)}
		}, "r1"},
		{"path", func(t *testing.T) []*balance.Endpoint {
			return []*balance.Endpoint{socketReplica(t, "r1", false)}
		}, "r1"},
		{"dead socket retried", func(t *testing.T) []*balance.Endpoint {
			dead := deadEndpoint(t, "dead")
			dead.Socket = unixSocket(t, false) // nothing listens there
			return []*balance.Endpoint{dead, socketReplica(t, "alive", false)}
		}, "alive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, routing.Route{Deployment: "m", Endpoints: tt.eps(t)})
			for i := range 10 {
				resp, out := f.post(t, "/v2/models/m/infer", body)
				if resp.StatusCode != http.StatusOK || resp.Header.Get("Ebb-Replica") != tt.want || !strings.Contains(out, `"data":[1,2]`) {
					t.Fatalf("request %d = %d from %q: %s; want 200 from %s", i, resp.StatusCode, resp.Header.Get("Ebb-Replica"), out, tt.want)
				}
			}
		})
	}
}

// TestUpstreamSocketHost: over the socket the request keeps its URL's
// Host, and one client (so one pool of connections) serves an endpoint.
func TestUpstreamSocketHost(t *testing.T) {
	sock := unixSocket(t, false)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no Unix sockets here: %v", err)
	}
	var hosts atomic.Value
	var conns atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hosts.Store(r.Host)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"outputs":[]}`)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ep := balance.NewEndpoint("r1", "http://127.0.0.1:9")
	ep.Socket = sock
	f := newFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{ep}})
	for range 5 {
		if resp, out := f.post(t, "/v2/models/m/infer", body); resp.StatusCode != http.StatusOK {
			t.Fatalf("infer = %d %s; want 200", resp.StatusCode, out)
		}
	}
	if got := hosts.Load(); got != "127.0.0.1:9" {
		t.Errorf("Host over the socket = %v; want the URL's 127.0.0.1:9", got)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections to the socket for 5 requests in a row; want 1 kept alive", n)
	}
	rt := f.tab.Lookup("m")
	a, err := f.g.ups.get(rt, ep, false)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := f.g.ups.get(rt, ep, false); a != b || f.g.ups.len() != 1 {
		t.Errorf("clients of one endpoint: %p and %p, %d cached; want one", a, b, f.g.ups.len())
	}
	if u, _ := url.Parse(ep.URL); a.host != u.Host {
		t.Errorf("client host = %q; want the URL's %q", a.host, u.Host)
	}
}
