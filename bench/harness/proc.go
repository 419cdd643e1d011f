package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a process the harness started. Stop it with Env.StopAll or
// Proc.Stop; both end it by its PID (and any descendants it left behind by
// their PIDs).
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	// Log is the file that holds the process's stdout and stderr.
	Log string

	done    chan struct{}
	waitErr error

	mu sync.Mutex
	// known are descendants seen while the process ran, with their start
	// times (to tell them from a later process that reuses the PID).
	known map[int]uint64
}

// PID returns the process id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process ends.
func (p *Proc) Done() <-chan struct{} { return p.done }

// LogTail returns the last n bytes of the process's log.
func (p *Proc) LogTail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// Tree returns the PIDs of the process and its live descendants, and
// remembers the descendants so that Stop can end those left behind.
func (p *Proc) Tree() []int {
	if p.Exited() {
		return nil
	}
	pids := descendants(p.PID())
	p.mu.Lock()
	for _, pid := range pids[1:] {
		if st, err := startTime(pid); err == nil {
			p.known[pid] = st
		}
	}
	p.mu.Unlock()
	return pids
}

// Stop sends SIGTERM, waits up to grace for the process to end, then sends
// SIGKILL. Descendants that outlive it are killed by PID and returned as
// leftovers ("pid name").
func (p *Proc) Stop(grace time.Duration) []string {
	p.Tree()
	if !p.Exited() {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.Cmd.Process.Kill()
			<-p.done
		}
	}
	// Give descendants that got the parent's signal a moment to exit.
	deadline := time.Now().Add(2 * time.Second)
	var left []string
	p.mu.Lock()
	defer p.mu.Unlock()
	for pid, st := range p.known {
		for time.Now().Before(deadline) && alive(pid, st) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid, st) {
			left = append(left, fmt.Sprintf("%d %s (child of %s)", pid, comm(pid), p.Name))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return left
}

// descendants returns root followed by every live descendant, found
// through /proc/*/stat.
func descendants(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{root}
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, err := parentOf(pid)
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// statFields returns the fields of /proc/pid/stat after the command name.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, errors.New("malformed stat")
	}
	return strings.Fields(s[i+1:]), nil
}

func parentOf(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil || len(f) < 2 {
		return 0, errors.New("no stat")
	}
	return strconv.Atoi(f[1])
}

func startTime(pid int) (uint64, error) {
	f, err := statFields(pid)
	if err != nil || len(f) < 20 {
		return 0, errors.New("no stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// cpuTicks returns utime+stime of pid in clock ticks.
func cpuTicks(pid int) (uint64, error) {
	f, err := statFields(pid)
	if err != nil || len(f) < 13 {
		return 0, errors.New("no stat")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed stat")
	}
	return u + s, nil
}

// alive reports whether pid runs and is the process that started at st
// (not a zombie).
func alive(pid int, st uint64) bool {
	f, err := statFields(pid)
	if err != nil || len(f) < 20 {
		return false
	}
	if f[0] == "Z" || f[0] == "X" {
		return false
	}
	got, err := strconv.ParseUint(f[19], 10, 64)
	return err == nil && got == st
}

func comm(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}

// Memory is the memory of a process tree.
type Memory struct {
	Processes int `json:"processes"`
	// RSS is the sum of resident set sizes (counts shared pages once per
	// process); PSS shares them out (smaps_rollup).
	RSSBytes int64 `json:"rssBytes"`
	PSSBytes int64 `json:"pssBytes"`
}

// MiB formats bytes in mebibytes.
func MiB(b int64) float64 { return float64(b) / (1 << 20) }

// TreeMemory sums RSS and PSS over the process and its descendants.
func (p *Proc) TreeMemory() Memory {
	var m Memory
	for _, pid := range p.Tree() {
		rss, pss, err := memOf(pid)
		if err != nil {
			continue
		}
		m.Processes++
		m.RSSBytes += rss
		m.PSSBytes += pss
	}
	return m
}

// ProcMemory is the memory of one process.
type ProcMemory struct {
	PID      int
	Command  string
	RSSBytes int64
	PSSBytes int64
}

// TreeMemoryByProcess lists the memory of the process and each descendant.
func (p *Proc) TreeMemoryByProcess() []ProcMemory {
	var out []ProcMemory
	for _, pid := range p.Tree() {
		rss, pss, err := memOf(pid)
		if err != nil {
			continue
		}
		out = append(out, ProcMemory{PID: pid, Command: cmdline(pid), RSSBytes: rss, PSSBytes: pss})
	}
	return out
}

// cmdline returns the first two words of a process's command line.
func cmdline(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return comm(pid)
	}
	f := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	f[0] = filepath.Base(f[0])
	return strings.Join(f[:min(2, len(f))], " ")
}

// TreeCPUTicks sums utime+stime over the process and its descendants.
func (p *Proc) TreeCPUTicks() uint64 {
	var t uint64
	for _, pid := range p.Tree() {
		if v, err := cpuTicks(pid); err == nil {
			t += v
		}
	}
	return t
}

// memOf reads Rss and Pss (bytes) from /proc/pid/smaps_rollup.
func memOf(pid int) (rss, pss int64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			rss = v * 1024
		case "Pss:":
			pss = v * 1024
		}
	}
	return rss, pss, nil
}
