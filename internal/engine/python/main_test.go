package python_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/ebbtest"
	"github.com/ebb-ml/ebb/internal/engine/python"
	"github.com/ebb-ml/ebb/internal/server"
)

// ebbBin is the ebb binary built once for the package's tests.
var ebbBin string

func TestMain(m *testing.M) { ebbtest.Main(m, &ebbBin) }

// requirePython skips the test when the default interpreter cannot import
// modules, except under CI, where the packages must be installed and their
// absence fails the test.
func requirePython(t *testing.T, modules ...string) {
	t.Helper()
	code := "import sys"
	if len(modules) > 0 {
		code = "import " + strings.Join(modules, ", ")
	}
	out, err := exec.Command(python.DefaultInterpreter, "-c", code).CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("%s cannot import %v (%v: %s): install them with apt-get install python3-sklearn python3-numpy python3-torch",
		python.DefaultInterpreter, modules, err, bytes.TrimSpace(out))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("skipping: " + msg)
}

func testdata(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func examplePath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "..", "examples", "sklearn-python", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// replicaProc is an `ebb replica --engine python` process started the way
// the process backend starts it: fd 3 a listening socket, fd 4 the notify
// pipe.
type replicaProc struct {
	cmd      *exec.Cmd
	endpoint string
	notice   server.Notice
	// lines receives the process's stderr lines (its log).
	lines chan string

	mu  sync.Mutex
	log []string
}

func (p *replicaProc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// waitLog blocks until a log line contains s, or the process's stderr
// closes.
func (p *replicaProc) waitLog(t *testing.T, s string) {
	t.Helper()
	for line := range p.lines {
		if strings.Contains(line, s) {
			return
		}
	}
	t.Fatalf("the replica's log ended without %q:\n%s", s, p.logText())
}

// startReplica starts an ebb python replica with the flags given after the
// ones that wire the descriptors, and waits for its notice.
func startReplica(t *testing.T, env []string, args ...string) *replicaProc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()
	notifyR, notifyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer notifyR.Close()

	argv := append([]string{"replica", "--engine", "python", "--listen-fd", "3", "--notify-fd", "4"}, args...)
	cmd := exec.Command(ebbBin, argv...)
	cmd.Env = append(append(os.Environ(), "XDG_CACHE_HOME="+t.TempDir()), env...)
	cmd.ExtraFiles = []*os.File{lnFile, notifyW}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	notifyW.Close()
	p := &replicaProc{cmd: cmd, endpoint: "http://" + ln.Addr().String(), lines: make(chan string, 1000)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log = append(p.log, sc.Text())
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("replica log:\n%s", p.logText())
		}
	})
	n, err := server.ReadNotice(notifyR)
	if err != nil {
		t.Fatalf("reading the notice: %v\nlog:\n%s", err, p.logText())
	}
	p.notice = n
	return p
}

// stop sends SIGTERM and returns the exit code.
func (p *replicaProc) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range p.lines { // drain the log so Wait can finish
	}
	err := p.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}

// call sends a request and returns the status and decoded JSON body.
func call(t *testing.T, method, url string, body any) (int, map[string]any) {
	t.Helper()
	return callWith(t, nil, method, url, body)
}

// callWith is call with headers.
func callWith(t *testing.T, header http.Header, method, url string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(enc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v: %s", method, url, err, raw)
		}
	}
	return resp.StatusCode, out
}

// workerPIDs returns the PIDs of the processes whose parent is pid: a
// replica's Python workers.
func workerPIDs(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after it.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			pids = append(pids, child)
		}
	}
	return pids
}

// alive reports whether a process with pid exists (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}
