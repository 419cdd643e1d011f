package gateway

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/activator"
	"github.com/ebb-ml/ebb/internal/balance"
	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/routing"
	"github.com/ebb-ml/ebb/internal/stats"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// limitFixture is a gateway behind a real HTTP server with opts' limits
// applied as cmd/ebb applies them (server timeouts, capped listener), and
// one warm echo replica.
type limitFixture struct {
	rec     *stats.Recorder
	metrics *Metrics
	addr    string
}

func newLimitFixture(t *testing.T, opts Options) *limitFixture {
	t.Helper()
	f := &limitFixture{rec: &stats.Recorder{}, metrics: NewMetrics(prometheus.NewRegistry())}
	tab := &routing.Table{}
	tab.Publish(routing.Route{Deployment: "m", Endpoints: []*balance.Endpoint{replica(t, "r1")}, Stats: f.rec})
	act := activator.New(tab, &publisher{tab: tab}, activator.Options{Timeout: time.Second})
	opts.Metrics = f.metrics
	g := New(tab, act, opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(g, nil)
	go srv.Serve(g.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	f.addr = ln.Addr().String()
	return f
}

// dial opens a raw connection and sends head (request line and headers,
// without the blank line) and then body.
func (f *limitFixture) dial(t *testing.T, head, body string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head+"\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

func readResponse(t *testing.T, c net.Conn, br *bufio.Reader, within time.Duration) (*http.Response, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response within %v: %v", within, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (f *limitFixture) limited(name string) float64 {
	return testutil.ToFloat64(f.metrics.limited.WithLabelValues(name))
}

// TestHostileBodies reproduces the body cases of issue 10 against a real
// server: a declared body too large is refused from its Content-Length
// without reading it; a body one byte a second is cut by the body timeout
// and never counts as demand; the bytes buffered across requests are
// capped; an idle keep-alive connection is closed.
func TestHostileBodies(t *testing.T) {
	const infer = "POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
	tests := []struct {
		name  string
		opts  Options
		check func(t *testing.T, f *limitFixture)
	}{{
		name: "content-length too large is 413 before reading",
		opts: Options{MaxBodyBytes: 1 << 20},
		check: func(t *testing.T, f *limitFixture) {
			// 1 TiB declared, nothing sent: the answer cannot wait for
			// the body.
			c, br := f.dial(t, infer+"\r\nContent-Length: 1099511627776", "")
			resp, out := readResponse(t, c, br, 2*time.Second)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(out, "request body of 1099511627776 bytes exceeds the limit of 1048576 bytes (--max-body-bytes)") {
				t.Errorf("got %d %s; want 413 naming the sizes", resp.StatusCode, out)
			}
			if n := f.limited(limitBodyBytes); n != 1 {
				t.Errorf("limited{body_bytes} = %v; want 1", n)
			}
		},
	}, {
		name: "slow body is cut and never counts as demand",
		opts: Options{Limits: connlimit.Limits{BodyTimeout: 300 * time.Millisecond}},
		check: func(t *testing.T, f *limitFixture) {
			c, br := f.dial(t, infer+fmt.Sprintf("\r\nContent-Length: %d", len(body)), body[:1])
			for i := 1; i < 4; i++ {
				time.Sleep(50 * time.Millisecond)
				if n := f.rec.InFlight(); n != 0 {
					t.Fatalf("a request still sending its body counts as %d in flight; want 0", n)
				}
				io.WriteString(c, body[i:i+1])
			}
			resp, out := readResponse(t, c, br, 2*time.Second)
			if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(out, "did not arrive within 300ms") {
				t.Errorf("got %d %s; want 408", resp.StatusCode, out)
			}
			if s := f.rec.Sample(time.Now()); s.Requests != 0 {
				t.Errorf("demand sample = %+v; want no request begun", s)
			}
			if n := f.limited(limitBodyTimeout); n != 1 {
				t.Errorf("limited{body_timeout} = %v; want 1", n)
			}
			// A whole body counts, once.
			c, br = f.dial(t, infer+fmt.Sprintf("\r\nContent-Length: %d", len(body)), body)
			if resp, out := readResponse(t, c, br, 2*time.Second); resp.StatusCode != http.StatusOK {
				t.Fatalf("got %d %s; want 200", resp.StatusCode, out)
			}
			if s := f.rec.Sample(time.Now()); s.Requests != 1 {
				t.Errorf("demand sample = %+v; want 1 request", s)
			}
		},
	}, {
		name: "buffered bytes across requests are capped",
		opts: Options{MaxBufferedBytes: 150, Limits: connlimit.Limits{BodyTimeout: 5 * time.Second}},
		check: func(t *testing.T, f *limitFixture) {
			// One request reserves 100 bytes and sends them slowly.
			slow, _ := f.dial(t, infer+"\r\nContent-Length: 100", "{")
			defer slow.Close()
			time.Sleep(100 * time.Millisecond)
			c, br := f.dial(t, infer+fmt.Sprintf("\r\nContent-Length: %d", len(body)), body)
			resp, out := readResponse(t, c, br, 2*time.Second)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(out, "--max-buffered-bytes") {
				t.Errorf("got %d (Retry-After %q) %s; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), out)
			}
			if n := f.limited(limitBufferedBytes); n != 1 {
				t.Errorf("limited{buffered_bytes} = %v; want 1", n)
			}
			// Once the slow one gives up, the budget is back.
			slow.Close()
			deadline := time.Now().Add(2 * time.Second)
			for {
				c, br = f.dial(t, infer+fmt.Sprintf("\r\nContent-Length: %d", len(body)), body)
				resp, _ = readResponse(t, c, br, 2*time.Second)
				if resp.StatusCode == http.StatusOK || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if resp.StatusCode != http.StatusOK {
				t.Errorf("after the slow request ended: %d; want 200", resp.StatusCode)
			}
		},
	}, {
		name: "chunked bodies count against the cap as they arrive",
		opts: Options{MaxBufferedBytes: 150},
		check: func(t *testing.T, f *limitFixture) {
			chunk := strings.Repeat(" ", 200)
			c, br := f.dial(t, infer+"\r\nTransfer-Encoding: chunked", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk))
			resp, _ := readResponse(t, c, br, 2*time.Second)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("got %d; want 503", resp.StatusCode)
			}
		},
	}, {
		name: "idle keep-alive connection is closed",
		opts: Options{Limits: connlimit.Limits{IdleTimeout: 200 * time.Millisecond}},
		check: func(t *testing.T, f *limitFixture) {
			c, br := f.dial(t, "GET /v2/health/live HTTP/1.1\r\nHost: x", "")
			if resp, _ := readResponse(t, c, br, 2*time.Second); resp.StatusCode != http.StatusOK {
				t.Fatalf("live = %d", resp.StatusCode)
			}
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err := br.ReadByte()
			if !errors.Is(err, io.EOF) {
				t.Fatalf("idle connection read: %v; want EOF (closed by the server)", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("closed after %v; want about the 200ms idle timeout", d)
			}
		},
	}, {
		name: "connections over the cap wait, counted",
		opts: Options{Limits: connlimit.Limits{MaxConns: 1, IdleTimeout: 300 * time.Millisecond}},
		check: func(t *testing.T, f *limitFixture) {
			c1, br1 := f.dial(t, "GET /v2/health/live HTTP/1.1\r\nHost: x", "")
			readResponse(t, c1, br1, 2*time.Second)
			// c1 stays open (idle): c2 waits until the idle timeout
			// closes it.
			start := time.Now()
			c2, br2 := f.dial(t, "GET /v2/health/live HTTP/1.1\r\nHost: x", "")
			if resp, _ := readResponse(t, c2, br2, 3*time.Second); resp.StatusCode != http.StatusOK {
				t.Fatalf("second connection: %d", resp.StatusCode)
			}
			if d := time.Since(start); d < 200*time.Millisecond {
				t.Errorf("second connection served after %v; want it to wait for the first to close", d)
			}
			if n := f.limited(limitConns); n < 1 {
				t.Errorf("limited{conns} = %v; want at least 1", n)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, newLimitFixture(t, tt.opts))
		})
	}
}
