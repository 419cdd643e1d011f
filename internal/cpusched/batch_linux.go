package cpusched

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

func batch() error {
	// The runtime may start a thread while the threads are being moved,
	// from one not moved yet: scan again until a scan moves none.
	for range 10 {
		moved, err := moveAll()
		if err != nil || moved == 0 {
			return err
		}
	}
	return nil
}

// moveAll moves the threads not under SCHED_BATCH yet and returns how many
// it moved.
func moveAll() (int, error) {
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("list this process's threads: %w", err)
	}
	moved := 0
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // the thread exited
		}
		if attr.Policy == unix.SCHED_BATCH {
			continue
		}
		want := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH, Nice: attr.Nice}
		if err := unix.SchedSetAttr(tid, &want, 0); err != nil {
			if _, gone := unix.SchedGetAttr(tid, 0); gone != nil {
				continue
			}
			return moved, fmt.Errorf("set SCHED_BATCH on thread %d: %w", tid, err)
		}
		moved++
	}
	return moved, nil
}
