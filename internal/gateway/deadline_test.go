package gateway

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/connlimit"
)

// countingConn counts the deadlines set on a real connection.
type countingConn struct {
	net.Conn
	reads, writes int
}

func (c *countingConn) SetReadDeadline(t time.Time) error {
	c.reads++
	return c.Conn.SetReadDeadline(t)
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	c.writes++
	return c.Conn.SetWriteDeadline(t)
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	return connPair(t, listenLoopback(t))
}

// connPair returns both ends of a connection made through ln, which it
// closes.
func connPair(t *testing.T, ln net.Listener) (server, client net.Conn) {
	t.Helper()
	defer ln.Close()
	client, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// TestWatchConnDeadlines checks when a watchConn passes its deadlines on:
// a read deadline when a read reaches the connection, the last one set;
// a deadline at most slack later than the one in force is not passed on,
// an earlier one or a change to or from none always is; and the deadline
// in force does fire.
func TestWatchConnDeadlines(t *testing.T) {
	server, client := tcpPair(t)
	raw := &countingConn{Conn: server}
	c := &watchConn{Conn: server, raw: raw, slack: time.Second}
	buf := make([]byte, 8)
	read := func() {
		t.Helper()
		if _, err := client.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(time.Minute)
	steps := []struct {
		name      string
		set       []time.Time // read deadlines set before the read, in order
		wantReads int         // read deadlines passed on so far
	}{
		{"first deadline", []time.Time{base}, 1},
		{"later within slack", []time.Time{base.Add(500 * time.Millisecond)}, 1},
		{"only the last of several is passed on", []time.Time{base.Add(-time.Hour), base.Add(2 * time.Second)}, 2},
		{"earlier, by less than slack", []time.Time{base.Add(time.Second)}, 3},
		{"none", []time.Time{{}}, 4},
		{"none again", []time.Time{{}}, 4},
		{"a deadline after none", []time.Time{base}, 5},
	}
	for _, s := range steps {
		before := raw.reads
		for _, d := range s.set {
			if err := c.SetReadDeadline(d); err != nil {
				t.Fatal(err)
			}
		}
		if raw.reads != before {
			t.Errorf("%s: a read deadline was passed on before a read", s.name)
		}
		read()
		if raw.reads != s.wantReads {
			t.Errorf("%s: %d read deadlines passed on; want %d", s.name, raw.reads, s.wantReads)
		}
	}

	writes := []struct {
		name string
		d    time.Time
		want int
	}{
		{"first write deadline", base, 1},
		{"later within slack", base.Add(900 * time.Millisecond), 1},
		{"later beyond slack", base.Add(3 * time.Second), 2},
		{"earlier", base, 3},
		{"none", time.Time{}, 4},
		{"none again", time.Time{}, 4},
	}
	for _, w := range writes {
		if err := c.SetWriteDeadline(w.d); err != nil {
			t.Fatal(err)
		}
		if raw.writes != w.want {
			t.Errorf("%s: %d write deadlines passed on; want %d", w.name, raw.writes, w.want)
		}
	}

	// The deadline in force fires.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := c.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v; want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("read timed out after %v; want about 50ms", d)
	}
}

// TestServerDeadlines checks the front server's timeouts with the
// deadlines watchConn defers and skips: a kept-alive connection's slow
// headers are cut by the header timeout, not the longer idle one, and a
// connection idle after many quick requests is closed no earlier than
// the idle timeout less its slack.
func TestServerDeadlines(t *testing.T) {
	const live = "GET /v2/health/live HTTP/1.1\r\nHost: x"
	t.Run("slow headers after a request", func(t *testing.T) {
		f := newLimitFixture(t, Options{Limits: connlimit.Limits{ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: time.Minute}})
		c, br := f.dial(t, live, "")
		if resp, _ := readResponse(t, c, br, 2*time.Second); resp.StatusCode != http.StatusOK {
			t.Fatalf("live = %d", resp.StatusCode)
		}
		if _, err := io.WriteString(c, live+"\r\n"); err != nil { // no blank line: the headers never end
			t.Fatal(err)
		}
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		d := time.Since(start)
		switch {
		case err == nil && resp.StatusCode != http.StatusRequestTimeout:
			t.Errorf("slow headers got %d; want 408 or the connection closed", resp.StatusCode)
		case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
			t.Errorf("slow headers: %v; want 408 or the connection closed by the server", err)
		}
		if d < 250*time.Millisecond || d > 5*time.Second {
			t.Errorf("slow headers cut after %v; want about the 300ms header timeout", d)
		}
	})
	t.Run("idle after many requests", func(t *testing.T) {
		const idle = 300 * time.Millisecond
		f := newLimitFixture(t, Options{Limits: connlimit.Limits{IdleTimeout: idle}})
		c, br := f.dial(t, live, "")
		for i := range 200 {
			if resp, _ := readResponse(t, c, br, 2*time.Second); resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: live = %d", i, resp.StatusCode)
			}
			if i < 199 {
				io.WriteString(c, live+"\r\n\r\n")
			}
		}
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("idle connection read: %v; want EOF (closed by the server)", err)
		}
		if d := time.Since(start); d < idle-idle/64-20*time.Millisecond || d > 3*time.Second {
			t.Errorf("closed %v after the last answer; want the %v idle timeout, at most 1/64 early", d, idle)
		}
	})
}
