package process_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/process"
)

const echoBody = `{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`

// call sends a request to the replica at base, over the Unix socket sock
// when not empty, with the secret when not empty, and returns the status
// and body.
func call(ctx context.Context, base, sock, method, path, body, secret string) (int, string, error) {
	tr := &http.Transport{}
	if sock != "" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if secret != "" {
		req.Header.Set(replica.SecretHeader, secret)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// checkServes checks that h's replica answers infer over TCP and, when it
// has one, over its socket, which demands the secret as TCP does.
func checkServes(t *testing.T, ctx context.Context, h replica.Handle) {
	t.Helper()
	calls := []struct {
		name, sock, method, path, body, secret string
		want                                   int
	}{
		{"tcp infer", "", "POST", "/v2/models/m/infer", echoBody, h.Secret, http.StatusOK},
		{"socket infer", h.Socket, "POST", "/v2/models/m/infer", echoBody, h.Secret, http.StatusOK},
		{"socket infer without the secret", h.Socket, "POST", "/v2/models/m/infer", echoBody, "", http.StatusUnauthorized},
		{"socket replica info", h.Socket, "GET", "/ebb/v1/replica", "", "", http.StatusOK},
	}
	for _, c := range calls {
		if c.sock == "" && c.name != "tcp infer" {
			continue
		}
		status, body, err := call(ctx, h.Endpoint, c.sock, c.method, c.path, c.body, c.secret)
		if err != nil || status != c.want {
			t.Errorf("%s: %d %s, %v; want %d", c.name, status, body, err, c.want)
		}
		if c.path == "/ebb/v1/replica" && !strings.Contains(body, `"id":"`+h.Spec.ID+`"`) {
			t.Errorf("%s: %s; want the replica's ID %s", c.name, body, h.Spec.ID)
		}
	}
}

// TestSocket: with Options.Sockets a started replica serves REST on a Unix
// socket (an abstract one on Linux, else a file in SocketDir) as well as
// on its port, and a backend that recovers it keeps the socket; without,
// or for engine http, it has none.
func TestSocket(t *testing.T) {
	cmd, _ := process.ReplicaCommand(ebbBin)
	dir, err := os.MkdirTemp("", "ebb-sockets")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	tests := []struct {
		name     string
		sockets  bool
		abstract bool
		engine   string
		prefix   string // of Handle.Socket; "" for none
	}{
		{name: "abstract", sockets: true, abstract: true, engine: "echo", prefix: "@ebb-replica-sock-abstract-"},
		{name: "path", sockets: true, engine: "echo", prefix: dir + "/"},
		{name: "off", engine: "echo"},
		{name: "engine http", sockets: true, abstract: true, engine: "http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.abstract && runtime.GOOS != "linux" {
				t.Skip("abstract sockets are Linux's")
			}
			defer process.SetAbstractSockets(tt.abstract)()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			opts := process.Options{Command: cmd, LogDir: t.TempDir(), Sockets: tt.sockets, SocketDir: dir}
			first, err := process.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			spec := replica.Spec{ID: "sock-" + strings.ReplaceAll(tt.name, " ", "-"), Deployment: "m", Engine: tt.engine}
			if tt.engine == "http" {
				spec.URL = "http://127.0.0.1:9" // never ready; only the handle matters
			}
			h, err := first.Start(ctx, spec)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			defer first.Stop(context.Background(), h)
			if (tt.prefix == "") != (h.Socket == "") || !strings.HasPrefix(h.Socket, tt.prefix) {
				t.Fatalf("Handle.Socket = %q; want one starting %q", h.Socket, tt.prefix)
			}
			if tt.engine == "http" {
				return
			}
			if _, err := first.Ready(ctx, h); err != nil {
				t.Fatalf("Ready: %v", err)
			}
			checkServes(t, ctx, h)

			// As ebb up stores the handle and a later ebb up reads it.
			b, err := json.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			var stored replica.Handle
			if err := json.Unmarshal(b, &stored); err != nil {
				t.Fatal(err)
			}
			if stored.Socket != h.Socket {
				t.Fatalf("stored handle's socket = %q; want %q", stored.Socket, h.Socket)
			}
			second, err := process.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := second.Recover(ctx, stored); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			checkServes(t, ctx, stored)
			if err := second.Stop(ctx, stored); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if h.Socket == "" {
				return
			}
			if c, err := net.Dial("unix", h.Socket); err == nil {
				c.Close()
				t.Error("the socket still accepts after Stop")
			}
			if !strings.HasPrefix(h.Socket, "@") {
				if _, err := os.Stat(h.Socket); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("socket file %s after Stop: %v; want it removed", h.Socket, err)
				}
			}
		})
	}
}

// TestSocketRecoverRefusesSilentSocket: a replica whose socket does not
// answer (here: a handle naming another socket) is not reattached, since
// the gateway would reach it there; it is killed, as one whose port does
// not answer is.
func TestSocketRecoverRefusesSilentSocket(t *testing.T) {
	cmd, _ := process.ReplicaCommand(ebbBin)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := process.Options{Command: cmd, LogDir: t.TempDir(), Sockets: true, SocketDir: t.TempDir()}
	first, err := process.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h, err := first.Start(ctx, replica.Spec{ID: "sock-silent", Deployment: "m", Engine: "echo"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer first.Stop(context.Background(), h)
	if _, err := first.Ready(ctx, h); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if h.Socket == "" {
		t.Skip("no Unix socket here")
	}
	waited := make(chan error, 1)
	go func() { _, err := first.Wait(ctx, h); waited <- err }()
	wrong := h
	wrong.Socket = "@ebb-replica-nobody-listens-here"
	second, err := process.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Recover(ctx, wrong); !errors.Is(err, replica.ErrNotFound) {
		t.Fatalf("Recover = %v; want replica.ErrNotFound", err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("Wait: %v; want the replica killed", err)
	}
}
