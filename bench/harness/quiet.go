package harness

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuTimes reads the aggregate busy and total jiffies from /proc/stat.
func cpuTimes() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errors.New("unexpected /proc/stat")
	}
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, err
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// MachineBusy returns the share (0..100) of all CPUs that were busy over
// window, whoever used them.
func MachineBusy(ctx context.Context, window time.Duration) (float64, error) {
	b0, t0, err := cpuTimes()
	if err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(window):
	}
	b1, t1, err := cpuTimes()
	if err != nil {
		return 0, err
	}
	if t1 == t0 {
		return 0, nil
	}
	return float64(b1-b0) / float64(t1-t0) * 100, nil
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
