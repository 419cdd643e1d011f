package httpproxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/ebb-ml/ebb/internal/ebbtest"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/engine/echo"
	"github.com/ebb-ml/ebb/internal/engine/httpproxy"
	"github.com/ebb-ml/ebb/internal/engine/httpproxy/openaitest"
	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/process"
	"github.com/ebb-ml/ebb/internal/server"
	"github.com/google/go-cmp/cmp"
)

// ebbBin is the ebb binary built once for the package's tests.
var ebbBin string

// TestMain builds ebb once; started with openaitest.Env in its
// environment, the test binary is the OpenAI test server instead.
func TestMain(m *testing.M) {
	openaitest.MainIfChild()
	ebbtest.Main(m, &ebbBin)
}

// echoCommand is an OIP v2 server started with $PORT: ebb's own echo
// replica, serving deployment. It writes its PID (the shell's, which exec
// keeps) to pidFile.
func echoCommand(deployment, pidFile string) []string {
	return []string{"sh", "-c", "echo $$ > " + pidFile + "; exec " + ebbBin +
		" replica --engine echo --deployment " + deployment + " --addr 127.0.0.1:$PORT"}
}

const echoRequest = `{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1,2.5,-3]}]}`

var echoAnswer = map[string]any{"model_name": "echo-http", "outputs": []any{
	map[string]any{"name": "input", "datatype": "FP32", "shape": []any{1.0, 3.0}, "data": []any{1.0, 2.5, -3.0}},
}}

func newBackend(t *testing.T) *process.Backend {
	t.Helper()
	b, err := process.New(process.Options{Command: []string{ebbBin, "replica"}, LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func call(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	return callWith(t, "", method, url, body)
}

// callReplica sends a request to a replica with its secret, as the
// gateway does.
func callReplica(t *testing.T, h replica.Handle, method, path, body string) (int, map[string]any) {
	t.Helper()
	return callWith(t, h.Secret, method, h.Endpoint+path, body)
}

func callWith(t *testing.T, secret, method, url, body string) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testCtx(t), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set(replica.SecretHeader, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %s", method, url, raw)
	}
	return resp.StatusCode, out
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func handlePID(t *testing.T, h replica.Handle) int {
	t.Helper()
	var st struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(h.State, &st); err != nil || st.PID <= 0 {
		t.Fatalf("handle state %s has no pid", h.State)
	}
	return st.PID
}

// gone reports whether no process has pid (a zombie would still count).
func gone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestCommandThroughProcessBackend(t *testing.T) {
	ctx := testCtx(t)
	b := newBackend(t)
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	h, err := b.Start(ctx, replica.Spec{ID: "http-1", Deployment: "echo-http", Engine: "http",
		Command: echoCommand("echo-http", pidFile)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop(context.Background(), h)
	st, err := b.Ready(ctx, h)
	if err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if st.ModelLoadedAt.IsZero() || st.ReadyAt.Before(st.ModelLoadedAt) {
		t.Errorf("startup times: %+v", st)
	}
	child := readPID(t, pidFile)

	// Without the replica's secret, another user of the machine gets
	// nothing from the model.
	if status, _ := call(t, "POST", h.Endpoint+"/v2/models/echo-http/infer", echoRequest); status != http.StatusUnauthorized {
		t.Errorf("infer without the replica's secret: %d; want 401", status)
	}
	status, got := callReplica(t, h, "POST", "/v2/models/echo-http/infer", echoRequest)
	if status != 200 {
		t.Fatalf("infer: %d %v", status, got)
	}
	if diff := cmp.Diff(echoAnswer, got); diff != "" {
		t.Errorf("infer through the proxy (-want +got):\n%s", diff)
	}
	// /ebb/v1/replica is the proxy's own answer, not the child's.
	status, info := call(t, "GET", h.Endpoint+"/ebb/v1/replica", "")
	if status != 200 || info["id"] != "http-1" || info["pid"] != float64(handlePID(t, h)) {
		t.Errorf("GET /ebb/v1/replica = %d %v, want id http-1 and pid %d", status, info, handlePID(t, h))
	}
	status, meta := callReplica(t, h, "GET", "/v2/models/echo-http", "")
	if status != 200 || meta["platform"] != "ebb_echo" {
		t.Errorf("metadata through the proxy = %d %v", status, meta)
	}

	if err := b.Stop(ctx, h); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !gone(child) {
		t.Errorf("the command (pid %d) still runs after the replica stopped", child)
		syscall.Kill(child, syscall.SIGKILL)
	}
}

func TestUpstreamThroughProcessBackend(t *testing.T) {
	ctx := testCtx(t)
	m, err := echo.Load("")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upCtx, stopUp := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.New("echo-http", m, server.Options{}).Serve(upCtx, ln) }()
	defer func() { stopUp(); <-served }()

	b := newBackend(t)
	h, err := b.Start(ctx, replica.Spec{ID: "up-1", Deployment: "echo-http", Engine: "http", URL: "http://" + ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop(context.Background(), h)
	if _, err := b.Ready(ctx, h); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	status, got := callReplica(t, h, "POST", "/v2/models/echo-http/infer", echoRequest)
	if status != 200 {
		t.Fatalf("infer: %d %v", status, got)
	}
	if diff := cmp.Diff(echoAnswer, got); diff != "" {
		t.Errorf("infer through the proxy (-want +got):\n%s", diff)
	}
	// Errors of the server behind pass through unchanged.
	status, got = callReplica(t, h, "POST", "/v2/models/other/infer", echoRequest)
	if status != 404 || !strings.Contains(got["error"].(string), `model "other" not found`) {
		t.Errorf("infer on another model = %d %v, want the upstream's 404", status, got)
	}
	if err := b.Stop(ctx, h); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	exit, err := b.Wait(ctx, h)
	if err == nil && exit.Code != 0 {
		t.Errorf("replica exited %d (%v), want 0", exit.Code, exit.Err)
	}
}

func TestStartFailures(t *testing.T) {
	tests := []struct {
		name string
		spec replica.Spec
		want []string
	}{
		{
			name: "command exits at once",
			spec: replica.Spec{Command: []string{"sh", "-c", "echo loading weights; echo 'fatal: no GPU found' >&2; exit 3"}},
			want: []string{"exited (exit status 3) before it answered ready", "loading weights\nfatal: no GPU found"},
		},
		{
			name: "command not found",
			spec: replica.Spec{Command: []string{"/nonexistent/model-server"}},
			want: []string{`start ["/nonexistent/model-server"]`, "no such file or directory"},
		},
		{
			name: "neither command nor url",
			spec: replica.Spec{},
			want: []string{"set spec.command", "spec.url"},
		},
	}
	b := newBackend(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			spec := tt.spec
			spec.ID, spec.Deployment, spec.Engine = "bad-"+strconv.Itoa(i), "bad", "http"
			h, err := b.Start(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Stop(context.Background(), h)
			_, err = b.Ready(ctx, h)
			if err == nil {
				t.Fatal("Ready succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Ready error does not contain %q:\n%v", w, err)
				}
			}
			if exit, err := b.Wait(ctx, h); err != nil || exit.Code == 0 {
				t.Errorf("Wait = %+v, %v; want a failed exit", exit, err)
			}
		})
	}
}

// TestCommandExitWhileServing checks that the replica ends, with the
// command's status, when the command dies under it.
func TestCommandExitWhileServing(t *testing.T) {
	ctx := testCtx(t)
	b := newBackend(t)
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	h, err := b.Start(ctx, replica.Spec{ID: "dies-1", Deployment: "echo-http", Engine: "http",
		Command: echoCommand("echo-http", pidFile)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop(context.Background(), h)
	if _, err := b.Ready(ctx, h); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := syscall.Kill(readPID(t, pidFile), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	exit, err := b.Wait(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if exit.Code != 128+int(syscall.SIGKILL) {
		t.Errorf("replica exit code = %d (%v), want %d (the command was killed by SIGKILL)", exit.Code, exit.Err, 128+int(syscall.SIGKILL))
	}
}

// TestRunDrains runs a Replica in process: after its context ends, a
// request in flight still gets its answer, and the command is stopped.
func TestRunDrains(t *testing.T) {
	// The upstream holds each infer request until release closes.
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/v2/health/ready", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"ready":true}`)) })
	mux.HandleFunc("/v2/models/slow/infer", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.Write([]byte(`{"model_name":"slow","outputs":[]}`))
	})
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: mux}
	go up.Serve(upLn)
	defer up.Close()

	readyc := make(chan struct{})
	draining := &onMessage{msg: "draining", seen: make(chan struct{})}
	r, err := httpproxy.New(httpproxy.Options{
		Upstream: "http://" + upLn.Addr().String(), ReplicaID: "r", Deployment: "slow",
		Logger:  slog.New(draining),
		OnReady: func(time.Time, time.Time) { close(readyc) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx, ln) }()
	<-readyc

	type answer struct {
		status int
		body   string
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/v2/models/slow/infer", "application/json", strings.NewReader(`{}`))
		if err != nil {
			done <- answer{0, err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- answer{resp.StatusCode, string(b)}
	}()
	<-entered
	cancel()
	<-draining.seen
	close(release)
	if a := <-done; a.status != 200 || a.body != `{"model_name":"slow","outputs":[]}` {
		t.Errorf("in-flight request = %d %s, want 200 and the upstream's answer", a.status, a.body)
	}
	if err := <-ran; err != nil {
		t.Errorf("Run = %v, want nil after a clean drain", err)
	}
}

// onMessage is a slog.Handler that closes seen at the first record whose
// message is msg.
type onMessage struct {
	msg  string
	once sync.Once
	seen chan struct{}
}

func (h *onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h *onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.seen) })
	}
	return nil
}
func (h *onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *onMessage) WithGroup(string) slog.Handler      { return h }

func TestUpstreamNeverReady(t *testing.T) {
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(upLn)
	defer up.Close()
	r, err := httpproxy.New(httpproxy.Options{Upstream: "http://" + upLn.Addr().String(), ReadyTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = r.Run(context.Background(), ln)
	want := "did not answer ready at http://" + upLn.Addr().String() + "/v2/health/ready within 200ms (last: status 503)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Run = %v, want an error containing %q", err, want)
	}
}
