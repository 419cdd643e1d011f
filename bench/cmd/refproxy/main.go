// Command refproxy is a minimal Go reverse proxy that the proxy-overhead
// benchmark runs as a reference point: what a Go HTTP stack costs before
// ebb adds routing, holding, balancing, stats and metrics. It is not a
// peer. -impl picks the stack: net/http's httputil.ReverseProxy with a
// kept-alive transport (default), or fasthttp's server and HostClient; with
// -unix, fasthttp reaches the upstream on that Unix socket instead of its
// TCP port (the upstream URL still names the Host), as ebb's gateway
// reaches a local replica.
//
//	refproxy -listen 127.0.0.1:9000 -upstream http://127.0.0.1:9001 [-impl fasthttp [-unix @socket]]
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := flag.String("upstream", "", "base URL of the server to proxy to")
	impl := flag.String("impl", "nethttp", "nethttp (httputil.ReverseProxy) or fasthttp")
	unix := flag.String("unix", "", "with -impl fasthttp: reach the upstream on this Unix socket (a path, or @name for a Linux abstract one)")
	flag.Parse()
	u, err := url.Parse(*upstream)
	if err != nil || u.Host == "" {
		log.Fatalf("refproxy: -upstream must be a base URL such as http://127.0.0.1:9001, got %q", *upstream)
	}
	switch {
	case *impl == "nethttp" && *unix == "":
		log.Fatal(serveNetHTTP(*listen, u))
	case *impl == "fasthttp":
		log.Fatal(serveFastHTTP(*listen, u, *unix))
	case *unix != "":
		log.Fatalf("refproxy: -unix needs -impl fasthttp")
	default:
		log.Fatalf("refproxy: -impl must be nethttp or fasthttp, got %q", *impl)
	}
}

func serveNetHTTP(listen string, u *url.URL) error {
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Handle("/", rp)
	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

func serveFastHTTP(listen string, u *url.URL, unix string) error {
	hc := &fasthttp.HostClient{Addr: u.Host, MaxConns: 1024, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	if unix != "" {
		hc.Dial = func(string) (net.Conn, error) { return net.Dial("unix", unix) }
	}
	srv := &fasthttp.Server{
		ReadTimeout: 30 * time.Second,
		Handler: func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Path()) == "/v2/health/ready" {
				return
			}
			if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
				ctx.Error(err.Error(), fasthttp.StatusBadGateway)
			}
		},
	}
	return srv.ListenAndServe(listen)
}
