package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/connlimit"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/serving/core"
)

// listenUnix listens on a Unix socket in a short private directory (a
// socket path is limited to about 100 bytes, which t.TempDir may pass).
func listenUnix(t *testing.T) net.Listener {
	t.Helper()
	dir, err := os.MkdirTemp("", "ebb-sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Skipf("no Unix sockets here: %v", err)
	}
	return ln
}

// unixClient sends every request over the Unix socket at path, whatever
// the URL's host.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// postVia sends an infer request for model m to base with c, the secret when
// not empty, and returns the status and body.
func postVia(c *http.Client, base, secret string) (int, string, error) {
	req, err := http.NewRequest("POST", base+"/v2/models/m/infer",
		strings.NewReader(`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`))
	if err != nil {
		return 0, "", err
	}
	if secret != "" {
		req.Header.Set(core.SecretHeader, secret)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestServeOnTwoListeners serves REST on a TCP port and a Unix socket at
// once (Serve and ServeWithGRPC): both answer with the same handler and
// secret, and the drain covers both: a request in flight on the socket
// finishes, and neither listener accepts after.
func TestServeOnTwoListeners(t *testing.T) {
	serves := []struct {
		name  string
		serve func(s *Server, ctx context.Context, ln, sock net.Listener) error
	}{
		{"Serve", func(s *Server, ctx context.Context, ln, sock net.Listener) error { return s.Serve(ctx, ln, sock) }},
		{"ServeWithGRPC", func(s *Server, ctx context.Context, ln, sock net.Listener) error {
			return s.ServeWithGRPC(ctx, ln, sock)
		}},
	}
	for _, tt := range serves {
		t.Run(tt.name, func(t *testing.T) {
			entered, release := make(chan struct{}, 1), make(chan struct{})
			m := &fakeModel{width: 2}
			var slow atomic.Bool
			gated := &fakeModel{width: 2, predict: func(ctx context.Context, in []oip.Tensor) ([]oip.Tensor, error) {
				if slow.Load() {
					entered <- struct{}{}
					<-release
				}
				return m.Predict(ctx, in)
			}}
			s := New("m", gated, Options{Secret: "s3"})
			ln, sock := listen(t), listenUnix(t)
			tcpBase := "http://" + ln.Addr().String()
			uc := unixClient(sock.Addr().String())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- tt.serve(s, ctx, ln, sock) }()

			for _, c := range []struct {
				name   string
				client *http.Client
				secret string
				want   int
			}{
				{"tcp", http.DefaultClient, "s3", http.StatusOK},
				{"unix", uc, "s3", http.StatusOK},
				{"unix without the secret", uc, "", http.StatusUnauthorized},
				{"unix with a wrong secret", uc, "s4", http.StatusUnauthorized},
			} {
				status, body, err := postVia(c.client, tcpBase, c.secret)
				if err != nil || status != c.want {
					t.Errorf("%s: %d %s, %v; want %d", c.name, status, body, err, c.want)
				}
			}

			slow.Store(true)
			inflight := make(chan error, 1)
			go func() {
				status, body, err := postVia(uc, "http://replica", "s3")
				if err == nil && status != http.StatusOK {
					err = errors.New(body)
				}
				inflight <- err
			}()
			<-entered
			cancel()
			waitFor(t, "draining", func() bool { return !s.Ready() })
			close(release)
			if err := <-inflight; err != nil {
				t.Errorf("request in flight on the socket during the drain: %v", err)
			}
			if err := <-served; err != nil {
				t.Fatalf("serve = %v; want a clean drain", err)
			}
			for _, a := range []net.Addr{ln.Addr(), sock.Addr()} {
				if c, err := net.Dial(a.Network(), a.String()); err == nil {
					c.Close()
					t.Errorf("%s still accepts after the drain", a)
				}
			}
		})
	}
}

// TestServeCapsEachListener: Limits.MaxConns applies to the extra
// listener too.
func TestServeCapsEachListener(t *testing.T) {
	var limited atomic.Int64
	s := New("m", &fakeModel{width: 2}, Options{Limits: connlimit.Limits{MaxConns: 1, OnLimit: func() { limited.Add(1) }}})
	ln, sock := listen(t), listenUnix(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln, sock) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	// One connection kept alive on each listener: both are full.
	tcp, uc := &http.Client{Transport: &http.Transport{}}, unixClient(sock.Addr().String())
	defer tcp.CloseIdleConnections()
	defer uc.CloseIdleConnections()
	for _, c := range []*http.Client{tcp, uc} {
		if status, body, err := postVia(c, "http://"+ln.Addr().String(), ""); err != nil || status != http.StatusOK {
			t.Fatalf("infer: %d %s, %v", status, body, err)
		}
	}
	waitFor(t, "both listeners at their cap", func() bool { return limited.Load() >= 2 })

	second, err := net.Dial("unix", sock.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := second.Write([]byte("GET /v2/health/live HTTP/1.1\r\nHost: r\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	second.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := second.Read(make([]byte, 1)); n > 0 || err == nil {
		t.Fatal("a second connection on the socket was served past MaxConns 1")
	}
	uc.CloseIdleConnections() // frees the socket's one slot
	second.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := second.Read(make([]byte, 1)); n == 0 {
		t.Fatalf("the second connection was not served once the first closed: %v", err)
	}
}

// brokenListener fails at once.
type brokenListener struct{ net.Listener }

func (brokenListener) Accept() (net.Conn, error) { return nil, errors.New("broken") }

// TestServeListenerFails: when one listener fails, Serve closes the
// others and says which failed.
func TestServeListenerFails(t *testing.T) {
	ln, sock := listen(t), listenUnix(t)
	err := New("m", &fakeModel{width: 2}, Options{}).Serve(context.Background(), ln, brokenListener{sock})
	if err == nil || !strings.Contains(err.Error(), sock.Addr().String()) || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("Serve = %v; want the socket's failure", err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("the TCP listener still accepts after the socket failed")
	}
}
