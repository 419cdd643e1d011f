package harness

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuStat is the aggregate line of /proc/stat, in jiffies: busy is every
// CPU's time but idle and iowait, steal the time the hypervisor ran other
// guests on them, total all of it.
type cpuStat struct{ busy, steal, total uint64 }

// cpuTimes reads the aggregate CPU times from /proc/stat.
func cpuTimes() (cpuStat, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}, err
	}
	return parseCPUStat(string(b))
}

// parseCPUStat reads the aggregate "cpu" line of /proc/stat's text.
func parseCPUStat(stat string) (cpuStat, error) {
	var st cpuStat
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return st, errors.New("unexpected /proc/stat")
	}
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return st, err
		}
		st.total += v
		if i != 3 && i != 4 { // idle, iowait
			st.busy += v
		}
		if i == 7 {
			st.steal = v
		}
	}
	return st, nil
}

// CPUSample is a reading of the machine's CPU time counters, to say later
// how much of the CPUs' time since then the hypervisor gave to others.
type CPUSample struct {
	st cpuStat
	ok bool
}

// SampleCPU reads the counters now.
func SampleCPU() CPUSample {
	st, err := cpuTimes()
	return CPUSample{st: st, ok: err == nil}
}

// StolenSince returns the share (0..100) of all CPUs' time since s that the
// hypervisor ran other guests on them ("steal" in /proc/stat): time the
// servers under test wanted a CPU and did not get it, which no load
// average shows. 0 when unknown.
func (s CPUSample) StolenSince() float64 {
	now := SampleCPU()
	if !s.ok || !now.ok || now.st.total <= s.st.total {
		return 0
	}
	return float64(now.st.steal-s.st.steal) / float64(now.st.total-s.st.total) * 100
}

// MachineBusy returns the share (0..100) of all CPUs that were busy over
// window, whoever used them.
func MachineBusy(ctx context.Context, window time.Duration) (float64, error) {
	s0, err := cpuTimes()
	if err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(window):
	}
	s1, err := cpuTimes()
	if err != nil {
		return 0, err
	}
	if s1.total == s0.total {
		return 0, nil
	}
	return float64(s1.busy-s0.busy) / float64(s1.total-s0.total) * 100, nil
}

// LoadAvg returns the one-minute load average.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// WaitQuiet waits, up to maxWait, for a second in which less than
// threshold percent of the machine's CPUs were busy, so that a scenario
// does not start in the middle of someone else's burst of work. It returns
// the last busy share it saw.
func WaitQuiet(ctx context.Context, threshold float64, maxWait time.Duration) float64 {
	deadline := time.Now().Add(maxWait)
	busy := 0.0
	for {
		b, err := MachineBusy(ctx, time.Second)
		if err != nil {
			return busy
		}
		busy = b
		if busy < threshold || time.Now().After(deadline) {
			return busy
		}
	}
}
