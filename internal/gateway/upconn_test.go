package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/rawsock"
)

// upPair connects to a listener on network ("unix" or "tcp") and returns
// the client's end, wrapped by newUpConn, and the server's.
func upPair(t *testing.T, network string) (*upConn, net.Conn) {
	t.Helper()
	var ln net.Listener
	if network == "unix" {
		var err error
		if ln, err = net.Listen("unix", unixSocket(t, false)); err != nil {
			t.Fatal(err)
		}
	} else {
		ln = listenLoopback(t)
	}
	s, c := connPair(t, ln)
	u, ok := newUpConn(c).(*upConn)
	if !ok {
		t.Fatalf("newUpConn(%T) did not wrap it", c)
	}
	return u, s
}

// echoLines answers each line read on s with the line upper-cased.
func echoLines(s net.Conn) {
	br := bufio.NewReader(s)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := io.WriteString(s, strings.ToUpper(l)); err != nil {
			return
		}
	}
}

// TestUpConnExchanges sends requests and reads answers, as the HTTP client
// does: the request kept by Write goes out with the next Read, requests of
// any size, one after the other.
func TestUpConnExchanges(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			c, s := upPair(t, network)
			go echoLines(s)
			br := bufio.NewReader(c)
			for i, n := range []int{1, 100, maxDeferredWrite - 1, maxDeferredWrite, maxDeferredWrite + 1, 1 << 20, 5} {
				req := strings.Repeat("a", n) + "\n"
				// Written in two pieces, as a buffered writer may.
				if _, err := io.WriteString(c, req[:len(req)/2]); err != nil {
					t.Fatal(err)
				}
				if _, err := io.WriteString(c, req[len(req)/2:]); err != nil {
					t.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				got, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("request %d (%d bytes): %v", i, n, err)
				}
				if got != strings.ToUpper(req) {
					t.Fatalf("request %d (%d bytes): answer of %d bytes; want the request upper-cased", i, n, len(got))
				}
				if len(c.pending) != 0 {
					t.Fatalf("request %d: %d bytes still kept after the answer", i, len(c.pending))
				}
			}
		})
	}
}

// TestUpConnPeerClosed checks that a request on a connection the replica
// closed while it was idle fails, as the client's retry needs, instead
// of waiting forever for an answer: the closing's readiness came before
// the read began, so the poller does not report it again.
func TestUpConnPeerClosed(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			c, s := upPair(t, network)
			s.Close()
			time.Sleep(50 * time.Millisecond) // the close reaches c while idle
			if _, err := io.WriteString(c, "request\n"); err != nil {
				t.Fatal(err) // kept, not sent: no error yet
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := c.Read(make([]byte, 64))
			if err == nil {
				t.Fatal("read after the peer closed: no error")
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("read after the peer closed waited for its deadline: %v", err)
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("read after the peer closed: %v; want EOF, EPIPE or ECONNRESET (retried on a new connection)", err)
			}
		})
	}
}

// TestUpConnBlockedWrite checks a request whose write fills the socket:
// what does not fit is written the ordinary way once the peer reads, and
// the answer arrives after it.
func TestUpConnBlockedWrite(t *testing.T) {
	c, s := upPair(t, "unix")
	inner := c.Conn
	if rc, ok := inner.(*rawsock.Conn); ok {
		inner = rc.Conn
	}
	inner.(*net.UnixConn).SetWriteBuffer(4096)
	s.(*net.UnixConn).SetReadBuffer(4096)
	req := strings.Repeat("b", maxDeferredWrite-1) + "\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		time.Sleep(200 * time.Millisecond) // the client's write blocks meanwhile
		l, _ := bufio.NewReader(s).ReadString('\n')
		got <- l
		io.WriteString(s, "done\n")
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	answer, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || answer != "done\n" {
		t.Fatalf("answer %q, %v; want done", answer, err)
	}
	if l := <-got; l != req {
		t.Errorf("the peer read %d bytes; want the request's %d", len(l), len(req))
	}
}

// TestUpConnDeadline checks that a read deadline bounds the wait for an
// answer that does not come.
func TestUpConnDeadline(t *testing.T) {
	c, s := upPair(t, "unix")
	go io.Copy(io.Discard, s) // reads, never answers
	io.WriteString(c, "request\n")
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := c.Read(make([]byte, 64))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read = %v; want the deadline exceeded", err)
	}
}

// TestUpConnCloseDropsPending checks that Close drops a kept request:
// nothing reaches the peer.
func TestUpConnCloseDropsPending(t *testing.T) {
	c, s := upPair(t, "unix")
	io.WriteString(c, "never sent\n")
	c.Close()
	s.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(s)
	if err != nil || len(b) != 0 {
		t.Errorf("the peer read %q, %v; want nothing, then EOF", b, err)
	}
}

// TestUpConnNoAlloc checks that sending a kept request and reading its
// answer allocate nothing: it runs once per request.
func TestUpConnNoAlloc(t *testing.T) {
	c, s := upPair(t, "unix")
	go func() { // answers each request's 8 bytes with 8 bytes, allocating nothing
		b := make([]byte, 8)
		for {
			if _, err := io.ReadFull(s, b); err != nil {
				return
			}
			if _, err := s.Write(b); err != nil {
				return
			}
		}
	}()
	req, answer := []byte("request\n"), make([]byte, 8)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, answer); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a request and its answer allocate %v times; want 0", allocs)
	}
}
