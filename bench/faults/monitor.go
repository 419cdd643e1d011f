package faults

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

// Monitor samples the peak RSS (VmHWM) of every ebb process: each `ebb up`
// it is told about, their descendants, and the replica PIDs it is told
// about (replicas outlive a SIGKILLed ebb up and are then not its
// children). It remembers every PID with its start time, so that Leftovers
// can say which still run after the case stopped its processes.
type Monitor struct {
	mu sync.Mutex
	// ups are the ebb up processes watched.
	ups []*harness.Proc
	// extra are PIDs learnt otherwise (replicas' /ebb/v1/replica pid, pod
	// processes), with their roles.
	extra map[int]string
	// seen maps a PID to what was learnt about it.
	seen map[int]*procPeak
	// ports are loopback ports ebb listened on.
	ports map[string]bool
	stop  chan struct{}
	done  chan struct{}
}

type procPeak struct {
	pid     int
	start   uint64
	command string
	role    string // "ebb up" or "replica"
	hwm     int64
}

// NewMonitor starts sampling every 100 ms until Stop.
func NewMonitor() *Monitor {
	m := &Monitor{extra: map[int]string{}, seen: map[int]*procPeak{}, ports: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			m.Sample()
			select {
			case <-m.stop:
				m.Sample()
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// WatchEbb adds an ebb up process and its address.
func (m *Monitor) WatchEbb(b *harness.Ebb) {
	m.mu.Lock()
	m.ups = append(m.ups, b.Proc)
	m.ports[b.Addr] = true
	m.mu.Unlock()
	m.Sample()
}

// WatchPID adds a replica process and its address (host:port, or "").
func (m *Monitor) WatchPID(pid int, addr string) { m.WatchProcess(pid, "replica", addr) }

// WatchProcess adds a process with its role ("operator", "gateway",
// "replica", ...) and its address (host:port, or "").
func (m *Monitor) WatchProcess(pid int, role, addr string) {
	m.mu.Lock()
	if _, ok := m.extra[pid]; !ok {
		m.extra[pid] = role
	}
	if addr != "" {
		m.ports[addr] = true
	}
	m.mu.Unlock()
	m.Sample()
}

// Sample reads VmHWM of every watched process now.
func (m *Monitor) Sample() {
	m.mu.Lock()
	defer m.mu.Unlock()
	pids := map[int]string{}
	for _, p := range m.ups {
		for i, pid := range p.Tree() {
			if i == 0 {
				pids[pid] = "ebb up"
			} else {
				pids[pid] = "replica"
			}
		}
	}
	for pid, role := range m.extra {
		if _, ok := pids[pid]; !ok {
			pids[pid] = role
		}
	}
	for pid, role := range pids {
		st, err := startTime(pid)
		if err != nil {
			continue
		}
		hwm, err := vmHWM(pid)
		if err != nil {
			continue
		}
		pp := m.seen[pid]
		if pp == nil || pp.start != st {
			pp = &procPeak{pid: pid, start: st, command: cmdline(pid), role: role}
			m.seen[pid] = pp
		}
		pp.hwm = max(pp.hwm, hwm)
	}
}

// Stop ends sampling.
func (m *Monitor) Stop() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

// Peaks returns the highest VmHWM of an ebb up and of a replica, and how
// many processes of each were seen.
func (m *Monitor) Peaks() (up, replica int64, nUp, nReplica int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.seen {
		if p.role == "ebb up" {
			up = max(up, p.hwm)
			nUp++
		} else {
			replica = max(replica, p.hwm)
			nReplica++
		}
	}
	return
}

// PeakByRole returns the highest VmHWM of a process of each role, and how
// many processes of each were seen.
func (m *Monitor) PeakByRole() (map[string]int64, map[string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	peak, n := map[string]int64{}, map[string]int{}
	for _, p := range m.seen {
		peak[p.role] = max(peak[p.role], p.hwm)
		n[p.role]++
	}
	return peak, n
}

// Table lists every process seen with its peak RSS.
func (m *Monitor) Table() harness.Table {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []*procPeak
	for _, p := range m.seen {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *procPeak) int {
		if a.role != b.role {
			return strings.Compare(a.role, b.role)
		}
		return a.pid - b.pid
	})
	t := harness.Table{Caption: "Peak RSS (VmHWM) of every ebb process seen", Header: []string{"PID", "Role", "Command", "Peak RSS (MiB)"}}
	for _, p := range ps {
		t.Rows = append(t.Rows, []string{strconv.Itoa(p.pid), p.role, p.command, fmt.Sprintf("%.1f", harness.MiB(p.hwm))})
	}
	return t
}

// Leftovers returns the processes seen that still run and the ports that
// still accept connections. The case's processes must have been stopped
// first; leftover processes are then killed by PID (they are ebb's, which
// the harness started).
func (m *Monitor) Leftovers() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var left []string
	deadline := time.Now().Add(3 * time.Second)
	for _, p := range m.seen {
		for time.Now().Before(deadline) && alive(p.pid, p.start) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(p.pid, p.start) {
			left = append(left, fmt.Sprintf("process %d (%s, %s) still running", p.pid, p.role, p.command))
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
	for addr := range m.ports {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			left = append(left, "port "+addr+" still accepts connections")
		}
	}
	slices.Sort(left)
	return left
}

func procFile(pid int, name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), name))
}

// vmHWM reads the peak resident set size of pid, in bytes.
func vmHWM(pid int) (int64, error) {
	b, err := procFile(pid, "status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			return n * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM for %d", pid)
}

func statFields(pid int) ([]string, error) {
	b, err := procFile(pid, "stat")
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed stat of %d", pid)
	}
	return strings.Fields(s[i+1:]), nil
}

func startTime(pid int) (uint64, error) {
	f, err := statFields(pid)
	if err != nil || len(f) < 20 {
		return 0, fmt.Errorf("no stat for %d", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func alive(pid int, st uint64) bool {
	f, err := statFields(pid)
	if err != nil || len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	got, err := strconv.ParseUint(f[19], 10, 64)
	return err == nil && got == st
}

func cmdline(pid int) string {
	b, err := procFile(pid, "cmdline")
	if err != nil {
		return ""
	}
	f := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	f[0] = filepath.Base(f[0])
	if len(f) > 3 {
		f = f[:3]
	}
	return strings.Join(f, " ")
}
