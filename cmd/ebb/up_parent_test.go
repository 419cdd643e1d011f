package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/examples/diabetes"
)

func TestUnderGoRun(t *testing.T) {
	for _, tt := range []struct {
		exe  string
		want bool
	}{
		{"/tmp/go-build3012345678/b001/exe/ebb", true},
		{"/home/me/.cache/tmp/go-build42/b001/exe/ebb", true}, // GOTMPDIR
		{"/home/me/go/bin/ebb", false},
		{"/usr/local/bin/ebb", false},
		{"/home/me/ebb/bin/ebb", false},
		{"/home/me/not-go-build/ebb", false},
		{"/home/me/go-build/ebb", true},
		{"", false},
	} {
		if got := underGoRun(tt.exe); got != tt.want {
			t.Errorf("underGoRun(%q) = %v, want %v", tt.exe, got, tt.want)
		}
	}
}

// TestWatchParent: the context ends once the parent PID changes, and not
// before.
func TestWatchParent(t *testing.T) {
	ppid := make(chan int, 1)
	ppid <- 100
	getppid := func() int {
		p := <-ppid
		ppid <- p
		return p
	}
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	ctx, cancel := watchParent(context.Background(), 100, getppid, time.Millisecond, logger)
	defer cancel()
	select {
	case <-ctx.Done():
		t.Fatal("context ended while the parent lives")
	case <-time.After(50 * time.Millisecond):
	}
	<-ppid
	ppid <- 1 // reparented to init
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("context did not end after the parent exited")
	}
	if !strings.Contains(log.String(), "--exit-with-parent") {
		t.Errorf("log %q does not say why ebb stops", log.String())
	}
}

// upProc is `ebb up` started by a test: the test binary as ebb (or go run),
// under a parent process of its own.
type upProc struct {
	parent *exec.Cmd
	out    *syncBuffer // ebb up's stdout and stderr, with the parent's
	mark   string      // in the environment of every process of the test
	addr   string      // base URL of ebb up
}

// startUp starts `ebb up args...` on free loopback ports with auth off and
// the demo deployment: as a child of `sh` (the parent, which prints ebb's
// PID) when goRun is false, else with `go run .` (the parent). It returns
// once ebb is up. Every process started carries a mark in its environment,
// and the test kills what remains of them at its end.
func startUp(t *testing.T, goRun bool, args ...string) *upProc {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("finds processes in /proc")
	}
	p := &upProc{out: &syncBuffer{}, mark: "EBB_TEST_UP_MARK=" + rand.Text()}
	args = append([]string{"up", "--addr", "127.0.0.1:0", "--grpc-addr", "", "--auth", "off", "--demo",
		"--data-dir", t.TempDir(), "--drain-timeout", "5s"}, args...)
	env := append(os.Environ(), p.mark, serverEnv+"=")
	if goRun {
		p.parent = exec.Command("go", append([]string{"run", "."}, args...)...)
	} else {
		p.parent = exec.Command("sh", append([]string{"-c", `"$@" & wait`, "sh", os.Args[0]}, args...)...)
		env = append(env, asEbbEnv+"=1")
	}
	p.parent.Env = env
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.parent.Stdout, p.parent.Stderr = w, w
	if err := p.parent.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// Read until every writer is gone (the parent and ebb up): ebb must
	// never write to a closed pipe, which would kill it (SIGPIPE).
	go io.Copy(p.out, r) //nolint:errcheck // ends with EOF
	t.Cleanup(func() {
		_ = p.parent.Process.Kill()
		_ = p.parent.Wait()
		for _, pid := range p.alive() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	deadline := time.Now().Add(3 * time.Minute) // go run compiles first
	for p.addr == "" {
		if time.Now().After(deadline) {
			t.Fatalf("ebb up did not come up; output:\n%s", p.out)
		}
		time.Sleep(20 * time.Millisecond)
		sc := bufio.NewScanner(strings.NewReader(p.out.String()))
		for sc.Scan() {
			var l struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "ebb is up" {
				p.addr = l.Addr
			}
		}
	}
	return p
}

// infer sends the demo's request to the demo deployment, which starts a
// replica. The demo deployment is made just after ebb is up: until then,
// the request gets 404.
func (p *upProc) infer(t *testing.T) {
	t.Helper()
	c := &http.Client{Timeout: time.Minute}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Post(p.addr+"/v2/models/diabetes/infer", "application/json", bytes.NewReader(diabetes.Request))
		if err != nil {
			t.Fatalf("infer: %v\n%s", err, p.out)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return
		case resp.StatusCode != http.StatusNotFound || time.Now().After(deadline):
			t.Fatalf("infer: %s: %s\n%s", resp.Status, body, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processes returns the live processes (zombies excepted) that carry the
// test's mark, but the parent, split into replicas (which carry a replica
// ID too) and the rest.
func (p *upProc) processes() (replicas, others []int) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == p.parent.Process.Pid {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append(env, 0), []byte(p.mark+"\x00")) {
			continue
		}
		if st, err := readState(pid); err != nil || st == 'Z' || st == 'X' {
			continue
		}
		if bytes.Contains(env, []byte("\x00EBB_REPLICA_ID=")) {
			replicas = append(replicas, pid)
		} else {
			others = append(others, pid)
		}
	}
	return replicas, others
}

func (p *upProc) alive() []int {
	r, o := p.processes()
	return append(r, o...)
}

// readState reads a process's state (R, S, Z, ...) from /proc/PID/stat.
func readState(pid int) (byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return b[i+2], nil
}

// waitGone waits until no process of the test but the parent runs.
func (p *upProc) waitGone(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(p.alive()) > 0 {
		if time.Now().After(deadline) {
			r, o := p.processes()
			t.Fatalf("%s: replicas %v and processes %v still run; output:\n%s", what, r, o, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUpStopsWithItsParent: ebb up stops cleanly, its replica drained and
// stopped, whichever process gets the signal: its parent, killed or
// terminated (as SIGTERM to `go run` does), or ebb up itself.
func TestUpStopsWithItsParent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ebb up and a replica")
	}
	for _, tt := range []struct {
		name     string
		goRun    bool
		args     []string
		signal   syscall.Signal
		toParent bool
	}{
		{name: "parent killed", args: []string{"--exit-with-parent"}, signal: syscall.SIGKILL, toParent: true},
		{name: "parent terminated", args: []string{"--exit-with-parent"}, signal: syscall.SIGTERM, toParent: true},
		{name: "ebb terminated", args: []string{"--exit-with-parent=false"}, signal: syscall.SIGTERM},
		{name: "ebb hung up", args: []string{"--exit-with-parent=false"}, signal: syscall.SIGHUP},
		// go run's SIGTERM kills only the go command; ebb up notices by
		// itself (--exit-with-parent is on under go run).
		{name: "go run terminated", goRun: true, signal: syscall.SIGTERM, toParent: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.signal == syscall.SIGHUP && signal.Ignored(syscall.SIGHUP) {
				// As under nohup: ebb up inherits the ignored SIGHUP and
				// keeps it so.
				t.Skip("SIGHUP is ignored in this test process (nohup?)")
			}
			if tt.goRun {
				if _, err := exec.LookPath("go"); err != nil {
					t.Skip("no go command")
				}
			}
			p := startUp(t, tt.goRun, tt.args...)
			p.infer(t)
			replicas, others := p.processes()
			if len(replicas) != 1 || len(others) != 1 {
				t.Fatalf("before the signal: replicas %v, other processes %v; want one each (ebb up)", replicas, others)
			}
			target := p.parent.Process.Pid
			if !tt.toParent {
				target = others[0]
			}
			if err := syscall.Kill(target, tt.signal); err != nil {
				t.Fatal(err)
			}
			p.waitGone(t, "after "+tt.signal.String())
			if out := p.out.String(); !strings.Contains(out, "all replicas stopped") || !strings.Contains(out, "ebb stopped") {
				t.Errorf("ebb up did not stop cleanly; output:\n%s", out)
			}
			// Durations are logged as such, not as nanoseconds.
			if out := p.out.String(); !strings.Contains(out, `"msg":"shutting down: draining in-flight requests","timeout":"5s"`) {
				t.Errorf("no shutdown line with the drain timeout as \"5s\"; output:\n%s", out)
			}
			if tt.toParent && !strings.Contains(p.out.String(), "--exit-with-parent") {
				t.Errorf("ebb up did not say it stopped with its parent; output:\n%s", p.out)
			}
		})
	}
}
