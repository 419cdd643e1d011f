// Package process runs replicas as local OS processes: one replica process
// per replica (the lean ebb-replica binary, or `ebb replica`; see
// ReplicaCommand), serving OIP v2 on a loopback port.
//
// The backend opens each replica's listening socket itself and hands it to
// the child, so the endpoint is known before the child runs and no port can
// be taken in between. The child reports "model loaded, serving" on an
// inherited pipe, which makes readiness immediate instead of polled.
// Replicas run in their own session and process group, so they outlive a
// crash of ebb and a restarted ebb can Recover them from their stored
// handles. A replica's whole process tree ends with it: when the replica
// exits, or is killed because it did not stop in time, every process left in
// its session is killed (tree.go), and a restarted ebb kills the trees of
// the stored replicas it cannot reattach.
//
// With Options.Sockets, each replica also serves REST on a Unix socket the
// backend opens and hands it likewise (socket.go), which the gateway dials.
//
// Every replica gets a random secret in its environment (never on its
// command line, which every user can read) and refuses requests without it
// but health checks (see replica.Handle.Secret): a loopback port is open to
// every user of the machine.
package process

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/internal/replica"
	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"
)

// Name is the backend name recorded in handles.
const Name = "process"

var _ replica.Backend = (*Backend)(nil)

// Options configure a Backend.
type Options struct {
	// Command is the argv that starts a replica; the replica flags are
	// appended. Default: ReplicaCommand of this executable (the
	// ebb-replica beside it, else this executable followed by "replica").
	Command []string
	// LogDir receives one log file per replica (<id>.log). Default: the
	// system temp dir, which MaintainLogs leaves alone.
	LogDir string
	// LogMaxBytes caps a replica's current log file: MaintainLogs rotates
	// it to <id>.log.1 … <id>.log.<LogKeep> once it is this big (0: no
	// cap). LogRetention is how long the logs of a replica that no longer
	// runs are kept (0: forever). See rotate.go.
	LogMaxBytes  int64
	LogKeep      int
	LogRetention time.Duration
	// Env is added to the replica's environment.
	Env []string
	// Clock stamps handles; default the real clock.
	Clock clock.PassiveClock
	// NoSecrets starts replicas without a secret: any local user may call
	// them. Only for benchmarks that reach replicas directly.
	NoSecrets bool
	// ReplicaArgs are more `ebb replica` flags given to every replica:
	// ebb up's limits (timeouts, --max-request-elements), so a replica
	// bounds requests as its gateway does.
	ReplicaArgs []string
	// Sockets gives each replica a Unix stream socket besides its
	// loopback port, on which it serves REST (Handle.Socket): an abstract
	// name on Linux, else a file in SocketDir (made 0700; its path must
	// be short). Not for engine http, whose replica serves one listener.
	Sockets   bool
	SocketDir string
}

// Backend starts replicas as child processes. Its zero value is not usable;
// call New.
type Backend struct {
	opts      Options
	ownLogDir bool // LogDir was given: MaintainLogs may rotate and prune in it

	// mu guards procs.
	mu    sync.Mutex
	procs map[string]*proc
}

// proc is a replica this Backend started or recovered.
type proc struct {
	pid    int
	tree   tree
	notify *os.File // read end of the readiness pipe; nil when recovered
	// gate is the write end of the replica's gate (see Recorded); nil
	// once released, and for a recovered replica.
	gate *os.File
	done chan struct{}
	exit replica.Exit // set before done is closed

	// mu guards reaped (once the leader is reaped its PID may name
	// another process, so its group is no longer signalled) and gate.
	mu     sync.Mutex
	reaped bool
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
		opts.Command, _ = ReplicaCommand(exe)
	}
	ownLogDir := opts.LogDir != ""
	if !ownLogDir {
		opts.LogDir = os.TempDir()
	}
	if opts.LogKeep <= 0 {
		opts.LogKeep = DefaultLogKeep
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.SocketDir != "" {
		// Absolute: the path is stored in handles, for a later ebb.
		dir, err := filepath.Abs(opts.SocketDir)
		if err != nil {
			return nil, fmt.Errorf("process backend: socket dir: %w", err)
		}
		opts.SocketDir = dir
	}
	return &Backend{opts: opts, ownLogDir: ownLogDir, procs: map[string]*proc{}}, nil
}

// Start launches a replica process for spec on a fresh loopback port.
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
	gateR, gateW, err := os.Pipe()
	if err != nil {
		notifyR.Close()
		return h, fmt.Errorf("start replica %s: %w", spec.ID, err)
	}
	defer gateR.Close()
	// Until the replica runs, the gate is ours to close.
	gateOwned := true
	defer func() {
		if gateOwned {
			gateW.Close()
		}
	}()
	var sockFile *os.File
	if spec.Engine != "http" {
		h.Socket, sockFile = b.openSocket(ctx, spec.ID)
	}
	if sockFile != nil {
		defer sockFile.Close()
	}
	// Until the replica runs, a socket file is ours to remove.
	started := false
	defer func() {
		if !started {
			b.removeSocket(h.Socket)
		}
	}()

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

	args := append(append([]string{}, b.opts.Command[1:]...), b.replicaArgs(spec, sockFile != nil)...)
	// Not exec.CommandContext: the replica must outlive the request that
	// started it.
	cmd := exec.Command(b.opts.Command[0], args...)
	cmd.Env = append(os.Environ(), b.opts.Env...)
	for k, v := range spec.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// The replica's secret goes in its environment, which only its user
	// can read (/proc/PID/environ), never on its command line.
	secret := ""
	if !b.opts.NoSecrets {
		if secret, err = newSecret(); err != nil {
			notifyR.Close()
			return h, fmt.Errorf("start replica %s: %w", spec.ID, err)
		}
	}
	h.Secret = secret
	// Last, so they win: the secret (empty: none), and the ID that marks
	// the replica's tree (tree.go).
	cmd.Env = append(cmd.Env, replica.SecretEnv+"="+secret, ReplicaIDEnv+"="+spec.ID)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.ExtraFiles = []*os.File{lnFile, notifyW}
	if sockFile != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, sockFile) // fd 5
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, gateR) // the last fd: --gate-fd
	// Its own process group, led by the replica, in ebb's session (see
	// tree.go for why not a session of its own).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		notifyR.Close()
		return h, fmt.Errorf("start replica %s: %w", spec.ID, err)
	}
	started = true
	h.StartedAt = b.opts.Clock.Now()
	h.Endpoint = "http://" + ln.Addr().String()
	st := state{PID: cmd.Process.Pid, LogPath: logPath}
	st.StartTime, _ = procStartTime(st.PID)
	h.State, _ = json.Marshal(st)

	gateOwned = false
	p := &proc{pid: st.PID, notify: notifyR, gate: gateW, done: make(chan struct{}),
		tree: tree{id: spec.ID, leader: st.PID, startTime: st.StartTime, held: true}}
	b.mu.Lock()
	b.procs[spec.ID] = p
	b.mu.Unlock()
	sock := h.Socket
	go func() {
		// Wait for the exit without reaping, so the leader's PID still
		// names its tree while what it left behind is killed.
		waitExited(st.PID)
		p.mu.Lock()
		p.tree.kill()
		err := cmd.Wait()
		p.reaped = true
		p.mu.Unlock()
		p.exit = exitOf(cmd.ProcessState, err)
		b.removeSocket(sock)
		p.closeGate()
		close(p.done)
	}()
	return h, nil
}

// A replica's gate. A replica outlives ebb by design (the next ebb
// reattaches to the replicas its store records), so one that ebb started
// but died before recording would run on unknown to anyone: an orphan
// holding its port, memory and CPU. Each replica therefore gets the read
// end of a pipe (--gate-fd) whose write end only ebb holds. Once the
// replica is recorded, Recorded writes a byte and closes the pipe; the
// replica reads the byte and runs on, whatever happens to ebb later. If
// ebb dies first, the kernel closes the write end and the replica reads
// end-of-file without a byte: it exits at once (it was never routed:
// requests reach a replica only after it is recorded and ready).

// Recorded releases the replica's gate (see above): the caller has stored
// h, so an ebb that restarts will find the replica. A recovered replica,
// and one released already, has no gate.
// An error means the replica could not be told, and exits as if ebb had
// died.
func (b *Backend) Recorded(h replica.Handle) error {
	p, err := b.lookup(h)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == nil {
		return nil
	}
	_, err = p.gate.Write([]byte{1})
	p.gate.Close()
	p.gate = nil
	if err != nil {
		return fmt.Errorf("release the gate of replica %s: %w", h.Spec.ID, err)
	}
	return nil
}

// closeGate closes the gate unreleased, once the replica exited.
func (p *proc) closeGate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		p.gate.Close()
		p.gate = nil
	}
}

// newSecret returns 256 random bits, hex.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("replica secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// waitExited blocks until our child pid has exited, leaving it unreaped.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// killTree kills p's whole tree at once, unless it is gone already.
func (p *proc) killTree() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reaped {
		p.tree.kill()
	}
}

// signal sends sig to the replica's leader, never to a process that reused
// its PID.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return syscall.ESRCH
	}
	if p.tree.held {
		return syscall.Kill(p.pid, sig)
	}
	// Recovered: not our child, so check the process behind a pidfd.
	fd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if st, err := readProcStat(p.pid); err != nil || (p.tree.startTime != 0 && st.startTime != p.tree.startTime) {
		return syscall.ESRCH
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}

// replicaArgs are the `ebb replica` flags that serve spec on the inherited
// listener (fd 3), and the Unix socket (fd 5) when socket is true,
// reporting readiness on fd 4, watching its gate on the last fd (5 or 6),
// with Options.ReplicaArgs.
func (b *Backend) replicaArgs(spec replica.Spec, socket bool) []string {
	fds := []string{"--listen-fd", "3", "--notify-fd", "4", "--gate-fd", "5"}
	if socket {
		fds = []string{"--listen-fd", "3", "--notify-fd", "4", "--socket-fd", "5", "--gate-fd", "6"}
	}
	return replica.Args(spec, append(fds, b.opts.ReplicaArgs...)...)
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

// Stop sends SIGTERM so the replica drains, and kills its whole process tree
// if ctx ends first. Whatever the replica leaves running when it exits is
// killed too.
func (b *Backend) Stop(ctx context.Context, h replica.Handle) error {
	p, err := b.lookup(h)
	if errors.Is(err, replica.ErrNotFound) {
		return nil // never ran here or already reaped
	}
	if err := p.signal(syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop replica %s (pid %d): %w", h.Spec.ID, p.pid, err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.killTree()
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
