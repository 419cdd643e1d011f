package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"

	"github.com/ebb-ml/ebb/internal/api"
	"github.com/ebb-ml/ebb/internal/certs"
	"github.com/ebb-ml/ebb/internal/drain"
	"github.com/ebb-ml/ebb/internal/ui"
)

// adminServer is ebb up's admin API on an address of its own
// (--admin-addr), apart from inference: a firewall or a private interface
// can then keep it from the clients that may call models. It has the same
// limits, TLS and Host/Origin checks as the main listener.
type adminServer struct {
	srv   *http.Server
	ln    net.Listener
	drain *drain.Drainer
	done  chan error
}

// listenAdmin binds --admin-addr for h (the admin API behind its auth).
// capped applies the cap on open connections (--max-conns) to the
// listener, as it does to the main one: gateway.Listener, which counts each
// wait in ebb_gateway_limited_total{limit="conns"}.
func listenAdmin(o upOptions, h http.Handler, stls *certs.Server, capped func(net.Listener) net.Listener) (*adminServer, error) {
	ln, err := net.Listen("tcp", o.adminAddr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s for the admin API: %w (pick another address with --admin-addr, or leave it empty to serve the admin API on --addr)", o.adminAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", h)
	mux.Handle("/ui", ui.Handler()) // the dashboard, beside the admin API it reads
	mux.Handle("/ui/", ui.Handler())
	srv := o.limits.Server(mux)
	return &adminServer{srv: srv, ln: stls.HTTPListener(capped(ln)), drain: drain.New(srv), done: make(chan error, 1)}, nil
}

// addr is the address the admin API bound (its real port for port 0).
func (a *adminServer) addr() string { return a.ln.Addr().String() }

// serve runs the server until shutdown; its result is in a.done.
func (a *adminServer) serve() {
	err := a.srv.Serve(a.ln)
	if err == http.ErrServerClosed {
		err = nil
	}
	a.done <- err
}

// shutdown closes keep-alive connections gracefully and waits for
// in-flight admin requests until ctx ends.
func (a *adminServer) shutdown(ctx context.Context) error {
	return a.drain.Shutdown(ctx, drain.KeepAliveGrace)
}

// adminElsewhere answers /v1 on the inference address when the admin API
// has its own: a 404 that says why, not the gateway's "no such model".
func adminElsewhere() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: "admin/elsewhere",
			Message: "the admin API is not served on this address: this ebb up serves it on its --admin-addr; point the CLI there with --server"}})
	})
}
