package process_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"github.com/ebb-ml/ebb/internal/replica/process"
)

// running reports whether pid names a live process (not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// waitGone waits up to 5s for pid to stop running.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%s (pid %d) still runs", what, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readInt(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if n, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never written", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
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

// startHTTPTree starts an http engine replica whose command is a shell
// that runs the real OIP server (ebb's echo replica) as its own child on
// $PORT: the server is the replica's grandchild and holds the port.
func startHTTPTree(t *testing.T, b *process.Backend, id string) (h replica.Handle, grandchild, port int) {
	t.Helper()
	dir := t.TempDir()
	gcFile, portFile := filepath.Join(dir, "gc.pid"), filepath.Join(dir, "port")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, err := b.Start(ctx, replica.Spec{ID: id, Deployment: "tree", Engine: "http", Command: []string{"sh", "-c",
		ebbBin + " replica --engine echo --deployment tree --addr 127.0.0.1:$PORT & echo $! > " + gcFile +
			"; echo $PORT > " + portFile + "; wait"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop(context.Background(), h) })
	if _, err := b.Ready(ctx, h); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	grandchild, port = readInt(t, gcFile), readInt(t, portFile)
	t.Cleanup(func() { syscall.Kill(grandchild, syscall.SIGKILL) })
	if !running(grandchild) {
		t.Fatalf("the grandchild (pid %d) does not run", grandchild)
	}
	return h, grandchild, port
}

// portFree reports whether nothing listens on 127.0.0.1:port.
func portFree(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return true
}

// TestTreeEndsWithReplica checks that an http engine replica leaves no
// process behind, holding its port or not, however it ends.
func TestTreeEndsWithReplica(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, b *process.Backend, h replica.Handle)
	}{
		{"SIGKILL", func(t *testing.T, b *process.Backend, h replica.Handle) {
			if err := syscall.Kill(handlePID(t, h), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := b.Wait(ctx, h); err != nil {
				t.Fatalf("Wait: %v", err)
			}
		}},
		{"Stop", func(t *testing.T, b *process.Backend, h replica.Handle) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := b.Stop(ctx, h); err != nil {
				t.Fatalf("Stop: %v", err)
			}
		}},
		{"StopTimesOut", func(t *testing.T, b *process.Backend, h replica.Handle) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // no time to drain: the tree is killed at once
			if err := b.Stop(ctx, h); err != nil {
				t.Fatalf("Stop: %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := process.New(process.Options{Command: []string{ebbBin, "replica"}, LogDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			h, grandchild, port := startHTTPTree(t, b, "tree-"+strings.ToLower(tc.name))
			tc.end(t, b, h)
			waitGone(t, handlePID(t, h), "the replica")
			waitGone(t, grandchild, "the command's child")
			// The command between the replica and its child dies of the
			// signal the backend sends its session; that takes a moment.
			deadline := time.Now().Add(5 * time.Second)
			for !portFree(port) {
				if time.Now().After(deadline) {
					t.Fatalf("port %d is still served 5s after the replica ended", port)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// orphanTree starts what a replica killed while ebb was down leaves: a
// session led by a process that has exited, with a child still running.
// marked says whether the child carries the replica's marker.
func orphanTree(t *testing.T, id string, marked bool) (h replica.Handle, child int) {
	t.Helper()
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// The child writes its own PID, once its environment is final.
	script := "sh -c 'echo $$ > " + pidFile + "; exec sleep 300' & wait"
	if !marked {
		script = "env -u " + process.ReplicaIDEnv + " " + script
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), process.ReplicaIDEnv+"="+id)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	leader := cmd.Process.Pid
	start := startTime(t, leader)
	child = readInt(t, pidFile)
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	cmd.Process.Kill()
	cmd.Wait()
	state, _ := json.Marshal(map[string]any{"pid": leader, "startTime": start})
	return replica.Handle{Spec: replica.Spec{ID: id}, Backend: process.Name, Endpoint: "http://127.0.0.1:1", State: state}, child
}

func startTime(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRecoverReaps checks that Recover kills what is left of a replica it
// cannot reattach, and only that.
func TestRecoverReaps(t *testing.T) {
	b, err := process.New(process.Options{Command: []string{ebbBin, "replica"}, LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("OrphanedChild", func(t *testing.T) {
		h, child := orphanTree(t, "orphan-1", true)
		if err := b.Recover(ctx, h); !errors.Is(err, replica.ErrNotFound) {
			t.Fatalf("Recover = %v, want ErrNotFound", err)
		}
		waitGone(t, child, "the orphaned child")
	})
	t.Run("UnmarkedChildIsSpared", func(t *testing.T) {
		// In the session, but nothing proves it is the replica's.
		h, child := orphanTree(t, "orphan-2", false)
		if err := b.Recover(ctx, h); !errors.Is(err, replica.ErrNotFound) {
			t.Fatalf("Recover = %v, want ErrNotFound", err)
		}
		time.Sleep(100 * time.Millisecond)
		if !running(child) {
			t.Errorf("Recover killed pid %d, which does not carry the replica's marker", child)
		}
	})
	t.Run("ReusedPIDIsSpared", func(t *testing.T) {
		// A live process whose start time differs from the handle's: the
		// PID was reused and names a stranger.
		cmd := exec.Command("sleep", "300")
		cmd.Env = append(os.Environ(), process.ReplicaIDEnv+"=reused")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		pid := cmd.Process.Pid
		state, _ := json.Marshal(map[string]any{"pid": pid, "startTime": startTime(t, pid) - 1})
		h := replica.Handle{Spec: replica.Spec{ID: "reused"}, Backend: process.Name, Endpoint: "http://127.0.0.1:1", State: state}
		if err := b.Recover(ctx, h); !errors.Is(err, replica.ErrNotFound) {
			t.Fatalf("Recover = %v, want ErrNotFound", err)
		}
		time.Sleep(100 * time.Millisecond)
		if !running(pid) {
			t.Errorf("Recover killed pid %d, a process that reused the replica's PID", pid)
		}
	})
	t.Run("LiveButSilentLeader", func(t *testing.T) {
		// The replica runs but does not answer at its endpoint: it cannot
		// be reattached, so it is killed rather than left running.
		cmd := exec.Command("sleep", "300")
		cmd.Env = append(os.Environ(), process.ReplicaIDEnv+"=silent")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		defer func() { cmd.Process.Kill(); <-done }()
		state, _ := json.Marshal(map[string]any{"pid": pid, "startTime": startTime(t, pid)})
		h := replica.Handle{Spec: replica.Spec{ID: "silent"}, Backend: process.Name, Endpoint: "http://127.0.0.1:1", State: state}
		if err := b.Recover(ctx, h); !errors.Is(err, replica.ErrNotFound) {
			t.Fatalf("Recover = %v, want ErrNotFound", err)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("the silent replica (pid %d) still runs", pid)
		}
	})
}
