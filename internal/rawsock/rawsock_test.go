package rawsock_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/rawsock"
)

// pair returns a connected pair over network ("tcp" on loopback or "unix"):
// the accepted side wrapped by rawsock.Listener, and the dialled side
// plain.
func pair(t *testing.T, network string) (wrapped, plain net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	wl := rawsock.Listener(ln)
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := wl.Accept()
		ch <- accepted{c, err}
	}()
	plain, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Cleanup(func() { a.c.Close(); plain.Close() })
	return a.c, plain
}

var networks = []string{"tcp", "unix"}

func TestListenerWraps(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			w, _ := pair(t, network)
			_, ok := w.(*rawsock.Conn)
			if want := runtime.GOOS == "linux"; ok != want {
				t.Fatalf("accepted %T; wrapped = %v, want %v on %s", w, ok, want, runtime.GOOS)
			}
		})
	}
}

func TestWrapLeavesOthers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := rawsock.Wrap(a); got != a {
		t.Fatalf("Wrap(net.Pipe) = %T, want the pipe itself", got)
	}
}

// TestLargeTransfers moves more than a socket buffer holds each way, so
// that writes come back short or with EAGAIN and wait for the poller, and
// checks every byte.
func TestLargeTransfers(t *testing.T) {
	data := make([]byte, 8<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			w, p := pair(t, network)
			for _, dir := range []struct {
				name     string
				from, to net.Conn
			}{{"write", w, p}, {"read", p, w}} {
				errc := make(chan error, 1)
				go func() {
					n, err := dir.from.Write(data)
					if err == nil && n != len(data) {
						err = io.ErrShortWrite
					}
					errc <- err
				}()
				// A write that came back short would leave the read
				// waiting: it fails at the deadline instead.
				if err := dir.to.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(data))
				if _, err := io.ReadFull(dir.to, got); err != nil {
					t.Fatalf("%s: read: %v", dir.name, err)
				}
				if err := <-errc; err != nil {
					t.Fatalf("%s: write: %v", dir.name, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("%s: the bytes read differ from those written", dir.name)
				}
			}
		})
	}
}

func TestZeroLengthRead(t *testing.T) {
	w, _ := pair(t, "tcp")
	if n, err := w.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
}

func TestEOF(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			w, p := pair(t, network)
			if _, err := p.Write([]byte("last")); err != nil {
				t.Fatal(err)
			}
			p.Close()
			got, err := io.ReadAll(w)
			if err != nil || string(got) != "last" {
				t.Fatalf("ReadAll = %q, %v; want \"last\", nil", got, err)
			}
			if n, err := w.Read(make([]byte, 8)); n != 0 || err != io.EOF {
				t.Fatalf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
			}
		})
	}
}

// TestDeadlines checks that deadlines apply as on net.Conn: a timeout
// error that errors.Is finds as os.ErrDeadlineExceeded, named for the
// method.
func TestDeadlines(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			w, _ := pair(t, network)
			if err := w.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			_, err := w.Read(make([]byte, 8))
			checkTimeout(t, err, "read")
			if err := w.SetReadDeadline(time.Time{}); err != nil {
				t.Fatal(err)
			}

			// The peer does not read: the write fills both buffers and
			// times out, having written part.
			if err := w.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			big := make([]byte, 64<<20)
			n, err := w.Write(big)
			checkTimeout(t, err, "write")
			if n <= 0 || n >= len(big) {
				t.Fatalf("a timed-out write wrote %d of %d bytes; want part", n, len(big))
			}
		})
	}
}

func checkTimeout(t *testing.T, err error, op string) {
	t.Helper()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s past its deadline: %v (%T); want a timeout wrapping os.ErrDeadlineExceeded", op, err, err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != op {
		t.Fatalf("%s past its deadline: %#v; want a *net.OpError with Op %q", op, err, op)
	}
}

// TestPeerGone checks the errors of a write to a connection its peer
// reset: errors.Is finds the errno, as the gateway's retry of a stale
// connection looks for it.
func TestPeerGone(t *testing.T) {
	w, p := pair(t, "tcp")
	// Unread data and no linger: the close resets the connection.
	if _, err := w.Write([]byte("unread")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := p.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	p.Close()
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = w.Write([]byte("more"))
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write to a reset connection: %v; want ECONNRESET or EPIPE", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("write to a reset connection: %#v; want a *net.OpError with Op \"write\"", err)
	}
}

func TestClosed(t *testing.T) {
	w, _ := pair(t, "unix")
	w.Close()
	if _, err := w.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v; want net.ErrClosed", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v; want net.ErrClosed", err)
	}
}

// TestConcurrentReadWrite runs a Read and a Write at once, as net.Conn
// allows: a read blocked for data must not disturb a write.
func TestConcurrentReadWrite(t *testing.T) {
	w, p := pair(t, "unix")
	go func() {
		// Echo what arrives.
		_, _ = io.Copy(p, p)
	}()
	want := bytes.Repeat([]byte("0123456789"), 100_000)
	if err := w.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := w.Write(want)
		errc <- err
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(w, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("echoed bytes differ")
	}
}

// TestOverlappingReads runs two Reads on one connection at once, as the
// gateway's watch for a client going away may beside its server: each
// must return only bytes it read into its own buffer (a Read's state
// taken over by the other returned a count over a buffer never written:
// "DOST" for "POST").
func TestOverlappingReads(t *testing.T) {
	w, p := pair(t, "unix")
	// Bytes a Read lost leave the other waiting: it fails at the deadline.
	if err := w.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	const n = 400
	var got atomic.Int64
	stale := make(chan string, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				buf := []byte("XXXX")
				k, err := w.Read(buf)
				for _, b := range buf[:k] {
					if b != 'a' {
						stale <- fmt.Sprintf("a Read returned %d bytes %q; want only a", k, buf[:k])
						return
					}
				}
				got.Add(int64(k))
				if err != nil {
					return
				}
			}
		})
	}
	for range n {
		if _, err := p.Write([]byte{'a'}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Microsecond)
	}
	p.Close()
	wg.Wait()
	close(stale)
	for s := range stale {
		t.Fatal(s)
	}
	if got.Load() != n {
		t.Fatalf("the Reads returned %d bytes; want %d", got.Load(), n)
	}
}
