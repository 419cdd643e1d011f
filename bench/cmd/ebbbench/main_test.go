package main

import "testing"

func TestDefaultCPUs(t *testing.T) {
	tests := []struct {
		n                  int
		wantLoad, wantServ string
		wantLoadCount      int
	}{
		{n: 1},
		{n: 2, wantLoad: "0", wantServ: "1", wantLoadCount: 1},
		{n: 4, wantLoad: "0", wantServ: "1-3", wantLoadCount: 1},
		{n: 16, wantLoad: "0-3", wantServ: "4-15", wantLoadCount: 4},
	}
	for _, tt := range tests {
		load, serv := defaultCPUs(tt.n)
		if load != tt.wantLoad || serv != tt.wantServ {
			t.Errorf("defaultCPUs(%d) = %q, %q; want %q, %q", tt.n, load, serv, tt.wantLoad, tt.wantServ)
		}
		if got := cpuCount(load); got != tt.wantLoadCount {
			t.Errorf("cpuCount(%q) = %d, want %d", load, got, tt.wantLoadCount)
		}
	}
}
