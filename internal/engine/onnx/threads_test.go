package onnx

import (
	"fmt"
	"runtime"
	"testing"
)

func TestIntraOpThreadsDefault(t *testing.T) {
	tests := []struct {
		name     string
		n, procs int
		want     int
	}{
		{"explicit wins", 3, 1, 3},
		{"zero follows GOMAXPROCS", 0, 1, 1},
		{"zero follows GOMAXPROCS of several", 0, 4, 4},
		{"negative follows GOMAXPROCS", -2, 2, 2},
		{"never below one", 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := intraOpThreads(tt.n, tt.procs); got != tt.want {
				t.Errorf("intraOpThreads(%d, %d) = %d, want %d", tt.n, tt.procs, got, tt.want)
			}
		})
	}
}

// TestLoadIntraOpThreads checks that a session gets one intra-op thread per
// CPU the process may use (GOMAXPROCS, which taskset and cgroup limits
// lower) unless told otherwise. ONNX Runtime's own default counts the
// machine's cores, so a replica pinned to one CPU got a second thread that
// spun on the CPU the replica's HTTP work needed.
func TestLoadIntraOpThreads(t *testing.T) {
	requireLibrary(t)
	tests := []struct {
		procs, opt, want int
	}{
		{procs: 1, opt: 0, want: 1},
		{procs: 3, opt: 0, want: 3},
		{procs: 1, opt: 2, want: 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d IntraOpThreads=%d", tt.procs, tt.opt), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(tt.procs))
			m, err := Load(mlpModel, Options{IntraOpThreads: tt.opt})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			defer m.Close()
			if got := m.IntraOpThreads(); got != tt.want {
				t.Errorf("IntraOpThreads() = %d, want %d", got, tt.want)
			}
		})
	}
}
