package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/ebb-ml/ebb/internal/ebbtest"
	"github.com/ebb-ml/ebb/internal/engine/httpproxy/openaitest"
	"github.com/ebb-ml/ebb/internal/kubetest"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
)

// ebbBin is the ebb binary built once for the package.
var ebbBin string

// TestMain builds ebb, and ebb-cluster and ebb-replica beside it, once (as
// make build does, so ebb up runs its replicas with the lean binary); the
// cluster tests run them as the chart's pods (ebb-cluster) and the replica
// pods on the test cluster (internal/kubetest), which starts on first use.
func TestMain(m *testing.M) {
	openaitest.MainIfChild() // the OpenAI server of openai_test.go
	dir, err := os.MkdirTemp("", "ebbtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if ebbBin, err = ebbtest.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := kubetest.Run(m, kubetest.Options{EbbBinary: ebbBin})
	os.RemoveAll(dir)
	os.Exit(code)
}

// ebbProc is one running `ebb up`.
type ebbProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	log  string
	// token is the admin token ebb up wrote to its data dir; do sends it.
	token string
	done  chan struct{} // closed when the process has exited
	err   error         // its exit error, set before done is closed
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startEbb runs `ebb up` on addr with dataDir, and extra flags if any, and
// waits until it is ready.
func startEbb(t *testing.T, addr, dataDir string, extra ...string) *ebbProc {
	t.Helper()
	logPath := filepath.Join(dataDir, fmt.Sprintf("ebb-up-%d.log", time.Now().UnixNano()))
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// The tests deploy the repository's examples: let ebb up read them.
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ebbBin, append([]string{"up", "--addr", addr, "--data-dir", dataDir, "--drain-timeout", "10s", "--model-roots", examples}, extra...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logFile.Close()
	p := &ebbProc{t: t, cmd: cmd, base: "http://" + addr, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("ebb up log:\n%s", tail(b, 6000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.base + "/v2/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.token = adminToken(t, dataDir)
				return p
			}
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("ebb up exited early (%v):\n%s", p.err, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("ebb up not ready within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// adminToken reads the admin token ebb up keeps in its data dir.
func adminToken(t *testing.T, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatalf("ebb up wrote no admin token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// stop sends SIGTERM and waits for a clean exit.
func (p *ebbProc) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM ebb up: %v", err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			p.t.Errorf("ebb up exited with %v after SIGTERM; want 0", p.err)
		}
	case <-time.After(30 * time.Second):
		p.t.Fatal("ebb up did not exit within 30s of SIGTERM")
	}
}

// kill ends ebb up abruptly, leaving its replicas running.
func (p *ebbProc) kill() {
	p.t.Helper()
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *ebbProc) do(method, path string, body any, out any) int {
	p.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			p.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.base+path, rd)
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		p.t.Logf("%s %s = %d %s", method, path, resp.StatusCode, tail(b, 2000))
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			p.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

func (p *ebbProc) deployment(name string) serving.Deployment {
	p.t.Helper()
	var d serving.Deployment
	if code := p.do(http.MethodGet, "/v1/deployments/"+name, nil, &d); code != http.StatusOK {
		p.t.Fatalf("GET deployment %s: %d", name, code)
	}
	return d
}

// waitStatus polls the deployment until cond holds.
func (p *ebbProc) waitStatus(name string, timeout time.Duration, what string, cond func(serving.Status) bool) serving.Status {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := p.deployment(name).Status
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("deployment %s: %s not reached within %s; status %+v", name, what, timeout, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// replicaPID asks a replica for its PID.
func replicaPID(ctx context.Context, endpoint string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/ebb/v1/replica", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var info struct {
		PID int `json:"pid"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return 0, err
	}
	return info.PID, nil
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }
