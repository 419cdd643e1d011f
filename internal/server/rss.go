package server

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// residentBytes returns the resident set of this process and of every
// process under it (an engine's workers: the python engine runs the
// models of a pool in worker processes), read from /proc; 0 where /proc
// cannot be read (not Linux).
func residentBytes() int64 { return treeResident(os.Getpid()) }

// treeResident returns the resident set of pid and its descendants.
func treeResident(pid int) int64 {
	var total int64
	seen := map[int]bool{}
	next := []int{pid}
	for len(next) > 0 {
		p := next[len(next)-1]
		next = next[:len(next)-1]
		if seen[p] {
			continue
		}
		seen[p] = true
		total += processResident(p)
		next = append(next, children(p)...)
	}
	return total
}

// processResident returns pid's resident set size, from its statm; 0 when
// it cannot be read (the process ended).
func processResident(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "statm"))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// children returns the child processes of pid, as its threads list them
// (/proc/PID/task/TID/children: a child belongs to the thread that
// started it).
func children(pid int) []int {
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "children"))
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}
