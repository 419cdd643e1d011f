// Package process runs replicas as local OS processes: one `ebb replica`
// process per replica, serving OIP v2 on a loopback port.
//
// The backend opens each replica's listening socket itself and hands it to
// the child, so the endpoint is known before the child runs and no port can
// be taken in between. The child reports "model loaded, serving" on an
// inherited pipe, which makes readiness immediate instead of polled.
// Replicas run in their own process group, so they outlive a crash of ebb and
// a restarted ebb can Recover them from their stored handles.
package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/ebb-ml/ebb/internal/replica"
	"k8s.io/utils/clock"
)

// Name is the backend name recorded in handles.
const Name = "process"

var _ replica.Backend = (*Backend)(nil)

// Options configure a Backend.
type Options struct {
	// Command is the argv that starts a replica; the replica flags are
	// appended. Default: this executable followed by "replica".
	Command []string
	// LogDir receives one log file per replica (<id>.log). Default: the
	// system temp dir.
	LogDir string
	// Env is added to the replica's environment.
	Env []string
	// Clock stamps handles; default the real clock.
	Clock clock.PassiveClock
}

// Backend starts replicas as child processes. Its zero value is not usable;
// call New.
type Backend struct {
	opts Options

	// mu guards procs.
	mu    sync.Mutex
	procs map[string]*proc
}

// proc is a replica this Backend started or recovered.
type proc struct {
	pid    int
	notify *os.File // read end of the readiness pipe; nil when recovered
	done   chan struct{}
	exit   replica.Exit // set before done is closed
}

// state is the backend-specific part of a Handle.
type state struct {
	PID int `json:"pid"`
	// StartTime is the process start time in clock ticks since boot
	// (/proc/PID/stat field 22), which tells a reused PID apart.
	StartTime uint64 `json:"startTime"`
	LogPath   string `json:"logPath"`
}

// New returns a Backend.
func New(opts Options) (*Backend, error) {
	if len(opts.Command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("process backend: find own executable: %w", err)
		}
		opts.Command = []string{exe, "replica"}
	}
	if opts.LogDir == "" {
		opts.LogDir = os.TempDir()
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Backend{opts: opts, procs: map[string]*proc{}}, nil
}

// Start launches `ebb replica` for spec on a fresh loopback port.
func (b *Backend) Start(ctx context.Context, spec replica.Spec) (replica.Handle, error) {
	h := replica.Handle{Spec: spec, Backend: Name, ScheduledAt: b.opts.Clock.Now()}
	if err := ctx.Err(); err != nil {
		return h, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return h, fmt.Errorf("start replica %s: open a loopback port: %w", spec.ID, err)
	}
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		return h, fmt.Errorf("start replica %s: %w", spec.ID, err)
	}
	defer lnFile.Close()
	notifyR, notifyW, err := os.Pipe()
	if err != nil {
		return h, fmt.Errorf("start replica %s: %w", spec.ID, err)
	}
	defer notifyW.Close()

	if err := os.MkdirAll(b.opts.LogDir, 0o755); err != nil {
		notifyR.Close()
		return h, fmt.Errorf("start replica %s: create log dir: %w", spec.ID, err)
	}
	logPath := filepath.Join(b.opts.LogDir, spec.ID+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		notifyR.Close()
		return h, fmt.Errorf("start replica %s: open log: %w", spec.ID, err)
	}
	defer logFile.Close()

	args := append(append([]string{}, b.opts.Command[1:]...), replicaArgs(spec)...)
	// Not exec.CommandContext: the replica must outlive the request that
	// started it.
	cmd := exec.Command(b.opts.Command[0], args...)
	cmd.Env = append(os.Environ(), b.opts.Env...)
	for k, v := range spec.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = []*os.File{lnFile, notifyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		notifyR.Close()
		return h, fmt.Errorf("start replica %s: %w", spec.ID, err)
	}
	h.StartedAt = b.opts.Clock.Now()
	h.Endpoint = "http://" + ln.Addr().String()
	st := state{PID: cmd.Process.Pid, LogPath: logPath}
	st.StartTime, _ = procStartTime(st.PID)
	h.State, _ = json.Marshal(st)

	p := &proc{pid: st.PID, notify: notifyR, done: make(chan struct{})}
	b.mu.Lock()
	b.procs[spec.ID] = p
	b.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.exit = exitOf(cmd.ProcessState, err)
		close(p.done)
	}()
	return h, nil
}

// replicaArgs are the `ebb replica` flags that serve spec on the inherited
// listener (fd 3), reporting readiness on fd 4.
func replicaArgs(spec replica.Spec) []string {
	return replica.Args(spec, "--listen-fd", "3", "--notify-fd", "4")
}

func exitOf(ps *os.ProcessState, err error) replica.Exit {
	if ps == nil {
		return replica.Exit{Code: -1, Err: err}
	}
	if ps.Success() {
		return replica.Exit{Code: 0}
	}
	return replica.Exit{Code: ps.ExitCode(), Err: errors.New(ps.String())}
}

func (b *Backend) lookup(h replica.Handle) (*proc, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.procs[h.Spec.ID]
	if !ok {
		return nil, fmt.Errorf("replica %s: %w: not started or recovered by this backend", h.Spec.ID, replica.ErrNotFound)
	}
	return p, nil
}

// Wait blocks until the replica exits.
func (b *Backend) Wait(ctx context.Context, h replica.Handle) (replica.Exit, error) {
	p, err := b.lookup(h)
	if err != nil {
		return replica.Exit{}, err
	}
	select {
	case <-p.done:
		b.forget(h.Spec.ID, p)
		return p.exit, nil
	case <-ctx.Done():
		return replica.Exit{}, ctx.Err()
	}
}

func (b *Backend) forget(id string, p *proc) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.procs[id] == p {
		delete(b.procs, id)
	}
	if p.notify != nil {
		p.notify.Close()
	}
}

// Stop sends SIGTERM so the replica drains, and SIGKILL if ctx ends first.
func (b *Backend) Stop(ctx context.Context, h replica.Handle) error {
	p, err := b.lookup(h)
	if errors.Is(err, replica.ErrNotFound) {
		return nil // never ran here or already reaped
	}
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop replica %s (pid %d): %w", h.Spec.ID, p.pid, err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
		<-p.done
	}
	b.forget(h.Spec.ID, p)
	return nil
}

// logTail returns the end of a replica's log, for error messages.
func logTail(h replica.Handle) string {
	var st state
	if json.Unmarshal(h.State, &st) != nil || st.LogPath == "" {
		return ""
	}
	b, err := os.ReadFile(st.LogPath)
	if err != nil {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// procStartTime reads field 22 of /proc/PID/stat.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after it
	// start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}
