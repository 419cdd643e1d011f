package gateway

import (
	"io"
	"net"
	"syscall"

	"github.com/ebb-ml/ebb/internal/rawsock"
)

// A connection to a replica sends a request in the same read operation
// that waits for its answer, saving a system call per request.
//
// Go's net.Conn.Read tries the read(2) first and waits for the poller only
// when it finds nothing. Right after a request is written, the answer is
// never there yet (the replica has not even been woken), so that first
// read always fails with EAGAIN: one wasted system call per request, on
// a path of about six. nginx has none: its event loop reads only what the
// poller reported. Waiting for the poller before the first read is safe
// only when no readiness can have been missed, and Go's poller forgets a
// readiness that came before a read operation began (it is edge
// triggered). So the request is not written by Write: Write keeps it, and
// the next Read writes it inside its own read operation (syscall.RawConn
// Read), then waits for the answer without a read. Any answer arrives
// after the operation began, so the poller reports it.
//
// What a replica can send unasked is its closing of the connection: on an
// idle connection that readiness may be forgotten. Then the write fails
// (EPIPE on a Unix socket), or the peer answers it with a reset, which the
// poller reports; the gateway retries such a request on a new connection
// (retryStale). A request too large to keep, or one whose write would
// block, is written the ordinary way, and the read after it is ordinary.
//
// Every read and write of an upConn, inside its operation or not, is a
// raw system call (package rawsock), which does not wake the scheduler's
// monitor thread.

// maxDeferredWrite is the most request bytes an upConn keeps for its next
// Read; a larger request is written at once.
const maxDeferredWrite = 16 << 10

// upConn is a connection to a replica that defers the write of a request
// to the read of its answer (see above).
type upConn struct {
	net.Conn
	rc      syscall.RawConn
	pending []byte // written by the client, not yet sent
	op      upRead
	step    func(fd uintptr) bool // c.stepRead, bound once
}

// newUpConn wraps c, a Unix or TCP connection; any other connection is
// returned as it is.
func newUpConn(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	u := &upConn{Conn: rawsock.Wrap(c), rc: rc}
	u.step = u.stepRead
	return u
}

func (c *upConn) Write(p []byte) (int, error) {
	if len(c.pending)+len(p) <= maxDeferredWrite {
		c.pending = append(c.pending, p...)
		return len(p), nil
	}
	if err := c.flush(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// flush sends what Write kept, the ordinary way.
func (c *upConn) flush() error {
	if len(c.pending) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.pending)
	c.pending = c.pending[:0]
	return err
}

func (c *upConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		return c.Conn.Read(p)
	}
	c.op = upRead{p: p}
	opErr := c.rc.Read(c.step)
	o := c.op
	c.op = upRead{}
	switch {
	case opErr != nil:
		c.pending = c.pending[:0]
		return 0, opErr
	case o.blocked:
		if err := c.flush(); err != nil {
			return 0, err
		}
		return c.Conn.Read(p)
	}
	return o.n, o.err
}

// upRead is the state of one Read that sends the kept request: in the
// connection, so that the function RawConn.Read calls (stepRead, bound
// once in newUpConn) costs no allocation per request.
type upRead struct {
	p       []byte
	n       int
	err     error
	sent    bool // the kept request went out in this operation
	blocked bool // its write would block: finish it the ordinary way
}

// stepRead is one call of RawConn.Read's function: the first sends the kept
// request and waits; the next ones read the answer.
func (c *upConn) stepRead(fd uintptr) bool {
	o := &c.op
	if !o.sent {
		o.sent = true
		buf := c.pending
		for off := 0; off < len(buf); {
			m, werr := rawsock.Write(fd, buf[off:])
			switch {
			case werr == syscall.EAGAIN:
				c.pending, o.blocked = append(buf[:0], buf[off:]...), true
				return true
			case werr != 0:
				c.pending = buf[:0]
				o.err = c.opError("write", werr)
				return true
			}
			off += m
		}
		c.pending = buf[:0]
		return false // the answer cannot be here yet: wait for the poller
	}
	var rerr syscall.Errno
	o.n, rerr = rawsock.Read(fd, o.p)
	switch {
	case rerr == syscall.EAGAIN:
		return false // not yet: the poller reports the answer
	case rerr != 0:
		o.n, o.err = 0, c.opError("read", rerr)
	case o.n == 0 && len(o.p) > 0:
		o.err = io.EOF
	}
	return true
}

// opError wraps errno as net.Conn's methods do, so that errors.Is finds
// it (retryStale).
func (c *upConn) opError(op string, errno syscall.Errno) error { return rawsock.OpError(c, op, errno) }
