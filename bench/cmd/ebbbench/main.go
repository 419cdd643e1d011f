// Command ebbbench runs ebb's benchmarks against its peers and writes
// bench/RESULTS.md and bench/results.json. Run it from the repository with
// `make bench` (or `make bench QUICK=1` for a short run).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/bench/scenarios"
)

// pinnedEnv marks the re-executed, pinned harness process; nprocEnv passes
// it the CPU count seen before pinning.
const (
	pinnedEnv = "EBBBENCH_PINNED"
	nprocEnv  = "EBBBENCH_NPROC"
)

// nproc is the number of CPUs this run may use, as seen before pinning.
func nproc() int {
	if n, err := strconv.Atoi(os.Getenv(nprocEnv)); err == nil && n > 0 {
		return n
	}
	return runtime.NumCPU()
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ebbbench:", err)
		os.Exit(1)
	}
}

// registry lists the scenarios in the order they run. Later issues add
// theirs here.
func registry() (*harness.Registry, error) {
	r := &harness.Registry{}
	for _, s := range []harness.Scenario{
		scenarios.Proxy{},
		scenarios.Model{},
		scenarios.ColdStart{},
		scenarios.Routing{},
		scenarios.Batching{},
		scenarios.RegistryScale{},
		scenarios.PythonEngine{},
		scenarios.Memory{},
		scenarios.Binary{},
		scenarios.ClusterE2E{},
		scenarios.Ring{},
		scenarios.Scatter{},
		scenarios.Fairness{},
		scenarios.Async{},
		scenarios.Pools{},
		scenarios.Jobs{},
	} {
		if err := r.Register(s); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func run() error {
	reg, err := registry()
	if err != nil {
		return err
	}
	loadDef, serverDef := defaultCPUs(runtime.NumCPU())
	quick := flag.Bool("quick", false, "short run: fewer rounds, shorter load and smaller counts")
	only := flag.String("run", "all", "comma-separated scenarios to run: "+strings.Join(reg.Names(), ", "))
	out := flag.String("out", "", "directory for RESULTS.md and results.json (default: bench/ in the repository)")
	loadCPUs := flag.String("load-cpus", loadDef, "taskset CPU list for the load generator and this harness (empty: no pinning)")
	serverCPUs := flag.String("server-cpus", serverDef, "taskset CPU list for every server: ebb, its replicas and the peers (empty: no pinning)")
	python := flag.String("python", "/usr/bin/python3", "Python with Debian's xgboost, flask and fastapi")
	noInstall := flag.Bool("no-install", false, "do not apt-get install missing tools")
	keep := flag.Bool("keep", false, "keep the work directory (logs, configs) instead of removing it")
	flag.Parse()

	selected, err := reg.Select(*only)
	if err != nil {
		return err
	}
	root, outDir, err := harness.Locate(*out)
	if err != nil {
		return err
	}
	*out = outDir
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if !*noInstall && os.Getenv(pinnedEnv) == "" {
		if err := harness.EnsureTools(ctx, os.Stdout, *python); err != nil {
			return err
		}
	}
	// Pin this harness (its own HTTP clients) to the load CPUs by running
	// again under taskset; servers are pinned to theirs when started.
	if *loadCPUs != "" && os.Getenv(pinnedEnv) == "" {
		return reexecPinned(*loadCPUs, *serverCPUs)
	}

	started := time.Now()
	work, err := os.MkdirTemp("", "ebbbench-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Println("work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	env := &harness.Env{
		Root: root, Work: work, Ebb: filepath.Join(work, "ebb"), Quick: *quick,
		LoadCPUs: *loadCPUs, ServerCPUs: *serverCPUs, LoadThreads: max(1, cpuCount(*loadCPUs)),
		Python: *python, Out: os.Stdout,
	}
	env.Logf("building ebb")
	if err := harness.BuildEbb(ctx, root, env.Ebb, os.Stdout); err != nil {
		return err
	}

	cmd := "make bench"
	if *quick {
		cmd = "make bench QUICK=1"
	}
	if os.Getenv("EBBBENCH_COMMAND") != "" {
		cmd = os.Getenv("EBBBENCH_COMMAND")
	}
	report := &harness.Report{
		GeneratedAt: started.UTC(),
		Command:     cmd,
		Quick:       *quick,
		Machine:     harness.DescribeMachine(nproc()),
		Versions:    harness.Versions(root, *python),
		Load:        loadText(env),
	}
	failed := 0
	for _, s := range selected {
		if ctx.Err() != nil {
			break
		}
		busy := harness.WaitQuiet(ctx, 30, harness.Pick(env, 60*time.Second, 20*time.Second))
		load := harness.LoadAvg()
		env.Logf("=== %s (machine %.0f%% busy, load average %.2f)", s.Title(), busy, load)
		t0, cpu0 := time.Now(), harness.SampleCPU()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		res, err := s.Run(sctx, env)
		cancel()
		o := harness.Outcome{Name: s.Name(), Title: s.Title(), Result: res, BusyBefore: busy, LoadBefore: load}
		if err != nil {
			failed++
			o.Error = err.Error()
			env.Logf("scenario %s failed: %v", s.Name(), err)
			for i := range o.Goals {
				o.Goals[i].Met = false
			}
		}
		o.Leftovers = env.StopAll()
		o.Notes = append(o.Notes, env.EbbLogFindings()...)
		o.Seconds = time.Since(t0).Seconds()
		o.LoadAfter = harness.LoadAvg()
		o.StolenPercent = cpu0.StolenSince()
		for _, g := range o.Goals {
			v := "NOT MET"
			if g.Met {
				v = "MET"
			}
			env.Logf("goal %-32s %-8s %s", g.Name, v, g.Detail)
		}
		report.Scenarios = append(report.Scenarios, o)
	}
	env.StopAll()
	report.Seconds = time.Since(started).Seconds()
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; nothing written: %w", ctx.Err())
	}
	md, js, err := harness.Write(report, *out, "RESULTS.md", "results.json")
	if err != nil {
		return err
	}
	env.Logf("wrote %s and %s in %.0f s", md, js, report.Seconds)
	if failed > 0 {
		return fmt.Errorf("%d scenario(s) failed; see RESULTS.md", failed)
	}
	return nil
}

// defaultCPUs gives the load generator a quarter of the CPUs (at least
// one) and the servers the rest; with one CPU nothing is pinned.
func defaultCPUs(n int) (load, server string) {
	if n < 2 {
		return "", ""
	}
	l := max(1, n/4)
	load = cpuRange(0, l-1)
	server = cpuRange(l, n-1)
	return load, server
}

func cpuRange(a, b int) string {
	if a == b {
		return fmt.Sprint(a)
	}
	return fmt.Sprintf("%d-%d", a, b)
}

// cpuCount counts the CPUs in a taskset list such as "0", "1-3" or "0,2".
func cpuCount(list string) int {
	n := 0
	for _, part := range strings.Split(list, ",") {
		var a, b int
		if _, err := fmt.Sscanf(part, "%d-%d", &a, &b); err == nil {
			n += b - a + 1
		} else if _, err := fmt.Sscanf(part, "%d", &a); err == nil {
			n++
		}
	}
	return n
}

func loadText(env *harness.Env) string {
	pin := "nothing was pinned (one CPU)"
	if env.LoadCPUs != "" {
		pin = fmt.Sprintf("the load generator (wrk, %d thread(s)) and this harness's own Go HTTP clients ran pinned with `taskset -c %s`; every server (ebb up and its replica processes, nginx, HAProxy, gunicorn, uvicorn) ran pinned with `taskset -c %s`",
			env.LoadThreads, env.LoadCPUs, env.ServerCPUs)
	}
	return "Throughput and latency runs use wrk (closed loop, fixed connections, bounded by time, POST via a Lua script); cold starts and the burst use a Go client in the harness. " +
		"Each run is bounded in time and each scenario in requests. Pinning: " + pin + ". The machine may be shared with other work; figures from alternating rounds are medians."
}

// reexecPinned runs this program again under taskset with the same
// arguments and the CPU lists made explicit (the pinned process sees only
// the load CPUs, so its defaults would differ).
func reexecPinned(cpus, serverCPUs string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return err
	}
	argv := append([]string{"taskset", "-c", cpus, exe}, os.Args[1:]...)
	argv = append(argv, "-load-cpus="+cpus, "-server-cpus="+serverCPUs)
	return syscall.Exec(taskset, argv, append(os.Environ(), pinnedEnv+"=1", nprocEnv+"="+strconv.Itoa(runtime.NumCPU())))
}
