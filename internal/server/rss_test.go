package server

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// TestTreeResident: a process's resident set counts those of the
// processes under it, as a pool replica's counts its engine's workers.
func TestTreeResident(t *testing.T) {
	if processResident(1) == 0 {
		t.Skip("no /proc here")
	}
	// sh, and a sleep under it (not exec'd in its place: a command
	// follows).
	cmd := exec.Command("sh", "-c", "sleep 60; exit 0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sh := cmd.Process.Pid
	var kids []int
	for deadline := time.Now().Add(5 * time.Second); len(kids) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		kids = children(sh)
	}
	if len(kids) != 1 {
		t.Fatalf("children of sh = %v, want its sleep", kids)
	}
	if !slices.Contains(children(os.Getpid()), sh) {
		t.Errorf("children of this process do not list sh (%d)", sh)
	}
	own, sleep := processResident(sh), processResident(kids[0])
	if own == 0 || sleep == 0 {
		t.Fatalf("resident sets of sh and sleep = %d and %d, want both read", own, sleep)
	}
	if got := treeResident(sh); got != own+sleep {
		t.Errorf("treeResident(sh) = %d, want sh's %d + sleep's %d", got, own, sleep)
	}
	if got := treeResident(kids[0]); got != sleep {
		t.Errorf("treeResident(sleep) = %d, want its own %d", got, sleep)
	}
	if got := residentBytes(); got < processResident(os.Getpid())+own+sleep-(1<<20) {
		t.Errorf("residentBytes() = %d, want at least this process's and both children's (%d + %d + %d)", got, processResident(os.Getpid()), own, sleep)
	}
}
