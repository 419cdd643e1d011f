package cpusched_test

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ebb-ml/ebb/internal/cpusched"
	"golang.org/x/sys/unix"
)

// TestBatch runs Batch in a child process (this test binary again), which
// then starts threads and a grandchild process and reports every policy.
func TestBatch(t *testing.T) {
	if os.Getenv("CPUSCHED_CHILD") == "1" {
		child()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBatch$")
	cmd.Env = append(os.Environ(), "CPUSCHED_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var threads, procs int
	for _, l := range strings.Split(string(out), "\n") {
		kind, policy, ok := strings.Cut(l, " policy ")
		if !ok {
			continue
		}
		if policy != strconv.Itoa(unix.SCHED_BATCH) {
			t.Errorf("%s runs under policy %s; want SCHED_BATCH (%d)", kind, policy, unix.SCHED_BATCH)
		}
		if strings.HasPrefix(kind, "thread") {
			threads++
		} else {
			procs++
		}
	}
	if threads < 5 || procs != 1 {
		t.Fatalf("the child reported %d threads and %d processes; want at least 5 and 1:\n%s", threads, procs, out)
	}
	// This process was not touched.
	if a, err := unix.SchedGetAttr(0, 0); err != nil || a.Policy != unix.SCHED_NORMAL {
		t.Fatalf("the test process's policy: %+v, %v; want SCHED_NORMAL", a, err)
	}
}

// child calls Batch, starts more threads (goroutines locked to new OS
// threads) and a grandchild, and prints the policy of each.
func child() {
	if err := cpusched.Batch(); err != nil {
		println("Batch:", err.Error())
		os.Exit(1)
	}
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			runtime.LockOSThread() // held: the thread ends with the goroutine
			wg.Done()
			<-release
		}()
	}
	wg.Wait()
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		println(err.Error())
		os.Exit(1)
	}
	for _, e := range entries {
		tid, _ := strconv.Atoi(e.Name())
		a, err := unix.SchedGetAttr(tid, 0)
		if err == nil {
			println("thread", tid, "policy", a.Policy)
		}
	}
	close(release)
	// A process started now reports its policy in /proc/self/sched:
	// SCHED_BATCH is inherited across fork and exec.
	out, err := exec.Command("sh", "-c", "cat /proc/self/sched").Output()
	if err != nil {
		println(err.Error())
		os.Exit(1)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if name, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(name) == "policy" {
			println("process policy", strings.TrimSpace(v))
		}
	}
}
