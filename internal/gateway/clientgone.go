package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/rawsock"
	"github.com/valyala/fasthttp"
)

// Noticing a client that goes away.
//
// fasthttp reads a connection only between requests, so a request's
// context (*fasthttp.RequestCtx) is cancelled only when the server shuts
// down: a client that gives up on a held request would keep its place in
// the activator's queue until the hold timed out. A server connection is
// therefore a watchConn, which can read one byte in the background while a
// request is handled, as net/http does: EOF or a reset means the client is
// gone; a byte it reads (the next request, pipelined) is kept and handed to
// the server's next Read. Watching starts only when a request waits (the
// first call of its context's Done: a held request, a log stream), so the
// common request costs nothing, and only once its body has been read.

// aLongTimeAgo is a read deadline that makes a pending Read return at once.
var aLongTimeAgo = time.Unix(1, 0)

// watchListener wraps each accepted connection in a watchConn whose
// deadlines may stand up to slack early (see watchConn).
type watchListener struct {
	net.Listener
	slack time.Duration
}

func (l watchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := &watchConn{Conn: c, raw: rawsock.Wrap(connlimit.Unwrap(c)), slack: l.slack}
	if tc, ok := c.(tlsConn); ok {
		// fasthttp tells TLS connections by these methods (RequestCtx.IsTLS).
		return &watchTLSConn{watchConn: w, tc: tc}, nil
	}
	return w, nil
}

// tlsConn is what fasthttp needs of a TLS connection.
type tlsConn interface {
	Handshake() error
	ConnectionState() tls.ConnectionState
}

type watchTLSConn struct {
	*watchConn
	tc tlsConn
}

// Handshake reads and writes past watchConn: the deadlines set for it
// apply first.
func (c *watchTLSConn) Handshake() error {
	c.mu.Lock()
	c.applyLocked()
	c.mu.Unlock()
	return c.tc.Handshake()
}

func (c *watchTLSConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// watchConn is a server connection that can watch for its client closing
// while the server does not read it, and that sets its deadlines cheaply.
//
// Deadlines. fasthttp sets three or four deadlines per request (the idle
// wait, the headers, the write, perhaps the body), each a runtime timer
// reset that costs more than the rest of the connection's bookkeeping. So
// a read deadline is only recorded, and applied when a read reaches the
// connection: the headers' deadline of a request that came whole in the
// read of its first byte is never applied. And a deadline is not applied
// when the one in force is at most slack earlier than it (1/64 of the
// server's shortest timeout): a timeout may fire up to slack early, never
// late, and the idle and write deadlines, which move forward with every
// request, are applied about once per slack instead of once per request.
type watchConn struct {
	net.Conn // Close (a connlimit connection gives its slot back) and the rest
	// raw is where reads, writes and deadlines go: Conn without
	// connlimit's wrapper, one call less for each, reading and writing
	// with raw system calls (package rawsock).
	raw   net.Conn
	slack time.Duration
	// active is set while a background read runs, left something for
	// Read (a byte or an error), or a read deadline waits to be applied;
	// Read takes the fast path without it.
	active atomic.Bool
	// idle is set while the connection carries no request (Server.track).
	idle atomic.Bool

	// mu guards the fields below.
	mu sync.Mutex
	rd time.Time // the read deadline the server set last
	// rdPending is set while rd is not applied to raw; rdArmed is the
	// deadline raw has, when rdKnown.
	rdPending bool
	rdArmed   time.Time
	rdKnown   bool
	// wdArmed is the write deadline raw has, when wdKnown.
	wdArmed time.Time
	wdKnown bool
	reading bool          // a background read runs
	done    chan struct{} // closed when it returns
	gone    chan struct{} // closed when it saw the client go away
	stash   [1]byte
	stashed bool  // stash holds a byte the server has not read
	err     error // how the client went away; every later Read returns it
}

func (c *watchConn) Read(p []byte) (int, error) {
	if !c.active.Load() {
		return c.raw.Read(p)
	}
	c.mu.Lock()
	c.stopLocked()
	c.applyLocked()
	switch {
	case c.stashed && len(p) > 0:
		p[0] = c.stash[0]
		c.stashed = false
		c.settleLocked()
		c.mu.Unlock()
		return 1, nil
	case c.err != nil:
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	c.settleLocked()
	c.mu.Unlock()
	return c.raw.Read(p)
}

func (c *watchConn) Write(p []byte) (int, error) { return c.raw.Write(p) }

// applyLocked applies rd to raw if it waits to be (c.mu held, no watch
// running).
func (c *watchConn) applyLocked() {
	if !c.rdPending || c.reading {
		return
	}
	c.rdPending = false
	if c.rdKnown && c.standsFor(c.rdArmed, c.rd) {
		return
	}
	c.rdArmed, c.rdKnown = c.rd, c.raw.SetReadDeadline(c.rd) == nil
}

// standsFor reports whether the deadline armed may stand for want: both
// none, or armed no later than want and at most slack earlier.
func (c *watchConn) standsFor(armed, want time.Time) bool {
	if armed.IsZero() || want.IsZero() {
		return armed.IsZero() && want.IsZero()
	}
	early := want.Sub(armed)
	return early >= 0 && early <= c.slack
}

// settleLocked sets active from what Read must do besides reading (c.mu
// held).
func (c *watchConn) settleLocked() {
	c.active.Store(c.reading || c.stashed || c.err != nil || c.rdPending)
}

// SetReadDeadline sets the deadline of the server's reads, applied when one
// reaches the connection (see watchConn); while a watch runs it waits for
// the watch to stop, which happens before the server reads again (Read).
func (c *watchConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rd, c.rdPending = t, true
	c.active.Store(true)
	c.mu.Unlock()
	return nil
}

// SetWriteDeadline sets the deadline of writes, unless the one in force
// stands for it (see watchConn).
func (c *watchConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	if c.wdKnown && c.standsFor(c.wdArmed, t) {
		c.mu.Unlock()
		return nil
	}
	err := c.raw.SetWriteDeadline(t)
	c.wdArmed, c.wdKnown = t, err == nil
	c.mu.Unlock()
	return err
}

func (c *watchConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// watch starts watching the client, and returns a channel closed when it
// goes away; a nil channel (never closed) when it sent more already.
func (c *watchConn) watch() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return closedChan
	case c.stashed:
		return nil
	case c.reading:
		return c.gone
	}
	c.reading = true
	c.done, c.gone = make(chan struct{}), make(chan struct{})
	c.active.Store(true)
	c.rdArmed, c.rdKnown = time.Time{}, c.raw.SetReadDeadline(time.Time{}) == nil
	go c.background(c.done, c.gone)
	return c.gone
}

// unwatch stops watching; what the background read got stays for Read.
func (c *watchConn) unwatch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked()
	c.settleLocked()
}

func (c *watchConn) background(done, gone chan struct{}) {
	n, err := c.raw.Read(c.stash[:])
	c.mu.Lock()
	c.reading = false
	c.stashed = n > 0
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		c.err = err
		close(gone)
	}
	c.mu.Unlock()
	close(done)
}

// stopLocked ends a background read and waits for it; c.mu is held, and
// released while waiting. The server's read deadline is applied again
// when a read reaches the connection.
func (c *watchConn) stopLocked() {
	for c.reading {
		_ = c.raw.SetReadDeadline(aLongTimeAgo)
		c.rdKnown, c.rdPending = false, true
		done := c.done
		c.mu.Unlock()
		<-done
		c.mu.Lock()
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// reqContext is the context of one request: Done is closed when its client
// goes away (watched from the first call of Done on) or, on a connection
// that is not a watchConn, when the server shuts down. Call stop before the
// handler returns. The zero value is unusable; init it per request.
type reqContext struct {
	rc   *fasthttp.RequestCtx
	conn *watchConn
	// traced, while the request is traced, holds its span: Value looks
	// there first (trace.go).
	traced context.Context

	// mu guards gone and watching: Done may be called from more than one
	// goroutine (context.WithTimeout watches its parent).
	mu       sync.Mutex
	watching bool
	gone     <-chan struct{}
}

var _ context.Context = (*reqContext)(nil)

func (c *reqContext) init(rc *fasthttp.RequestCtx) {
	c.rc, c.conn, c.watching, c.gone, c.traced = rc, connOf(rc), false, nil, nil
}

// connOf returns rc's watchConn, or nil.
func connOf(rc *fasthttp.RequestCtx) *watchConn { return asWatchConn(rc.Conn()) }

// asWatchConn returns c as a watchConn, or nil.
func asWatchConn(c net.Conn) *watchConn {
	switch c := c.(type) {
	case *watchConn:
		return c
	case *watchTLSConn:
		return c.watchConn
	}
	return nil
}

func (c *reqContext) Deadline() (time.Time, bool) { return time.Time{}, false }

func (c *reqContext) Value(key any) any {
	if c.traced != nil {
		if v := c.traced.Value(key); v != nil {
			return v
		}
	}
	return c.rc.Value(key)
}

func (c *reqContext) Done() <-chan struct{} {
	if c.conn == nil {
		if p := parentOf(c.rc); p != nil {
			return p.Done() // an in-process request (Forward)
		}
		return c.rc.Done()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.watching {
		c.watching = true
		c.gone = c.conn.watch()
	}
	return c.gone
}

func (c *reqContext) Err() error {
	if c.conn == nil {
		if p := parentOf(c.rc); p != nil {
			return p.Err()
		}
		return c.rc.Err()
	}
	c.mu.Lock()
	gone := c.gone
	c.mu.Unlock()
	select {
	case <-gone:
		return context.Canceled
	default:
		return nil
	}
}

// stop ends the watch, if one started.
func (c *reqContext) stop() {
	if c.conn == nil {
		return
	}
	c.mu.Lock()
	watching := c.watching
	c.watching = false
	c.mu.Unlock()
	if watching {
		c.conn.unwatch()
	}
}
