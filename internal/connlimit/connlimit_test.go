package connlimit

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Limits
		want Limits
	}{
		{
			name: "zero takes the defaults",
			want: Limits{ReadHeaderTimeout: DefaultReadHeaderTimeout, ReadTimeout: DefaultReadTimeout, BodyTimeout: DefaultBodyTimeout,
				WriteTimeout: DefaultWriteTimeout, IdleTimeout: DefaultIdleTimeout, MaxConns: DefaultMaxConns},
		},
		{
			name: "negative turns a bound off",
			in:   Limits{ReadHeaderTimeout: -1, ReadTimeout: -time.Second, BodyTimeout: -1, WriteTimeout: -1, IdleTimeout: -1, MaxConns: -1},
			want: Limits{},
		},
		{
			name: "set values are kept",
			in:   Limits{ReadHeaderTimeout: time.Second, ReadTimeout: 2 * time.Second, BodyTimeout: 3 * time.Second, WriteTimeout: 4 * time.Second, IdleTimeout: 5 * time.Second, MaxConns: 6},
			want: Limits{ReadHeaderTimeout: time.Second, ReadTimeout: 2 * time.Second, BodyTimeout: 3 * time.Second, WriteTimeout: 4 * time.Second, IdleTimeout: 5 * time.Second, MaxConns: 6},
		},
		{
			name: "mixed",
			in:   Limits{ReadHeaderTimeout: -1, IdleTimeout: time.Second, MaxConns: 10},
			want: Limits{ReadTimeout: DefaultReadTimeout, BodyTimeout: DefaultBodyTimeout, WriteTimeout: DefaultWriteTimeout, IdleTimeout: time.Second, MaxConns: 10},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.WithDefaults(); !sameLimits(got, tt.want) {
				t.Errorf("WithDefaults() = %+v, want %+v", got, tt.want)
			}
			srv := tt.in.Server(http.NotFoundHandler())
			if srv.ReadHeaderTimeout != tt.want.ReadHeaderTimeout || srv.ReadTimeout != tt.want.ReadTimeout ||
				srv.WriteTimeout != tt.want.WriteTimeout || srv.IdleTimeout != tt.want.IdleTimeout {
				t.Errorf("Server() timeouts: header %s, read %s, write %s, idle %s; want %+v",
					srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, tt.want)
			}
			// The handshake bound is an option only when set, and so are
			// the message deadlines (a tap handle and two interceptors).
			wantGRPC := 2
			if tt.want.ReadHeaderTimeout > 0 {
				wantGRPC++
			}
			if tt.want.BodyTimeout > 0 {
				wantGRPC += 3
			}
			if n := len(tt.in.GRPCOptions()); n != wantGRPC {
				t.Errorf("GRPCOptions() has %d options, want %d", n, wantGRPC)
			}
		})
	}
}

// sameLimits compares every field of two Limits but OnLimit.
func sameLimits(a, b Limits) bool {
	a.OnLimit, b.OnLimit = nil, nil
	return a.ReadHeaderTimeout == b.ReadHeaderTimeout && a.ReadTimeout == b.ReadTimeout && a.BodyTimeout == b.BodyTimeout &&
		a.WriteTimeout == b.WriteTimeout && a.IdleTimeout == b.IdleTimeout && a.MaxConns == b.MaxConns
}

func TestAddFlags(t *testing.T) {
	tests := []struct {
		args []string
		want Limits
	}{
		{
			args: nil,
			want: Limits{ReadHeaderTimeout: DefaultReadHeaderTimeout, ReadTimeout: DefaultReadTimeout, BodyTimeout: DefaultBodyTimeout,
				WriteTimeout: DefaultWriteTimeout, IdleTimeout: DefaultIdleTimeout, MaxConns: DefaultMaxConns},
		},
		{
			args: []string{"--read-header-timeout=1s", "--read-timeout=2s", "--body-timeout=3s", "--write-timeout=4s", "--idle-timeout=5s", "--max-conns=6"},
			want: Limits{ReadHeaderTimeout: time.Second, ReadTimeout: 2 * time.Second, BodyTimeout: 3 * time.Second, WriteTimeout: 4 * time.Second, IdleTimeout: 5 * time.Second, MaxConns: 6},
		},
		{
			args: []string{"--read-header-timeout=-1s", "--max-conns=-1"},
			want: Limits{ReadHeaderTimeout: -time.Second, ReadTimeout: DefaultReadTimeout, BodyTimeout: DefaultBodyTimeout,
				WriteTimeout: DefaultWriteTimeout, IdleTimeout: DefaultIdleTimeout, MaxConns: -1},
		},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var l Limits
			f := pflag.NewFlagSet("test", pflag.ContinueOnError)
			AddFlags(f, &l)
			if err := f.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if !sameLimits(l, tt.want) {
				t.Errorf("flags %q gave %+v, want %+v", tt.args, l, tt.want)
			}
		})
	}
}

// accepted accepts from ln in the background and sends each connection on
// the returned channel until ln is closed; the error Accept ended with goes
// on errc.
func accepted(ln net.Listener) (<-chan net.Conn, <-chan error) {
	conns := make(chan net.Conn, 16)
	errc := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				errc <- err
				return
			}
			conns <- c
		}
	}()
	return conns, errc
}

// TestListenerCap checks that no more than MaxConns connections are
// accepted at once, that the next one waits (and OnLimit says so) until one
// is closed, that a negative cap leaves the listener as it is, and that
// closing the listener ends an Accept waiting for room.
func TestListenerCap(t *testing.T) {
	tests := []struct {
		name     string
		maxConns int
		dial     int // connections opened at once
		want     int // accepted before any is closed
	}{
		{name: "cap 1", maxConns: 1, dial: 3, want: 1},
		{name: "cap 3", maxConns: 3, dial: 5, want: 3},
		{name: "under the cap", maxConns: 8, dial: 4, want: 4},
		{name: "off", maxConns: -1, dial: 6, want: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var waits atomic.Int64
			ln := Limits{MaxConns: tt.maxConns, OnLimit: func() { waits.Add(1) }}.Listener(raw)
			if tt.maxConns < 0 && ln != raw {
				t.Errorf("Listener with the cap off = %T, want the listener itself", ln)
			}
			conns, errc := accepted(ln)
			var clients []net.Conn
			defer func() {
				for _, c := range clients {
					c.Close()
				}
			}()
			for range tt.dial {
				c, err := net.Dial("tcp", raw.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				clients = append(clients, c)
			}
			var got []net.Conn
			timeout := time.After(2 * time.Second)
		collect:
			for len(got) < tt.dial {
				select {
				case c := <-conns:
					got = append(got, c)
				case <-timeout:
					break collect
				case <-time.After(300 * time.Millisecond):
					if len(got) >= tt.want {
						break collect // the rest wait, as they should
					}
				}
			}
			if len(got) != tt.want {
				t.Fatalf("%d connections accepted at once, want %d (cap %d)", len(got), tt.want, tt.maxConns)
			}
			for _, c := range got {
				// Unwrap gives the accepted connection, beneath the
				// wrapper that gives its slot back.
				if _, ok := Unwrap(c).(*net.TCPConn); !ok {
					t.Errorf("Unwrap(%T) = %T, want the accepted *net.TCPConn", c, Unwrap(c))
				}
			}
			if tt.dial > tt.want {
				if waits.Load() == 0 {
					t.Error("OnLimit was not called while connections waited")
				}
				// Closing one makes room for exactly one more.
				got[0].Close()
				select {
				case c := <-conns:
					got = append(got, c)
				case <-time.After(2 * time.Second):
					t.Fatal("closing an accepted connection let no waiting one in")
				}
				select {
				case <-conns:
					t.Errorf("more than %d connections open at once", tt.want)
				case <-time.After(200 * time.Millisecond):
				}
			} else if waits.Load() != 0 {
				t.Errorf("OnLimit called %d times under the cap", waits.Load())
			}
			for _, c := range got {
				c.Close()
			}
			// Closing the listener ends the Accept (waiting or not).
			ln.Close()
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
				}
			case <-time.After(2 * time.Second):
				t.Error("Accept still blocked after the listener was closed")
			}
		})
	}
}

// TestServerTimeouts runs a server made by Limits.Server on loopback and
// checks that each timeout closes the connection that breaks it: slow
// headers (ReadHeaderTimeout), an idle keep-alive connection (IdleTimeout),
// a slow body (StartBody's deadline, and ReadTimeout without it), while a
// prompt client is answered, and a bound turned off closes nothing.
func TestServerTimeouts(t *testing.T) {
	const d = 300 * time.Millisecond
	type conn struct {
		c net.Conn
		r *bufio.Reader
	}
	tests := []struct {
		name   string
		limits Limits
		// send writes to the connection: it may trickle bytes until stop
		// is closed.
		send func(c net.Conn, stop <-chan struct{})
		// wantClosed: the server closes the connection after about d (not
		// before d/2); else it keeps it open for 3d.
		wantClosed bool
		// wantStatus is the status line expected before the close ("":
		// none, or any but 200: the request never reached the handler).
		wantStatus string
	}{
		{
			name:   "slow headers cut by ReadHeaderTimeout",
			limits: Limits{ReadHeaderTimeout: d},
			send: func(c net.Conn, stop <-chan struct{}) {
				io.WriteString(c, "GET / HTTP/1.1\r\n")
				trickle(c, "X-Slow: "+strings.Repeat("a", 100), stop)
			},
			wantClosed: true,
		},
		{
			name:   "slow headers kept with ReadHeaderTimeout and ReadTimeout off",
			limits: Limits{ReadHeaderTimeout: -1, ReadTimeout: -1},
			send: func(c net.Conn, stop <-chan struct{}) {
				io.WriteString(c, "GET / HTTP/1.1\r\n")
				trickle(c, "X-Slow: "+strings.Repeat("a", 100), stop)
			},
		},
		{
			name:   "idle keep-alive cut by IdleTimeout",
			limits: Limits{IdleTimeout: d},
			send: func(c net.Conn, _ <-chan struct{}) {
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			},
			wantClosed: true,
			wantStatus: "HTTP/1.1 200 OK",
		},
		{
			name:   "slow body cut by StartBody",
			limits: Limits{BodyTimeout: d},
			send: func(c net.Conn, stop <-chan struct{}) {
				io.WriteString(c, "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
				trickle(c, strings.Repeat("b", 100), stop)
			},
			wantClosed: true,
			wantStatus: "HTTP/1.1 408 Request Timeout",
		},
		{
			name:   "slow body cut by ReadTimeout",
			limits: Limits{ReadTimeout: d},
			send: func(c net.Conn, stop <-chan struct{}) {
				io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
				trickle(c, strings.Repeat("b", 100), stop)
			},
			wantClosed: true,
			wantStatus: "HTTP/1.1 408 Request Timeout",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.NewServeMux()
			h.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				if _, err := io.Copy(io.Discard, r.Body); err != nil {
					http.Error(w, "body too slow", http.StatusRequestTimeout)
					return
				}
				io.WriteString(w, "ok")
			})
			bodyTimeout := tt.limits.WithDefaults().BodyTimeout
			h.HandleFunc("/body", func(w http.ResponseWriter, r *http.Request) {
				StartBody(w, bodyTimeout)
				if _, err := io.ReadAll(r.Body); err != nil {
					http.Error(w, "body too slow", http.StatusRequestTimeout)
					return
				}
				EndBody(w)
				io.WriteString(w, "ok")
			})
			srv := tt.limits.Server(h)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(ln)
			defer srv.Close()

			// A prompt client is answered whatever the limits.
			resp, err := http.Get("http://" + ln.Addr().String() + "/")
			if err != nil {
				t.Fatalf("prompt request: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("prompt request: HTTP %d", resp.StatusCode)
			}

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			stop := make(chan struct{})
			defer close(stop)
			start := time.Now()
			go tt.send(c, stop)
			// A bound that is on closes the connection at once after d; the
			// slack is for a loaded machine. One that is off is watched for 3d.
			window := 3 * d
			if tt.wantClosed {
				window = d + 2*time.Second
			}
			status, closedAfter := readUntilClosed(c, window)
			switch {
			case tt.wantClosed && closedAfter == 0:
				t.Errorf("connection still open after %s, want it closed after about %s", window, d)
			case tt.wantClosed && closedAfter < d/2:
				t.Errorf("connection closed after %s, before the %s timeout", closedAfter, d)
			case !tt.wantClosed && closedAfter != 0:
				t.Errorf("connection closed after %s (status %q), want it kept with the bound off", closedAfter, status)
			}
			if tt.wantStatus != "" && status != tt.wantStatus {
				t.Errorf("status line %q, want %q", status, tt.wantStatus)
			}
			if tt.wantStatus == "" && strings.Contains(status, " 200 ") {
				t.Errorf("status line %q: the incomplete request reached the handler", status)
			}
			t.Logf("closed after %s (0: open), status %q, %s in all", closedAfter.Round(time.Millisecond), status, time.Since(start).Round(time.Millisecond))
		})
	}
}

// trickle writes s one byte every 50 ms until it is written, the write
// fails or stop is closed.
func trickle(c net.Conn, s string, stop <-chan struct{}) {
	for i := range len(s) {
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return
		}
	}
}

// readUntilClosed reads c until the server closes it or within passes; it
// returns the last status line seen and when the close came (0: still
// open).
func readUntilClosed(c net.Conn, within time.Duration) (string, time.Duration) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(within))
	r := bufio.NewReader(c)
	status := ""
	for {
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, "HTTP/1.1 ") {
			status = strings.TrimSpace(line)
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return status, 0
			}
			return status, time.Since(start)
		}
	}
}

// TestBodyDeadlineRecorder checks that StartBody and EndBody accept a
// writer that cannot set deadlines (a test recorder) without allocating.
func TestBodyDeadlineRecorder(t *testing.T) {
	w := httptest.NewRecorder()
	if n := testing.AllocsPerRun(100, func() {
		StartBody(w, time.Second)
		EndBody(w)
	}); n != 0 {
		t.Errorf("StartBody+EndBody on a recorder: %.0f allocations, want 0", n)
	}
}
