package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Env is what a scenario runs in: where files go, how processes are pinned,
// the ebb binary, and the processes started so far.
type Env struct {
	// Root is the repository root.
	Root string
	// Work is a fresh directory for this run's files.
	Work string
	// Ebb is the path of the ebb binary built for this run.
	Ebb string
	// Quick asks scenarios for shorter runs (fewer rounds and requests).
	Quick bool
	// LoadCPUs and ServerCPUs are taskset CPU lists for the load generator
	// and the servers; empty means no pinning.
	LoadCPUs, ServerCPUs string
	// LoadThreads is how many wrk threads to run (one per load CPU).
	LoadThreads int
	// Python is the interpreter with Debian's xgboost, flask and fastapi.
	Python string
	// Out receives progress lines.
	Out io.Writer

	mu    sync.Mutex
	procs []*Proc
	// ebbs are the ebb instances started since the last EbbLogFindings.
	ebbs []*Proc

	ebbFlagsOnce sync.Once
	ebbFlags     []string
}

// Logf writes a progress line.
func (e *Env) Logf(format string, args ...any) {
	fmt.Fprintf(e.Out, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Pick returns quick when the run is quick, full otherwise.
func Pick[T any](e *Env, full, quick T) T {
	if e.Quick {
		return quick
	}
	return full
}

// StartOptions say how to start a server process.
type StartOptions struct {
	// Name labels the process in logs and reports; it names the log file.
	Name string
	Dir  string
	// Env is added to the harness's environment.
	Env []string
}

// Start runs argv pinned to the server CPUs, with stdout and stderr in a
// log file under Work. The process is stopped by StopAll.
func (e *Env) Start(o StartOptions, argv ...string) (*Proc, error) {
	return e.start(o, e.ServerCPUs, argv)
}

// StartLoad is Start for a load generator: argv runs pinned to the load
// CPUs, beside the harness, not the servers.
func (e *Env) StartLoad(o StartOptions, argv ...string) (*Proc, error) {
	return e.start(o, e.LoadCPUs, argv)
}

func (e *Env) start(o StartOptions, cpus string, argv []string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("start %s: empty command", o.Name)
	}
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	logPath := filepath.Join(e.Work, "logs", sanitize(o.Name)+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = o.Dir
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", o.Name, strings.Join(argv, " "), err)
	}
	p := &Proc{Name: o.Name, Cmd: cmd, Log: logPath, done: make(chan struct{}), known: map[int]uint64{}}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	e.Logf("started %s (pid %d): %s", o.Name, p.PID(), strings.Join(argv, " "))
	return p, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '_'
		}
		return r
	}, s)
}

// StopAll stops every process started since the last StopAll, newest first,
// and returns the descendants that outlived their parents (killed by PID).
func (e *Env) StopAll() []string {
	e.mu.Lock()
	procs := e.procs
	e.procs = nil
	e.mu.Unlock()
	var left []string
	for i := len(procs) - 1; i >= 0; i-- {
		left = append(left, e.StopProc(procs[i])...)
	}
	return left
}

// StopProc stops p by its PID (SIGTERM, SIGKILL after 15s) and returns the
// descendants that outlived it.
func (e *Env) StopProc(p *Proc) []string {
	if !p.Exited() {
		e.Logf("stopping %s (pid %d)", p.Name, p.PID())
	}
	left := p.Stop(15 * time.Second)
	for _, l := range left {
		e.Logf("LEFTOVER process after stopping %s: %s (killed)", p.Name, l)
	}
	return left
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// WaitHTTP polls url until it answers 200, the process exits or ctx ends.
func WaitHTTP(ctx context.Context, p *Proc, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if ok, _ := get200(ctx, url); ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer 200 at %s within %s; log tail:\n%s", p.Name, url, timeout, p.LogTail(2000))
		case <-p.Done():
			return fmt.Errorf("%s exited before it was ready; log tail:\n%s", p.Name, p.LogTail(2000))
		case <-t.C:
		}
	}
}
