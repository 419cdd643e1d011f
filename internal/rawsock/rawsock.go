// Package rawsock gives the data plane's socket connections reads and
// writes that do not wake the Go scheduler's monitor thread.
//
// Go's net.Conn makes every read(2) and write(2) through syscall.Syscall,
// which tells the scheduler that a system call began, in case it blocks.
// The scheduler's monitor (sysmon) sleeps while the process is idle, and
// the first such call after an idle stretch wakes it; awake, it polls
// every 20 µs until a millisecond passes with nothing to retake. On a
// socket those calls never block (the runtime sets O_NONBLOCK and waits in
// its poller instead), so the wake buys nothing: at one request at a time,
// a gateway and a replica sharing a CPU each had their monitor woken on
// every request and then preempting them every 20 µs while it lasted,
// context switches that nginx, with no such thread, does not pay.
//
// A Conn of this package reads and writes with syscall.RawSyscall inside
// the connection's syscall.RawConn operations: the poller still waits for
// readiness and applies deadlines exactly as for net.Conn, and the calls,
// which return EAGAIN rather than block, skip the scheduler's bookkeeping.
package rawsock

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// maxRW is the most bytes one read or write asks for, as Go's poller
// bounds them (some kernels refuse larger).
const maxRW = 1 << 30

// Conn is a socket connection whose Read and Write are raw system calls
// (see the package comment); deadlines, Close and the rest are the
// wrapped connection's.
type Conn struct {
	net.Conn
	rc syscall.RawConn
	// rmu and wmu serialize Reads and Writes, whole, as net.Conn's file
	// descriptor locks do: its callers may overlap two Reads (the
	// gateway's watch for a client that goes away reads beside the
	// server), and rd or wr belongs to the one in progress.
	rmu, wmu sync.Mutex
	// rd and wr are the state of the Read and the Write in progress,
	// kept here so that the functions RawConn calls, bound once, cost no
	// allocation.
	rd, wr      op
	read, write func(fd uintptr) bool
}

// op is one Read's or Write's state.
type op struct {
	p   []byte
	n   int
	err error
}

// Wrap returns c with raw reads and writes when it is a socket that
// supports them (a *net.TCPConn or *net.UnixConn on Linux), else c itself.
func Wrap(c net.Conn) net.Conn {
	if !supported {
		return c
	}
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return c // TLS, pipes and wrappers keep their own methods
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return c
	}
	w := &Conn{Conn: c, rc: rc}
	w.read, w.write = w.stepRead, w.stepWrite
	return w
}

// Listener wraps each connection ln accepts (Wrap).
func Listener(ln net.Listener) net.Listener {
	if !supported {
		return ln
	}
	return listener{ln}
}

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// Read reads as net.Conn's Read does: what is there, waiting for the
// poller when nothing is; io.EOF once the peer closed.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	c.rmu.Lock()
	c.rd = op{p: p}
	err := c.rc.Read(c.read)
	o := c.rd
	c.rd = op{}
	c.rmu.Unlock()
	if err != nil {
		return 0, c.renamed("read", err)
	}
	return o.n, o.err
}

// Write writes all of p, waiting for the poller whenever the socket's
// buffer is full, as net.Conn's Write does.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	c.wr = op{p: p}
	err := c.rc.Write(c.write)
	o := c.wr
	c.wr = op{}
	c.wmu.Unlock()
	if err != nil {
		return o.n, c.renamed("write", err)
	}
	return o.n, o.err
}

// stepRead is one call of RawConn.Read's function: true when the read is
// over (data, EOF or an error), false to wait for the poller.
func (c *Conn) stepRead(fd uintptr) bool {
	o := &c.rd
	n, errno := Read(fd, o.p)
	switch {
	case errno == syscall.EAGAIN:
		return false
	case errno != 0:
		o.err = c.opError("read", errno)
	case n == 0:
		o.err = io.EOF
	}
	o.n = n
	return true
}

// stepWrite is one call of RawConn.Write's function: it writes what is
// left of the Write's bytes; false to wait for the poller.
func (c *Conn) stepWrite(fd uintptr) bool {
	o := &c.wr
	for o.n < len(o.p) {
		chunk := o.p[o.n:]
		if len(chunk) > maxRW {
			chunk = chunk[:maxRW]
		}
		n, errno := Write(fd, chunk)
		switch {
		case errno == syscall.EAGAIN:
			return false
		case errno != 0:
			o.err = c.opError("write", errno)
			return true
		}
		o.n += n
	}
	return true
}

// opError wraps errno as net.Conn's methods do (OpError).
func (c *Conn) opError(op string, errno syscall.Errno) error { return OpError(c, op, errno) }

// OpError wraps errno of op ("read", "write") on c as net.Conn's methods
// do, so that callers that look for syscall.ECONNRESET or EPIPE with
// errors.Is find it.
func OpError(c net.Conn, op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

// renamed gives an error of RawConn's operation (a deadline, a closed
// connection) the name net.Conn's methods give it ("read" for "raw-read").
func (c *Conn) renamed(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		cp := *oe
		cp.Op = op
		return &cp
	}
	return err
}
