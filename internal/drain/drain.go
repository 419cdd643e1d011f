// Package drain shuts net/http servers down without resetting a client's
// keep-alive connection.
package drain

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// KeepAliveGrace is how long a stopping server keeps idle keep-alive
// connections open, answering each request on them with "Connection:
// close", before it closes the ones still idle: the grace of
// Drainer.Shutdown, and of gateway.Server's, which drains the same way.
const KeepAliveGrace = time.Second

// Drainer shuts an http.Server down without resetting a client's
// connection. http.Server.Shutdown alone closes every idle keep-alive
// connection at once, so a client that sends its next request on one in
// that instant has it reset (a POST is not retried). A drainer first marks
// every response "Connection: close" (the client then closes the
// connection after reading it), waits up to a grace period for the idle
// connections to be used or closed, and only then calls Shutdown, which
// closes those left (a FIN, not a reset: nothing unread is pending on an
// idle connection) and waits for the requests in flight.
//
// Install it with New before the server serves. It drains the net/http
// servers (ebb up's --admin-addr); the front server of ebb up and ebb
// gateway, gateway.Server, drains the same way by itself.
type Drainer struct {
	srv      *http.Server
	draining atomic.Bool

	// mu guards idle and changed.
	mu      sync.Mutex
	idle    map[net.Conn]bool // connections with no request in flight
	changed chan struct{}     // closed and replaced when idle changes
}

// New wraps srv's handler and connection-state hook.
func New(srv *http.Server) *Drainer {
	d := &Drainer{srv: srv, idle: map[net.Conn]bool{}, changed: make(chan struct{})}
	next := srv.Handler
	if next == nil {
		next = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&closingWriter{ResponseWriter: w, d: d}, r)
	})
	hook := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		d.track(c, s)
		if hook != nil {
			hook(c, s)
		}
	}
	return d
}

func (d *Drainer) track(c net.Conn, s http.ConnState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch s {
	case http.StateNew, http.StateIdle:
		d.idle[c] = true
	default:
		delete(d.idle, c)
	}
	close(d.changed)
	d.changed = make(chan struct{})
}

// idleConns returns how many connections are idle, and a channel closed at
// the next change.
func (d *Drainer) idleConns() (int, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.idle), d.changed
}

// Shutdown closes keep-alive connections gracefully, then shuts the server
// down as http.Server.Shutdown does, within ctx.
func (d *Drainer) Shutdown(ctx context.Context, grace time.Duration) error {
	d.draining.Store(true)
	t := time.NewTimer(grace)
	defer t.Stop()
wait:
	for {
		n, changed := d.idleConns()
		if n == 0 {
			break
		}
		select {
		case <-changed:
		case <-t.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	return d.srv.Shutdown(ctx)
}

// closingWriter adds "Connection: close" to a response whose header is
// written while the server drains.
type closingWriter struct {
	http.ResponseWriter
	d *Drainer
}

func (w *closingWriter) closing() {
	if w.d.draining.Load() {
		w.Header().Set("Connection", "close")
	}
}

func (w *closingWriter) WriteHeader(code int) {
	w.closing()
	w.ResponseWriter.WriteHeader(code)
}

func (w *closingWriter) Write(b []byte) (int, error) {
	w.closing()
	return w.ResponseWriter.Write(b)
}

// Flush lets streamed responses through.
func (w *closingWriter) Flush() {
	w.closing()
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the server's own writer.
func (w *closingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
