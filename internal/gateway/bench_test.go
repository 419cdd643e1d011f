package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/auth"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/fairqueue"
	"github.com/ebb-ml/ebb/internal/limit"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// The data plane's cost, one benchmark per stage of a request, then the
// whole request; CI runs each once (.ci/run), and `ebbbench -run proxy`
// reports their timings. A stage that grows past its share of the proxy
// budget (bench/RESULTS.md §1) shows here first.
//
//	BenchmarkStageAuth      the auth stage: bearer token, cached verify, predict:GLOB
//	BenchmarkStageRoute     route lookup among 1,000 deployments, and the pick of a replica
//	BenchmarkStageBody      reading a body within the limits and the buffered-bytes budget
//	BenchmarkStageLimit     a tenant's limits: Limiter.Admit and Ticket.Release, bound by a rate or by none
//	BenchmarkStageFair      a capped deployment's fair admission queue with free slots: Acquire and release
//	BenchmarkStageUpstream  the request to a replica and its answer (the client), loopback
//	BenchmarkStageServer    a whole request through the front server, loopback both ways
//	BenchmarkLoadGateway    the front server and the gateway (auth on) under 32 concurrent clients
//
// BenchmarkStageServer minus BenchmarkDirect is what the gateway adds to
// one request; BenchmarkLoadGateway minus BenchmarkLoadRef (a bare fasthttp
// proxy) what it adds at throughput.

// inferCtx returns a request context for a POST of the benchmark's infer
// body to path, with header set; its body is read already, as a server
// without StreamRequestBody reads it.
func inferCtx(path string, header map[string]string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(http.MethodPost)
	req.SetRequestURI(path)
	req.Header.SetContentType("application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	req.SetBodyString(body)
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, nil, nil)
	return ctx
}

// benchHandler runs h on ctx b.N times, and fails unless ok accepts every
// answer.
func benchHandler(b *testing.B, h fasthttp.RequestHandler, ctx *fasthttp.RequestCtx, ok func(*fasthttp.Response) bool) {
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h(ctx)
		if !ok(&ctx.Response) {
			b.Fatalf("status %d from %q: %s", ctx.Response.StatusCode(), ctx.Response.Header.Peek(replicaHeader), ctx.Response.Body())
		}
	}
}

func status200(r *fasthttp.Response) bool { return r.StatusCode() == http.StatusOK }

// BenchmarkForward measures the gateway's handler for one small infer
// request forwarded to a real replica server over loopback (the replica's
// own cost included; compare against BenchmarkDirect).
func BenchmarkForward(b *testing.B) {
	f := newFixture(b, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(b, "r1")}})
	benchHandler(b, f.g.Handler(nil), inferCtx("/v2/models/m/infer", nil), status200)
}

// BenchmarkForwardVersioned is BenchmarkForward for
// /v2/models/m/versions/3/infer, to two replicas of which one serves
// version 3: the gateway filters by version before it picks.
func BenchmarkForwardVersioned(b *testing.B) {
	v3, v4 := versionedReplica(b, "r3", "m:3"), versionedReplica(b, "r4", "m:4")
	f := newFixture(b, routing.Route{Deployment: "m", Version: "4", Endpoints: []*balance.Endpoint{v3, v4}})
	benchHandler(b, f.g.Handler(nil), inferCtx("/v2/models/m/versions/3/infer", nil), func(r *fasthttp.Response) bool {
		return r.StatusCode() == http.StatusOK && string(r.Header.Peek(replicaHeader)) == "r3"
	})
}

// BenchmarkStageRoute measures finding a deployment's route among 1,000
// and picking one of its 4 replicas by power-of-two-choices, with the
// in-flight count the pick reads kept.
func BenchmarkStageRoute(b *testing.B) {
	tab := &routing.Table{}
	for i := range 1000 {
		eps := make([]*balance.Endpoint, 4)
		for j := range eps {
			eps[j] = balance.NewEndpoint(fmt.Sprintf("d%d-%d", i, j), fmt.Sprintf("http://127.0.0.1:%d", 20000+4*i+j))
		}
		tab.Publish(routing.Route{Deployment: fmt.Sprintf("d%d", i), Endpoints: eps})
	}
	g := New(tab, nil, Options{})
	name := []byte("d500")
	b.ReportAllocs()
	for b.Loop() {
		rt := g.routes.Lookup(b2s(name))
		ep := g.balancer.Pick(rt.Endpoints, nil)
		ep.Acquire()
		ep.Release()
	}
}

// BenchmarkStageLimit measures the tenant limit stage (limitTenant): a
// request's Admit and the release of its ticket, among 1,000 tenants'
// limits, for a tenant bound by a rate limit (tenant-wide and on the
// deployment, each with a concurrency bound too: the bucket's critical
// section and the counts) and for one that no limit binds (a map lookup).
func BenchmarkStageLimit(b *testing.B) {
	limits := make([]serving.Limit, 0, 1002)
	for i := range 1000 {
		limits = append(limits, serving.Limit{Tenant: fmt.Sprintf("tenant-%d", i), Rate: serving.MaxLimitRate, Burst: serving.MaxLimitBurst})
	}
	limits = append(limits,
		serving.Limit{Tenant: "acme", Rate: serving.MaxLimitRate, Burst: serving.MaxLimitBurst, Concurrency: serving.MaxLimitConcurrency},
		serving.Limit{Tenant: "acme", Deployment: "m", Rate: serving.MaxLimitRate, Burst: serving.MaxLimitBurst, Concurrency: serving.MaxLimitConcurrency})
	tab, err := limit.NewTable(limits, 1)
	if err != nil {
		b.Fatal(err)
	}
	l := limit.New(limit.Options{})
	l.Swap(tab)
	for _, tt := range []struct{ name, tenant string }{{"rate limited tenant", "acme"}, {"unlimited tenant", "nobody"}} {
		b.Run(tt.name, func(b *testing.B) {
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Microsecond)
				tk, r, ok := l.Admit(tt.tenant, "m", now)
				if !ok {
					b.Fatalf("refused: %v", r)
				}
				tk.Release()
			}
		})
	}
}

// BenchmarkStageFair measures the fair queueing stage (admit): a request
// to a capped deployment (spec.scaling.maxConcurrency) taking a slot of
// its admission queue while one is free and nobody waits, and giving it
// back.
func BenchmarkStageFair(b *testing.B) {
	tab := &routing.Table{}
	tab.Publish(routing.Route{Deployment: "m", MaxConcurrency: 8,
		Endpoints: []*balance.Endpoint{balance.NewEndpoint("r1", "http://127.0.0.1:1")}})
	q := tab.Lookup("m").Queue()
	if q == nil {
		b.Fatal("a capped route has no admission queue")
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		release, err := q.Acquire(ctx, "acme", fairqueue.Interactive)
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
}

// BenchmarkStageBody measures reading a small infer body from the request
// stream into the exchange's buffer, holding it against the buffered-bytes
// budget, and giving it back.
func BenchmarkStageBody(b *testing.B) {
	g := New(&routing.Table{}, nil, Options{})
	ctx := inferCtx("/v2/models/m/infer", nil)
	src := []byte(body)
	r := bytes.NewReader(src)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(src)
		ctx.Request.SetBodyStream(r, len(src))
		x := g.acquire(ctx)
		held, code := g.readBody(ctx, x)
		if code != 0 || len(x.body) != len(src) {
			b.Fatalf("status %d, %d bytes read", code, len(x.body))
		}
		g.budget.release(held)
		x.release()
	}
	if n := g.budget.Held(); n != 0 {
		b.Errorf("budget holds %d bytes after the loop; want 0", n)
	}
}

// BenchmarkStageUpstream measures sending a read request to a replica over
// loopback and passing its answer on: the HTTP client, the replica's own
// cost included (see BenchmarkDirect).
func BenchmarkStageUpstream(b *testing.B) {
	ep := replica(b, "r1")
	tab := &routing.Table{}
	tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{ep}})
	rt := tab.Lookup("m")
	g := New(tab, nil, Options{})
	b.Cleanup(g.Close)
	ctx := inferCtx("/v2/models/m/infer", nil)
	path := []byte("/v2/models/m/infer")
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		x := g.acquire(ctx)
		x.body = ctx.Request.Body()
		x.tried = append(x.tried, ep)
		if err := g.send(ctx, x, rt, ep, modeInfer, path); err != nil {
			b.Fatal(err)
		}
		if code := copyResponse(ctx, x, ep); code != http.StatusOK {
			b.Fatalf("status %d: %s", code, ctx.Response.Body())
		}
		x.release()
	}
}

// BenchmarkDirect measures a small infer request sent straight to a
// replica with the client the server benchmarks use: what they cost
// without the gateway.
func BenchmarkDirect(b *testing.B) {
	benchClient(b, replica(b, "r1").URL)
}

// BenchmarkStageServer measures a whole request: a client on loopback,
// the front server, the gateway (auth off: loopback's default) and a
// replica on loopback.
func BenchmarkStageServer(b *testing.B) {
	f := newFixture(b, routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(b, "r1")}})
	benchClient(b, f.url)
}

// BenchmarkStageServerAuth is BenchmarkStageServer with what a production
// install turns on: token auth (a cached predict token) and request
// metrics.
func BenchmarkStageServerAuth(b *testing.B) {
	tokens := &tokenMap{m: map[string]auth.Token{}}
	tok := tokens.add(b, "predict:m")
	g := authFixture(b, auth.NewVerifier(tokens, 0, nil), routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(b, "r1")}})
	benchClient(b, serve(b, g), "Authorization", "Bearer "+tok)
}

// benchClient posts the infer body to base's /v2/models/m/infer b.N times,
// one at a time, with header (name, value pairs).
func benchClient(b *testing.B, base string, header ...string) {
	c := &fasthttp.HostClient{Addr: base[len("http://"):]}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(http.MethodPost)
	req.SetRequestURI(base + "/v2/models/m/infer")
	req.Header.SetContentType("application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	req.SetBodyString(body)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Do(req, resp); err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode() != http.StatusOK {
			b.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
		}
	}
}

// BenchmarkHoldAndWake measures a request to a deployment at zero: held,
// woken, and forwarded once a replica is routed (the activator's cost,
// without a replica's start).
func BenchmarkHoldAndWake(b *testing.B) {
	ep := replica(b, "r1")
	tab, rec := &routing.Table{}, &stats.Recorder{}
	pub := &publisher{tab: tab, rec: rec, eps: []*balance.Endpoint{ep}}
	act := activator.New(tab, pub, activator.Options{Timeout: time.Second})
	g := New(tab, act, Options{Metrics: NewMetrics(prometheus.NewRegistry())})
	b.Cleanup(g.Close)
	h := g.Handler(nil)
	ctx := inferCtx("/v2/models/m/infer", nil)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		tab.Publish(routing.Route{Deployment: "m", Stats: rec}) // back to zero
		b.StartTimer()
		ctx.Response.Reset()
		h(ctx)
		if ctx.Response.StatusCode() != http.StatusOK {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// BenchmarkLoadGateway measures the front server and the gateway, auth on,
// under 32 concurrent clients, in front of a minimal fasthttp server
// standing in for a replica: the gateway's cost at throughput, to compare
// with BenchmarkLoadRef, a bare fasthttp proxy (bench/cmd/refproxy's).
// Client, proxy and replica share the process (and, pinned, one CPU).
func BenchmarkLoadGateway(b *testing.B) {
	tokens := &tokenMap{m: map[string]auth.Token{}}
	tok := tokens.add(b, "predict:m")
	g := authFixture(b, auth.NewVerifier(tokens, 0, nil), routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{balance.NewEndpoint("r1", minimalReplica(b))}})
	benchParallel(b, serve(b, g), "Authorization", "Bearer "+tok)
}

// BenchmarkLoadRef is BenchmarkLoadGateway with a bare fasthttp proxy in
// place of the gateway: the floor of what a Go HTTP/1.1 proxy costs.
func BenchmarkLoadRef(b *testing.B) {
	up := minimalReplica(b)
	hc := &fasthttp.HostClient{Addr: up[len("http://"):], MaxConns: 1024}
	ln := listenLoopback(b)
	s := &fasthttp.Server{ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, Handler: func(ctx *fasthttp.RequestCtx) {
		if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error(err.Error(), fasthttp.StatusBadGateway)
		}
	}}
	go s.Serve(ln)
	b.Cleanup(func() { s.Shutdown() })
	benchParallel(b, "http://"+ln.Addr().String())
}

// minimalReplica serves a fixed OIP v2 answer to every request, with
// fasthttp: a replica that costs next to nothing.
func minimalReplica(b *testing.B) string {
	ln := listenLoopback(b)
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"model_name":"m","outputs":[{"name":"output","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`)
	}}
	go s.Serve(ln)
	b.Cleanup(func() { s.Shutdown() })
	return "http://" + ln.Addr().String()
}

// benchParallel posts the infer body to base's /v2/models/m/infer from 32
// goroutines per CPU over at most 64 connections, with header (name,
// value pairs).
func benchParallel(b *testing.B, base string, header ...string) {
	c := &fasthttp.HostClient{Addr: base[len("http://"):], MaxConns: 64, MaxConnWaitTimeout: 10 * time.Second}
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(http.MethodPost)
		req.SetRequestURI(base + "/v2/models/m/infer")
		req.Header.SetContentType("application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		req.SetBodyString(body)
		for pb.Next() {
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != http.StatusOK {
				b.Errorf("%v, status %d: %s", err, resp.StatusCode(), resp.Body())
				return
			}
		}
	})
}

// BenchmarkStageUpstreamSocket is BenchmarkStageUpstream to one replica
// server reached two ways in one run: over loopback TCP and over its Unix
// socket (balance.Endpoint.Socket, as ebb up's replicas are).
func BenchmarkStageUpstreamSocket(b *testing.B) {
	for _, tt := range socketEndpoints(b, replicaServer(b)) {
		b.Run(tt.name, func(b *testing.B) {
			tab := &routing.Table{}
			tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{tt.ep}})
			rt := tab.Lookup("m")
			g := New(tab, nil, Options{})
			b.Cleanup(g.Close)
			ctx := inferCtx("/v2/models/m/infer", nil)
			path := []byte("/v2/models/m/infer")
			b.ReportAllocs()
			for b.Loop() {
				ctx.Response.Reset()
				x := g.acquire(ctx)
				x.body = ctx.Request.Body()
				x.tried = append(x.tried, tt.ep)
				if err := g.send(ctx, x, rt, tt.ep, modeInfer, path); err != nil {
					b.Fatal(err)
				}
				if code := copyResponse(ctx, x, tt.ep); code != http.StatusOK {
					b.Fatalf("status %d: %s", code, ctx.Response.Body())
				}
				x.release()
			}
		})
	}
}

// BenchmarkLoadGatewaySocket is BenchmarkLoadGateway with the minimal
// replica reached two ways in one run: over loopback TCP and over a Unix
// socket.
func BenchmarkLoadGatewaySocket(b *testing.B) {
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"model_name":"m","outputs":[{"name":"output","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`)
	}}
	lns := socketListeners(b)
	for _, ln := range lns {
		go s.Serve(ln)
	}
	b.Cleanup(func() { s.Shutdown() })
	for _, tt := range socketEndpoints(b, lns) {
		b.Run(tt.name, func(b *testing.B) {
			tokens := &tokenMap{m: map[string]auth.Token{}}
			tok := tokens.add(b, "predict:m")
			g := authFixture(b, auth.NewVerifier(tokens, 0, nil), routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{tt.ep}})
			benchParallel(b, serve(b, g), "Authorization", "Bearer "+tok)
		})
	}
}

// socketListeners returns a loopback TCP listener and a Unix socket one.
func socketListeners(b *testing.B) []net.Listener {
	ln, err := net.Listen("unix", unixSocket(b, runtime.GOOS == "linux"))
	if err != nil {
		b.Skipf("no Unix sockets here: %v", err)
	}
	return []net.Listener{listenLoopback(b), ln}
}

// replicaServer serves a real replica server (echo model) on both
// socketListeners, and returns them.
func replicaServer(b *testing.B) []net.Listener {
	m, err := echo.Load("")
	if err != nil {
		b.Fatal(err)
	}
	lns := socketListeners(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = server.New("m", m, server.Options{}).Serve(ctx, lns[0], lns[1]); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return lns
}

// socketEndpoints returns the endpoints of one replica that serves lns
// (socketListeners): by its TCP port, and by its Unix socket.
func socketEndpoints(b *testing.B, lns []net.Listener) []struct {
	name string
	ep   *balance.Endpoint
} {
	base := "http://" + lns[0].Addr().String()
	sock := balance.NewEndpoint("r1", base)
	sock.Socket = lns[1].Addr().String()
	return []struct {
		name string
		ep   *balance.Endpoint
	}{{"tcp", balance.NewEndpoint("r1", base)}, {"unix", sock}}
}
