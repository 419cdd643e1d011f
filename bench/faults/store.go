package faults

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
)

// StoreStall freezes the PostgreSQL store for 5 s under load.
type StoreStall struct{}

func (StoreStall) Name() string  { return "store-stall" }
func (StoreStall) Title() string { return "8. The store stalls for 5 s (PostgreSQL)" }

const stall = 5 * time.Second

func (StoreStall) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	res := harness.Result{Summary: "`ebb up --store-dsn` on a throwaway PostgreSQL cluster (internal/store/pgtest) that this case starts; an echo deployment with 2 fixed replicas takes the steady load of case 1, and an admin client creates a deployment every 250 ms. The PostgreSQL server (the postmaster and each of its backends, all started by this case, by PID) gets SIGSTOP, and SIGCONT 5 s later. Inference to the warm deployment should keep working; admin writes should get 503 store/unavailable or wait, then recover."}
	bin, err := pgtest.BinDir()
	if err != nil {
		return res, err
	}
	pg, err := pgtest.StartCluster(bin)
	if err != nil {
		return res, err
	}
	defer pg.Stop()
	pgPID, err := childNamed("postgres")
	if err != nil {
		return res, err
	}
	b, m, rs, err := killSetup(ctx, env, "faults-store-stall", "--store-dsn", pg.DSN("postgres"))
	defer m.Stop()
	if err != nil {
		return res, err
	}
	_ = rs
	l := startKillLoad(ctx, env, inferURL(b, "d"))
	type write struct {
		sent, done time.Time
		code       int
		body       string
	}
	var writes []write
	wdone := make(chan struct{})
	wstop := make(chan struct{})
	go func() {
		defer close(wdone)
		for i := 0; ; i++ {
			select {
			case <-wstop:
				return
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			body := fmt.Sprintf(`{"name":"w%d","spec":{"engine":"echo","scaling":{"minReplicas":0,"maxReplicas":1}}}`, i)
			t := time.Now()
			code, out, err := b.Do(ctx, http.MethodPost, "/v1/deployments", []byte(body))
			w := write{sent: t, done: time.Now(), code: code, body: fmt.Sprintf("%.200s", out)}
			if err != nil {
				w.body = err.Error()
			}
			writes = append(writes, w)
		}
	}()
	time.Sleep(2 * time.Second)
	tStop := time.Now()
	env.Logf("SIGSTOP postgres %d and its descendants", pgPID)
	// PostgreSQL's backends call setsid(): signal the postmaster and each
	// of its descendants (all started by this case) by PID.
	frozen := treeOf(pgPID)
	for _, pid := range frozen {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	defer func() {
		for _, pid := range frozen {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	stopped := states(frozen)
	time.Sleep(stall - 500*time.Millisecond)
	for _, pid := range frozen {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	tCont := time.Now()
	env.Logf("SIGCONT postgres %d and its descendants", pgPID)
	time.Sleep(harness.Pick(env, 8*time.Second, 5*time.Second))
	close(wstop)
	<-wdone
	l.Stop()

	during := l.Stats(tStop, tCont)
	all := l.Stats(time.Time{}, time.Time{})
	codes := map[string]int{}
	var longest time.Duration
	var firstOK time.Time
	example := ""
	for _, w := range writes {
		if w.sent.Before(tStop) {
			continue
		}
		codes["HTTP "+strconv.Itoa(w.code)]++
		longest = max(longest, w.done.Sub(w.sent))
		if w.code == http.StatusCreated && !w.sent.Before(tCont) && firstOK.IsZero() {
			firstOK = w.done
		}
		if w.code != http.StatusCreated && example == "" {
			example = w.body
		}
	}
	var parts []string
	for k, v := range codes {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, v))
	}
	recovered := !firstOK.IsZero()
	rec := 0.0
	if recovered {
		rec = secs(firstOK.Sub(tCont))
	}
	res.Tables = append(res.Tables, loadTable("Inference to the warm deployment",
		[2]any{"before the stall", l.Stats(time.Time{}, tStop)}, [2]any{"during the stall", during}, [2]any{"after SIGCONT", l.Stats(tCont, time.Time{})}))
	res.Goals = append(res.Goals,
		loadGoal(all, "to the warm deployment"),
		goal("admin writes recover", "a write sent after SIGCONT succeeds", rec, "s after SIGCONT", recovered,
			fmt.Sprintf("writes sent from the stall on: %s; the longest took %.1f s; first non-201: %s", strings.Join(parts, ", "), longest.Seconds(), example)),
	)
	res.Notes = append(res.Notes, "PostgreSQL processes during the stall (PID:state, T = stopped): "+stopped)
	res.Figures = map[string]float64{"failed": float64(all.Failed), "adminRecoverySeconds": rec, "adminLongestSeconds": longest.Seconds()}
	rssFigures(&res, m)
	g, _ := leftoverGoal(env, m)
	res.Goals = append(res.Goals, g)
	return res, nil
}

// childNamed returns the PID of this process's child whose command is
// name (a server this process started).
func childNamed(name string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	me := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil || len(f) < 2 || f[1] != strconv.Itoa(me) {
			continue
		}
		if b, _ := procFile(pid, "comm"); strings.TrimSpace(string(b)) == name {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no child process named %s", name)
}

// treeOf returns root and its live descendants, through /proc/*/stat.
func treeOf(root int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil || len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// states lists the processes with their state letter.
func states(pids []int) string {
	var out []string
	for _, pid := range pids {
		if f, err := statFields(pid); err == nil {
			out = append(out, fmt.Sprintf("%d:%s", pid, f[0]))
		}
	}
	return strings.Join(out, " ")
}
