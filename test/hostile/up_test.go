package hostile

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// up is a running `ebb up` on a loopback port.
type up struct {
	base, addr string
	dataDir    string
	// admin is the admin token ebb up keeps in its data dir.
	admin string
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
	log   string

	mu       sync.Mutex
	replicas []replicaProc // deploy's, for killLeftovers
}

// startUp runs `ebb up` on a free loopback port (gRPC off) with models
// confined to roots and flags, and returns it once it answers; it is
// stopped with SIGTERM at the test's end.
func startUp(t *testing.T, roots string, flags ...string) *up {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	u := &up{base: "http://" + addr, addr: addr, dataDir: filepath.Join(dir, "data"), log: filepath.Join(dir, "ebb-up.log")}
	u.launch(t, roots, flags...)
	return u
}

// launch starts `ebb up` at u's address and data directory (again, after
// kill) and returns once it answers; it is stopped with SIGTERM at the
// test's end unless it has exited by then.
func (u *up) launch(t *testing.T, roots string, flags ...string) {
	t.Helper()
	logFile, err := os.OpenFile(u.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	args := append([]string{"up", "--addr", u.addr, "--grpc-addr=", "--data-dir", u.dataDir, "--model-roots", roots, "--drain-timeout", "5s"}, flags...)
	cmd := exec.Command(ebb, args...)
	cmd.Dir = filepath.Dir(u.log)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	u.cmd, u.done = cmd, done
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		u.killLeftovers(t)
		if t.Failed() {
			b, _ := os.ReadFile(u.log)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("ebb up log (end):\n%s", b)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(u.base + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if b, err := os.ReadFile(filepath.Join(u.dataDir, "admin.token")); err == nil && resp.StatusCode == http.StatusOK {
				u.admin = strings.TrimSpace(string(b))
				return
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(u.log)
			t.Fatalf("ebb up exited early:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("ebb up not ready within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends ebb up with SIGKILL (by its PID) and waits for it to exit;
// its replicas keep running, as after a crash.
func (u *up) kill(t *testing.T) {
	t.Helper()
	if err := u.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL ebb up: %v", err)
	}
	<-u.done
}

// stop ends ebb up with SIGTERM and waits for it to exit.
func (u *up) stop(t *testing.T) {
	t.Helper()
	if err := u.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM ebb up: %v", err)
	}
	select {
	case <-u.done:
	case <-time.After(30 * time.Second):
		t.Fatal("ebb up did not exit within 30s of SIGTERM")
	}
}

// req describes one HTTP request to ebb up.
type req struct {
	method, path, token string
	body                string
	header              map[string]string
}

// do sends r and returns the status and the body; it fails the test when
// no answer comes.
func (u *up) do(t *testing.T, r req) (int, string) {
	t.Helper()
	code, body, err := u.try(r)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// try sends r and returns the status and the body; safe from any goroutine.
func (u *up) try(r req) (int, string, error) { return u.tryWith(r, nil) }

// tryWith is try that gives the answer to seen, when set, before its body
// is read.
func (u *up) tryWith(r req, seen func(*http.Response)) (int, string, error) {
	method := r.method
	if method == "" {
		method = http.MethodGet
		if r.body != "" {
			method = http.MethodPost
		}
	}
	hr, err := http.NewRequest(method, u.base+r.path, strings.NewReader(r.body))
	if err != nil {
		return 0, "", err
	}
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
		if method == http.MethodPatch {
			hr.Header.Set("Content-Type", "application/merge-patch+json")
		}
	}
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	for k, v := range r.header {
		if strings.EqualFold(k, "Host") {
			hr.Host = v
			continue
		}
		hr.Header.Set(k, v)
	}
	resp, err := client.Do(hr)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %w", method, r.path, err)
	}
	defer resp.Body.Close()
	if seen != nil {
		seen(resp)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// client keeps connections alive between requests, as browsers and the
// CLI do.
var client = &http.Client{Timeout: 30 * time.Second}

// createToken makes a token with scopes through the admin API and returns
// its secret.
func (u *up) createToken(t *testing.T, scopes ...string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"name": strings.Join(scopes, "+"), "scopes": scopes})
	code, out := u.do(t, req{path: "/v1/tokens", token: u.admin, body: string(body)})
	var tok struct {
		Secret string `json:"secret"`
	}
	if code != http.StatusCreated || json.Unmarshal([]byte(out), &tok) != nil || tok.Secret == "" {
		t.Fatalf("create a token with %v: %d %s", scopes, code, out)
	}
	return tok.Secret
}

// errorCode returns the code of an admin API error body.
func errorCode(body string) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	return e.Error.Code
}

// TestAdminAPIRefusesStrangers is the Why case "the API is open", and "the
// Host header is not checked, so DNS rebinding can reach the admin API from
// a browser": without a valid token the admin API answers 401, and with
// the admin token itself a foreign Host (a rebound DNS name) or a
// cross-site Origin gets 403, and changes nothing.
func TestAdminAPIRefusesStrangers(t *testing.T) {
	u := startUp(t, t.TempDir())
	_, port, _ := net.SplitHostPort(u.addr)
	create := `{"name":"rebound","spec":{"engine":"echo","scaling":{"minReplicas":0,"maxReplicas":1}}}`
	tests := []struct {
		name     string
		r        req
		want     int
		wantCode string
	}{
		{name: "no token", r: req{path: "/v1/deployments"}, want: 401, wantCode: "auth/unauthenticated"},
		{name: "no token, write", r: req{path: "/v1/deployments", body: create}, want: 401, wantCode: "auth/unauthenticated"},
		{name: "forged token", r: req{path: "/v1/deployments", token: "ebb_0123456789abcdef_" + strings.Repeat("0", 64)}, want: 401, wantCode: "auth/unauthenticated"},
		{name: "not an ebb token", r: req{path: "/v1/tokens", token: "admin"}, want: 401, wantCode: "auth/unauthenticated"},
		{name: "DNS rebinding: a foreign name at the port", r: req{path: "/v1/deployments", token: u.admin, header: map[string]string{"Host": "rebind.attacker.example:" + port}}, want: 403, wantCode: "request/host_not_allowed"},
		{name: "DNS rebinding: a foreign name, write", r: req{path: "/v1/deployments", token: u.admin, body: create, header: map[string]string{"Host": "rebind.attacker.example:" + port}}, want: 403, wantCode: "request/host_not_allowed"},
		{name: "DNS rebinding: no port", r: req{path: "/v1/tokens", token: u.admin, header: map[string]string{"Host": "rebind.attacker.example"}}, want: 403, wantCode: "request/host_not_allowed"},
		{name: "cross-site Origin", r: req{path: "/v1/deployments", token: u.admin, body: create, header: map[string]string{"Origin": "http://attacker.example"}}, want: 403, wantCode: "request/origin_not_allowed"},
		{name: "localhost is this server", r: req{path: "/v1/deployments", token: u.admin, header: map[string]string{"Host": "localhost:" + port}}, want: 200},
		{name: "same-origin browser", r: req{path: "/v1/deployments", token: u.admin, header: map[string]string{"Origin": u.base}}, want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := u.do(t, tt.r)
			if code != tt.want || (tt.wantCode != "" && errorCode(body) != tt.wantCode) {
				t.Errorf("HTTP %d %s; want %d %s", code, body, tt.want, tt.wantCode)
			}
		})
	}
	if code, body := u.do(t, req{path: "/v1/deployments/rebound", token: u.admin}); code != http.StatusNotFound {
		t.Errorf("a refused create left deployment rebound: %d %s", code, body)
	}
}

// TestCodeExecutionNeedsExec is the Why case "a deployment with engine:
// http and a command runs any shell command as ebb's user": a deploy token
// may not create, replace or patch in a deployment that makes ebb run a
// command or load Python code (403 naming scope exec), and the command
// never runs; deploy+exec may.
func TestCodeExecutionNeedsExec(t *testing.T) {
	roots := t.TempDir()
	model := filepath.Join(roots, "m")
	if err := os.MkdirAll(model, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(model, "model.py"), []byte("class Model:\n    pass\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u := startUp(t, roots)
	marker := filepath.Join(t.TempDir(), "ran")
	deploy := u.createToken(t, "deploy")
	predict := u.createToken(t, "predict:*")
	deployExec := u.createToken(t, "deploy", "exec")
	command := fmt.Sprintf(`["sh","-c","touch %s; sleep 60"]`, marker)
	httpSpec := fmt.Sprintf(`{"engine":"http","command":%s,"scaling":{"minReplicas":1,"maxReplicas":1}}`, command)
	pySpec := fmt.Sprintf(`{"model":%q,"engine":"python","python":{"class":"model.py:Model"},"scaling":{"minReplicas":0,"maxReplicas":1}}`, model)
	echoSpec := `{"engine":"echo","scaling":{"minReplicas":0,"maxReplicas":1}}`
	if code, body := u.do(t, req{path: "/v1/deployments", token: u.admin, body: `{"name":"plain","spec":` + echoSpec + `}`}); code != http.StatusCreated {
		t.Fatalf("create plain: %d %s", code, body)
	}
	tests := []struct {
		name string
		r    req
		want int
	}{
		{name: "http command, deploy token", r: req{path: "/v1/deployments", token: deploy, body: `{"name":"h1","spec":` + httpSpec + `}`}, want: 403},
		{name: "python class, deploy token", r: req{path: "/v1/deployments", token: deploy, body: `{"name":"p1","spec":` + pySpec + `}`}, want: 403},
		{name: "replace with a command, deploy token", r: req{method: http.MethodPut, path: "/v1/deployments/plain", token: deploy, body: `{"name":"plain","spec":` + httpSpec + `}`}, want: 403},
		{name: "patch in a command, deploy token", r: req{method: http.MethodPatch, path: "/v1/deployments/plain", token: deploy, body: `{"spec":{"engine":"http","command":` + command + `}}`}, want: 403},
		{name: "http command, predict token", r: req{path: "/v1/deployments", token: predict, body: `{"name":"h2","spec":` + httpSpec + `}`}, want: 403},
		{name: "echo, deploy token", r: req{path: "/v1/deployments", token: deploy, body: `{"name":"e1","spec":` + echoSpec + `}`}, want: 201},
		{name: "python class, deploy+exec token", r: req{path: "/v1/deployments", token: deployExec, body: `{"name":"p2","spec":` + pySpec + `}`}, want: 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := u.do(t, tt.r)
			if code != tt.want {
				t.Fatalf("HTTP %d %s; want %d", code, body, tt.want)
			}
			if tt.want == http.StatusForbidden && (errorCode(body) != "auth/forbidden" || !strings.Contains(body, `\"exec\"`) && !strings.Contains(body, `\"deploy\"`)) {
				t.Errorf("403 %s: want auth/forbidden naming the missing scope", body)
			}
		})
	}
	// The refused specs changed nothing and ran nothing.
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command of a refused deployment ran")
	}
	if code, body := u.do(t, req{path: "/v1/deployments/plain", token: u.admin}); code != http.StatusOK || strings.Contains(body, `"command"`) {
		t.Errorf("deployment plain after the refused changes: %d %s", code, body)
	}
	for _, name := range []string{"h1", "p1", "h2"} {
		if code, _ := u.do(t, req{path: "/v1/deployments/" + name, token: u.admin}); code != http.StatusNotFound {
			t.Errorf("refused deployment %s exists (%d)", name, code)
		}
	}
}

// TestTokensNotConfusedAcrossRequests: requests with different tokens,
// interleaved on kept-alive connections, are each authorized as their own
// token. The admin API runs behind an adaptor whose request strings point
// into buffers the server reuses for the next request, and the token
// verifier keeps each token as a cache key: a key that changed under it
// let a deploy token act as admin (and run commands) and the admin token
// act as another. Every answer must be the one its own token earns.
func TestTokensNotConfusedAcrossRequests(t *testing.T) {
	u := startUp(t, t.TempDir())
	deploy := u.createToken(t, "deploy")
	predict := u.createToken(t, "predict:*")
	read := u.createToken(t, "read")
	command := `{"name":"x","spec":{"engine":"http","command":["sh","-c","sleep 60"],"scaling":{"minReplicas":0,"maxReplicas":1}}}`
	cases := []struct {
		who  string
		r    req
		want int
	}{
		{"admin lists tokens", req{path: "/v1/tokens", token: u.admin}, 200},
		{"deploy runs a command", req{path: "/v1/deployments", token: deploy, body: command}, 403},
		{"deploy lists tokens", req{path: "/v1/tokens", token: deploy}, 403},
		{"predict reads deployments", req{path: "/v1/deployments", token: predict}, 403},
		{"read lists deployments", req{path: "/v1/deployments", token: read}, 200},
		{"read writes", req{path: "/v1/deployments", token: read, body: command}, 403},
	}
	const rounds, workers = 25, 4
	errs := make(chan string, rounds*workers*len(cases))
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range rounds {
				c := cases[(i+w)%len(cases)]
				code, body, err := u.try(c.r)
				if err != nil || code != c.want {
					errs <- fmt.Sprintf("%s: HTTP %d (%v), want %d: %.200s", c.who, code, err, c.want, body)
				}
			}
		}()
	}
	for range workers {
		<-done
	}
	close(errs)
	n := 0
	for e := range errs {
		if n++; n <= 5 {
			t.Error(e)
		}
	}
	if n > 0 {
		t.Errorf("%d of %d requests were answered as another token's", n, rounds*workers)
	}
	if code, _ := u.do(t, req{path: "/v1/deployments/x", token: u.admin}); code != http.StatusNotFound {
		t.Errorf("a deploy token's command deployment exists (%d)", code)
	}
}
