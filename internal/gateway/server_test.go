package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/stats"
)

// frontFixture is a gateway over a table with one deployment "m" behind
// its front server, with a fallback handler for the rest.
type frontFixture struct {
	tab  *routing.Table
	rec  *stats.Recorder
	act  *activator.Activator
	g    *Gateway
	srv  *Server
	addr string
}

// newFrontFixture serves route (its Stats set here); cold requests are
// held up to hold and wake nothing.
func newFrontFixture(t *testing.T, route routing.Route, hold time.Duration, opts Options, fallback http.Handler) *frontFixture {
	t.Helper()
	f := &frontFixture{tab: &routing.Table{}, rec: &stats.Recorder{}}
	route.Stats = f.rec
	f.tab.Publish(route)
	f.act = activator.New(f.tab, wakeSignal(make(chan string, 1)), activator.Options{Timeout: hold})
	f.g = New(f.tab, f.act, opts)
	ln := listenLoopback(t)
	f.srv = NewServer(f.g, fallback)
	go f.srv.Serve(f.g.Listener(ln))
	t.Cleanup(func() { f.srv.Close() })
	f.addr = ln.Addr().String()
	return f
}

// dialRaw opens a connection to addr.
func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

const rawInfer = "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHeldClientGoneLeavesQueue: a client that gives up on a held request
// leaves the activator's queue at once, not when the hold times out.
func TestHeldClientGoneLeavesQueue(t *testing.T) {
	f := newFrontFixture(t, routing.Route{Deployment: "m"}, time.Minute, Options{HoldTimeout: time.Minute}, nil)
	c, _ := dialRaw(t, f.addr)
	fmt.Fprintf(c, rawInfer, len(body), body)
	waitFor(t, "the request held", func() bool { return f.act.QueueDepth("m") == 1 })
	c.Close()
	waitFor(t, "the held request of a client that left released", func() bool { return f.act.QueueDepth("m") == 0 })
}

// TestHeldRequestKeepsPipelinedBytes: while a request is held, the server
// watches its connection; what the client sends meanwhile (its next
// request) is served after it, byte for byte.
func TestHeldRequestKeepsPipelinedBytes(t *testing.T) {
	f := newFrontFixture(t, routing.Route{Deployment: "m"}, 10*time.Second, Options{HoldTimeout: 10 * time.Second}, nil)
	c, br := dialRaw(t, f.addr)
	fmt.Fprintf(c, rawInfer, len(body), body)
	waitFor(t, "the request held", func() bool { return f.act.QueueDepth("m") == 1 })
	io.WriteString(c, "GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond) // the watch reads a byte of it
	f.tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(t, "r1")}, Stats: f.rec})
	for i, want := range []int{http.StatusOK, http.StatusOK} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (i == 0 && !strings.Contains(string(b), `"data":[1,2]`)) {
			t.Errorf("response %d = %d %s; want %d", i, resp.StatusCode, b, want)
		}
	}
}

// TestFallback checks what the front server passes to its net/http
// handler: request bodies stream to it, its flushes reach the client at
// once, and its context ends when a client of a request without a body
// goes away.
func TestFallback(t *testing.T) {
	halfRead := make(chan struct{})
	flushed := make(chan struct{})
	gone := make(chan error, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/upload", func(w http.ResponseWriter, r *http.Request) {
		half := make([]byte, 1000)
		if _, err := io.ReadFull(r.Body, half); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		close(halfRead) // the client sends the rest only now
		rest, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "%d bytes", len(half)+len(rest))
	})
	mux.HandleFunc("GET /v1/follow", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		<-flushed
		io.WriteString(w, "second\n")
	})
	mux.HandleFunc("GET /v1/wait", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			gone <- r.Context().Err()
		case <-time.After(10 * time.Second):
			gone <- errors.New("the context did not end")
		}
	})
	f := newFrontFixture(t, routing.Route{Deployment: "m"}, time.Second, Options{}, mux)

	t.Run("body streams", func(t *testing.T) {
		c, br := dialRaw(t, f.addr)
		fmt.Fprintf(c, "PUT /v1/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n%s", strings.Repeat("a", 1000))
		select {
		case <-halfRead:
		case <-time.After(5 * time.Second):
			t.Fatal("the handler did not get the first 1000 bytes before the rest was sent: the body is buffered")
		}
		io.WriteString(c, strings.Repeat("b", 19000))
		resp := readOne(t, c, br)
		if resp.status != 200 || resp.body != "20000 bytes" {
			t.Errorf("upload = %d %q; want 200 20000 bytes", resp.status, resp.body)
		}
	})
	t.Run("flush reaches the client", func(t *testing.T) {
		resp, err := http.Get("http://" + f.addr + "/v1/follow")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		close(flushed)
		if err != nil || line != "first\n" {
			t.Errorf("first line %q, %v; want it before the handler goes on", line, err)
		}
	})
	t.Run("context ends when the client goes away", func(t *testing.T) {
		c, _ := dialRaw(t, f.addr)
		io.WriteString(c, "GET /v1/wait HTTP/1.1\r\nHost: x\r\n\r\n")
		time.Sleep(50 * time.Millisecond)
		c.Close()
		if err := <-gone; !errors.Is(err, context.Canceled) {
			t.Errorf("handler context: %v; want canceled", err)
		}
	})
	t.Run("paths", func(t *testing.T) {
		for _, tt := range []struct {
			method, path string
			want         int
			wantIn       string
		}{
			{"GET", "/v2/models/m/infer", 405, "Method Not Allowed"},
			{"POST", "/v2/models/m", 405, "Method Not Allowed"},
			{"GET", "/v2/models/m/", 404, "404 page not found"},
			{"GET", "/v2/nothing", 404, "404 page not found"},
			{"GET", "/v1/chat/completions", 405, "Method Not Allowed"},
			{"GET", "/v1/unknown", 404, "404 page not found"}, // the fallback's
			{"HEAD", "/v2/health/live", 200, ""},
		} {
			req, _ := http.NewRequest(tt.method, "http://"+f.addr+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want || !strings.Contains(string(b), tt.wantIn) {
				t.Errorf("%s %s = %d %q; want %d with %q", tt.method, tt.path, resp.StatusCode, b, tt.want, tt.wantIn)
			}
		}
	})
}

type rawResponse struct {
	status int
	close  bool
	body   string
}

func readOne(t *testing.T, c net.Conn, br *bufio.Reader) rawResponse {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return rawResponse{resp.StatusCode, resp.Close, string(b)}
}

// TestShutdownClosesKeepAliveGracefully: while the server drains, a
// request on a kept-alive connection is answered with "Connection: close",
// and an idle connection is closed (EOF, not a reset) after the grace.
func TestShutdownClosesKeepAliveGracefully(t *testing.T) {
	f := newFrontFixture(t, routing.Route{Deployment: "m"}, time.Second, Options{}, nil)
	live := "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
	busy, busyR := dialRaw(t, f.addr)
	quiet, quietR := dialRaw(t, f.addr)
	for _, c := range []struct {
		c  net.Conn
		br *bufio.Reader
	}{{busy, busyR}, {quiet, quietR}} {
		io.WriteString(c.c, live)
		if r := readOne(t, c.c, c.br); r.status != 200 || r.close {
			t.Fatalf("live = %+v; want 200 kept alive", r)
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- f.srv.Shutdown(context.Background(), 300*time.Millisecond) }()
	time.Sleep(100 * time.Millisecond)
	io.WriteString(busy, live)
	if r := readOne(t, busy, busyR); r.status != 200 || !r.close {
		t.Errorf("while draining: %+v; want 200 with Connection: close", r)
	}
	for name, c := range map[string]struct {
		c  net.Conn
		br *bufio.Reader
	}{"busy": {busy, busyR}, "quiet": {quiet, quietR}} {
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Errorf("%s connection: %v; want EOF", name, err)
		}
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

// TestReplicaConnsBounded sends a burst of concurrent requests to one
// replica: they share at most MaxConnsPerReplica connections, and every one
// is answered.
func TestReplicaConnsBounded(t *testing.T) {
	var open, most atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"outputs":[]}`)
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			n := open.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	f := newFrontFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{balance.NewEndpoint("r1", up.URL)}},
		time.Second, Options{MaxConnsPerReplica: 4}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			resp, err := http.Post("http://"+f.addr+"/v2/models/m/infer", "application/json", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := most.Load(); n > 4 || n == 0 {
		t.Errorf("the replica saw %d connections open at once; want 1 to 4", n)
	}
}

// TestReplicaClientsFollowRoutes: the client of a replica is dropped when
// the replica leaves its deployment's route.
func TestReplicaClientsFollowRoutes(t *testing.T) {
	r1, r2 := replica(t, "r1"), replica(t, "r2")
	f := newFrontFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{r1, r2}}, time.Second, Options{}, nil)
	for range 20 {
		resp, err := http.Post("http://"+f.addr+"/v2/models/m/infer", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := f.g.ups.len(); n != 2 {
		t.Fatalf("%d replica clients after requests to both; want 2", n)
	}
	f.tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{r2}, Stats: f.rec})
	waitFor(t, "r1's client dropped", func() bool { return f.g.ups.len() == 1 })
	f.tab.Remove("m")
	waitFor(t, "every client dropped", func() bool { return f.g.ups.len() == 0 })
}

// TestReplicaTLS forwards to a replica whose endpoint is an https URL,
// with Options.ReplicaTLS.
func TestReplicaTLS(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || r.ProtoMajor != 1 {
			http.Error(w, "want HTTP/1.1 over TLS", 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"model_name":"m"}`)
	}))
	t.Cleanup(up.Close)
	pool := x509.NewCertPool()
	pool.AddCert(up.Certificate())
	f := newFrontFixture(t, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{balance.NewEndpoint("r1", up.URL)}},
		time.Second, Options{ReplicaTLS: &tls.Config{RootCAs: pool}}, nil)
	resp, err := http.Post("http://"+f.addr+"/v2/models/m/infer", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `{"model_name":"m"}` {
		t.Errorf("infer through TLS = %d %s; want the replica's answer", resp.StatusCode, b)
	}
}
