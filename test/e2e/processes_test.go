package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	"github.com/ebb-ml/ebb/internal/serving"
)

// Process faults of `ebb up` (issue 10, "Processes"): trees of processes,
// quick crash loops, and connections on SIGTERM.

// admin calls the admin API of p with the admin token `ebb up` wrote in
// dataDir, and decodes the answer into out.
func admin(t *testing.T, p *ebbProc, dataDir, method, path string, in, out any) int {
	t.Helper()
	var rd io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token")); err == nil {
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// waitFor polls deployment name's status until cond holds.
func waitFor(t *testing.T, p *ebbProc, dataDir, name string, timeout time.Duration, what string, cond func(serving.Status) bool) serving.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var d serving.Deployment
		if code := admin(t, p, dataDir, http.MethodGet, "/v1/deployments/"+name, nil, &d); code != http.StatusOK {
			t.Fatalf("GET deployment %s: %d", name, code)
		}
		if cond(d.Status) {
			return d.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment %s: %s not reached within %s; status %+v", name, what, timeout, d.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rawGet sends a GET on c and reads the answer.
func rawGet(t *testing.T, c net.Conn, br *bufio.Reader, path string) *http.Response {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, c.RemoteAddr()); err != nil {
		t.Fatalf("send GET %s: %v", path, err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// closedCleanly reads from c until it ends, and fails the test unless the
// end is a clean close (EOF) rather than a reset.
func closedCleanly(t *testing.T, c net.Conn, br *bufio.Reader, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err := br.ReadByte()
	switch {
	case errors.Is(err, io.EOF):
	case errors.Is(err, syscall.ECONNRESET):
		t.Errorf("%s: connection reset; want a clean close", what)
	default:
		t.Errorf("%s: read = %v; want EOF", what, err)
	}
}

// TestSIGTERMClosesKeepAliveGracefully: clients holding idle keep-alive
// connections across a SIGTERM of `ebb up` see a clean close, and a request
// sent on one while ebb drains is answered with "Connection: close", not
// reset.
func TestSIGTERMClosesKeepAliveGracefully(t *testing.T) {
	addr := freeAddr(t)
	p := startEbb(t, addr, t.TempDir())
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		br := bufio.NewReader(c)
		if resp := rawGet(t, c, br, "/v2/health/live"); resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("GET live = %d (close %v); want 200 on a keep-alive connection", resp.StatusCode, resp.Close)
		}
		return c, br
	}
	busy, busyR := dial()   // sends again while ebb drains
	quiet, quietR := dial() // stays idle

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // ebb is draining now
	resp := rawGet(t, busy, busyR, "/v2/health/live")
	if !resp.Close {
		t.Errorf("a response while draining has no \"Connection: close\" (header %v)", resp.Header)
	}
	closedCleanly(t, busy, busyR, "the connection used while draining")
	closedCleanly(t, quiet, quietR, "the idle connection")
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("ebb up exited with %v after SIGTERM", p.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ebb up did not exit within 30s of SIGTERM")
	}
}

// readIntFile waits for path to hold a number other than not.
func readIntFile(t *testing.T, path string, not int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if n, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && n != not {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no new number within 30s", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// goneWithPort waits for pid to end and port to be free.
func goneWithPort(t *testing.T, pid, port int, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
		}
		if !running(pid) && err != nil {
			return
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%s (pid %d) still runs or its port %d still answers", what, pid, port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHTTPReplicaLeavesNoGrandchildren: the OIP server an http replica's
// command starts in the background (a grandchild of the replica, holding
// its port) ends with the replica: when the replica is SIGKILLed, when ebb
// stops cleanly, and when ebb was SIGKILLed and the replica died while ebb
// was down (the next ebb up reaps it).
func TestHTTPReplicaLeavesNoGrandchildren(t *testing.T) {
	addr, data, files := freeAddr(t), t.TempDir(), t.TempDir()
	gcFile, portFile := filepath.Join(files, "gc.pid"), filepath.Join(files, "port")
	const name = "tree"
	spec := serving.Spec{Engine: "http", Scaling: serving.Scaling{MinReplicas: 1, MaxReplicas: 1}, Command: []string{"sh", "-c",
		ebbBin + " replica --engine echo --deployment " + name + " --addr 127.0.0.1:$PORT & echo $! > " + gcFile +
			"; echo $PORT > " + portFile + "; wait"}}
	p := startEbb(t, addr, data)
	if code := admin(t, p, data, http.MethodPost, "/v1/deployments", serving.Deployment{Name: name, Spec: spec}, nil); code != http.StatusCreated {
		t.Fatalf("create deployment: %d", code)
	}
	readyOne := func(p *ebbProc, not string) serving.ReplicaStatus {
		t.Helper()
		st := waitFor(t, p, data, name, 60*time.Second, "a new ready replica", func(st serving.Status) bool {
			return st.ReadyReplicas == 1 && len(st.ReplicaStatuses) == 1 && st.ReplicaStatuses[0].ID != not
		})
		return st.ReplicaStatuses[0]
	}
	tree := func(p *ebbProc, not string, notGC int) (r serving.ReplicaStatus, leader, gc, port int) {
		t.Helper()
		r = readyOne(p, not)
		gc, port = readIntFile(t, gcFile, notGC), readIntFile(t, portFile, 0)
		leader, err := replicaPID(t.Context(), r.Endpoint)
		if err != nil {
			t.Fatal(err)
		}
		return r, leader, gc, port
	}

	// SIGKILL of the replica.
	r, leader, gc, port := tree(p, "", 0)
	syscall.Kill(leader, syscall.SIGKILL)
	goneWithPort(t, gc, port, "the grandchild of a SIGKILLed replica")

	// A clean stop of ebb.
	r, _, gc, port = tree(p, r.ID, gc)
	p.stop()
	goneWithPort(t, gc, port, "the grandchild after ebb stopped")

	// ebb SIGKILLed; its replica dies while ebb is down, leaving the
	// grandchild; the next ebb reaps it.
	p = startEbb(t, addr, data)
	_, leader, gc, port = tree(p, "", gc)
	p.kill()
	syscall.Kill(leader, syscall.SIGKILL)
	time.Sleep(200 * time.Millisecond)
	if !running(gc) {
		t.Fatalf("the grandchild (pid %d) died with its replica; the test needs it orphaned", gc)
	}
	p = startEbb(t, addr, data)
	goneWithPort(t, gc, port, "the orphaned grandchild after ebb restarted")
	p.stop()
}

// TestQuickCrashLoopHoldsRequests: when every replica dies about a second
// after it becomes ready, requests are held (or served) while replicas
// restart, not failed fast; after three failed starts in a row the
// deployment is failed with the reason, and only then do requests fail
// fast.
func TestQuickCrashLoopHoldsRequests(t *testing.T) {
	data := t.TempDir()
	p := startEbb(t, freeAddr(t), data)
	const name = "crashy"
	// The model server exits (timeout's 124) a second after it starts.
	spec := serving.Spec{Engine: "http", Scaling: serving.Scaling{MinReplicas: 1, MaxReplicas: 1}, Command: []string{"sh", "-c",
		"exec timeout 1 " + ebbBin + " replica --engine echo --deployment " + name + " --addr 127.0.0.1:$PORT"}}
	if code := admin(t, p, data, http.MethodPost, "/v1/deployments", serving.Deployment{Name: name, Spec: spec}, nil); code != http.StatusCreated {
		t.Fatalf("create deployment: %d", code)
	}
	body := `{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`
	var (
		mu                   sync.Mutex
		served, fastFailures int
		early                []string // "cannot start" answers before the limit
		stop                 = make(chan struct{})
		wg                   sync.WaitGroup
	)
	client := &http.Client{Timeout: 90 * time.Second}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post(p.base+"/v2/models/"+name+"/infer", "application/json", strings.NewReader(body))
				if err != nil {
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				switch {
				case resp.StatusCode == http.StatusOK:
					served++
				case strings.Contains(string(b), "cannot start a replica"):
					fastFailures++
					if !strings.Contains(string(b), "starts failed in a row") {
						early = append(early, string(b))
					}
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	st := waitFor(t, p, data, name, 60*time.Second, "failed", func(st serving.Status) bool { return st.Failure != "" })
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if !strings.Contains(st.Failure, "3 starts failed in a row") || !strings.Contains(st.Failure, "exited unexpectedly") {
		t.Errorf("status.failure = %q; want the count and the reason", st.Failure)
	}
	t.Logf("served %d, failed fast %d; failure %q", served, fastFailures, st.Failure)
	if len(early) > 0 {
		t.Errorf("%d requests failed fast before the deployment was failed, e.g. %s", len(early), early[0])
	}
	if served == 0 {
		t.Errorf("no request was served by the replicas between crashes")
	}
}
