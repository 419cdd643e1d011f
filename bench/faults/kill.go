package faults

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
)

// loadShape is the steady load of the kill cases: 4 clients, each at most
// one request every 20 ms (≤ 200 requests/s), bounded in requests and time.
func startKillLoad(ctx context.Context, env *harness.Env, url string) *Load {
	return StartLoad(ctx, url, inferBody, 4, 20*time.Millisecond, harness.Pick(env, 20000, 6000), harness.Pick(env, 60*time.Second, 25*time.Second))
}

// killSetup starts ebb with a monitor and an echo deployment of 2 fixed
// replicas under load.
func killSetup(ctx context.Context, env *harness.Env, name string, flags ...string) (*harness.Ebb, *Monitor, []replica, error) {
	m := NewMonitor()
	b, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: name, Flags: flags})
	if err != nil {
		return nil, m, nil, err
	}
	m.WatchEbb(b)
	if err := b.Create(ctx, "d", echoSpec(2, 2)); err != nil {
		return b, m, nil, err
	}
	rs, _, err := waitReplicas(ctx, m, b, "d", 2, 60*time.Second)
	return b, m, rs, err
}

// waitReplaced polls until the deployment has n ready replicas none of
// which is one of gone.
func waitReplaced(ctx context.Context, m *Monitor, b *harness.Ebb, name string, n int, gone []int, timeout time.Duration) ([]replica, time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		rs, err := readyReplicas(ctx, b, name)
		if err == nil && len(rs) >= n && !slices.ContainsFunc(rs, func(r replica) bool { return slices.Contains(gone, r.PID) }) {
			for _, r := range rs {
				m.WatchPID(r.PID, hostPort(r.Endpoint))
			}
			return rs, time.Now(), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return rs, time.Time{}, fmt.Errorf("deployment %s: no %d fresh ready replicas within %s (last error: %v)", name, n, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pids(rs []replica) []int {
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = r.PID
	}
	slices.Sort(out)
	return out
}

func loadTable(caption string, rows ...[2]any) harness.Table {
	t := harness.Table{Caption: caption, Header: []string{"Window", "Requests", "200", "Failed", "Failures by status", "Longest answer (ms)"}}
	for _, r := range rows {
		s := r[1].(LoadStats)
		t.Rows = append(t.Rows, []string{r[0].(string), fmt.Sprint(s.OK + s.Failed), fmt.Sprint(s.OK), fmt.Sprint(s.Failed), s.codes(), fmt.Sprintf("%.0f", harness.Ms(s.MaxLatency))})
	}
	return t
}

// KillOne SIGKILLs one of two replicas under load.
type KillOne struct{}

func (KillOne) Name() string  { return "kill-one" }
func (KillOne) Title() string { return "1. SIGKILL one replica (of 2) under load" }

func (KillOne) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	res := harness.Result{Summary: "An echo deployment with 2 fixed replicas takes a steady load (4 loopback clients, each ≤ 1 request per 20 ms); after a warm-up one replica process is SIGKILLed by its PID (from /ebb/v1/replica). The load runs on until a fresh replica is ready and 2 s more. Recovery is the time from the kill until the deployment has 2 ready replicas again."}
	b, m, rs, err := killSetup(ctx, env, "faults-kill-one")
	defer m.Stop()
	if err != nil {
		return res, err
	}
	l := startKillLoad(ctx, env, inferURL(b, "d"))
	time.Sleep(harness.Pick(env, 3*time.Second, 1500*time.Millisecond))
	victim := rs[0].PID
	tKill := time.Now()
	env.Logf("SIGKILL replica pid %d", victim)
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		l.Stop()
		return res, fmt.Errorf("kill replica %d: %w", victim, err)
	}
	_, tBack, werr := waitReplaced(ctx, m, b, "d", 2, []int{victim}, 30*time.Second)
	time.Sleep(2 * time.Second)
	l.Stop()
	all := l.Stats(time.Time{}, time.Time{})
	before := l.Stats(time.Time{}, tKill)
	after := l.Stats(tKill, time.Time{})
	recovery := 0.0
	if werr == nil {
		recovery = secs(tBack.Sub(tKill))
	}
	res.Figures = map[string]float64{"requests": float64(all.OK + all.Failed), "failed": float64(all.Failed), "recoverySeconds": recovery}
	res.Tables = append(res.Tables, loadTable("Requests by when they were sent", [2]any{"before the kill", before}, [2]any{"from the kill on", after}))
	detail := fmt.Sprintf("%d of %d requests failed (%s)", all.Failed, all.OK+all.Failed, all.codes())
	if all.FirstError != "" {
		detail += "; first: " + all.FirstError
	}
	res.Goals = append(res.Goals,
		goal("failed requests", "0 (another replica exists)", float64(all.Failed), "requests", all.Failed == 0 && all.OK > 0, detail),
		goal("replica replaced", "2 ready replicas again within 30 s", recovery, "s", werr == nil, recoveryDetail(recovery, werr)))
	rssFigures(&res, m)
	g, _ := leftoverGoal(env, m)
	res.Goals = append(res.Goals, g)
	return res, nil
}

func recoveryDetail(s float64, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%.2f s from the kill", s)
}

// KillAll SIGKILLs every replica under load.
type KillAll struct{}

func (KillAll) Name() string  { return "kill-all" }
func (KillAll) Title() string { return "2. SIGKILL all replicas under load" }

func (KillAll) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	res := harness.Result{Summary: "The same deployment and load as case 1; both replica processes are SIGKILLed at once. Requests sent meanwhile should be held until a replica is back (--hold-timeout, 1 min by default) rather than fail. Recovery is the time from the kill to the first 200 answer to a request sent after it, and to 2 ready replicas."}
	b, m, rs, err := killSetup(ctx, env, "faults-kill-all")
	defer m.Stop()
	if err != nil {
		return res, err
	}
	l := startKillLoad(ctx, env, inferURL(b, "d"))
	time.Sleep(harness.Pick(env, 3*time.Second, 1500*time.Millisecond))
	victims := pids(rs)
	tKill := time.Now()
	env.Logf("SIGKILL replica pids %v", victims)
	for _, pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_, tBack, werr := waitReplaced(ctx, m, b, "d", 2, victims, 45*time.Second)
	time.Sleep(2 * time.Second)
	l.Stop()
	all := l.Stats(time.Time{}, time.Time{})
	after := l.Stats(tKill, time.Time{})
	firstOK := l.FirstOKAfter(tKill)
	served, ready := 0.0, 0.0
	if !firstOK.IsZero() {
		served = secs(firstOK.Sub(tKill))
	}
	if werr == nil {
		ready = secs(tBack.Sub(tKill))
	}
	res.Figures = map[string]float64{"requests": float64(all.OK + all.Failed), "failed": float64(all.Failed), "firstAnswerSeconds": served, "readySeconds": ready, "longestAnswerMs": harness.Ms(after.MaxLatency)}
	res.Tables = append(res.Tables, loadTable("Requests by when they were sent", [2]any{"before the kill", l.Stats(time.Time{}, tKill)}, [2]any{"from the kill on", after}))
	detail := fmt.Sprintf("%d of %d requests failed (%s); the longest answer after the kill took %.0f ms", all.Failed, all.OK+all.Failed, all.codes(), harness.Ms(after.MaxLatency))
	if all.FirstError != "" {
		detail += "; first: " + all.FirstError
	}
	res.Goals = append(res.Goals,
		goal("failed requests", "0 (held while replicas restart)", float64(all.Failed), "requests", all.Failed == 0 && all.OK > 0, detail),
		goal("answered again", "a 200 after the kill", served, "s", !firstOK.IsZero(), fmt.Sprintf("first 200 %.2f s after the kill; 2 ready replicas after %.2f s (%v)", served, ready, werr)))
	rssFigures(&res, m)
	g, _ := leftoverGoal(env, m)
	res.Goals = append(res.Goals, g)
	return res, nil
}

// KillEbb SIGKILLs `ebb up` under load and starts it again on the same
// address and data directory.
type KillEbb struct{}

func (KillEbb) Name() string  { return "kill-ebb" }
func (KillEbb) Title() string { return "3. SIGKILL ebb up and restart it" }

func (KillEbb) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	res := harness.Result{Summary: "The same deployment and load as case 1; `ebb up` itself is SIGKILLed by its PID (its replicas keep running) and started again at once on the same address and data directory. Requests fail while nothing listens; after the restart ebb should reattach to the same replica processes (same PIDs) and answer every request."}
	b, m, rs, err := killSetup(ctx, env, "faults-kill-ebb")
	defer m.Stop()
	if err != nil {
		return res, err
	}
	l := startKillLoad(ctx, env, inferURL(b, "d"))
	time.Sleep(harness.Pick(env, 3*time.Second, 1500*time.Millisecond))
	before := pids(rs)
	tKill := time.Now()
	env.Logf("SIGKILL ebb up pid %d", b.Proc.PID())
	_ = syscall.Kill(b.Proc.PID(), syscall.SIGKILL)
	<-b.Proc.Done()
	b2, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: "faults-kill-ebb-restarted", Addr: b.Addr, DataDir: b.DataDir})
	if err != nil {
		l.Stop()
		return res, fmt.Errorf("restart ebb up: %w", err)
	}
	tUp := time.Now()
	m.WatchEbb(b2)
	rs2, tBack, werr := waitReplicas(ctx, m, b2, "d", 2, 45*time.Second)
	time.Sleep(harness.Pick(env, 3*time.Second, 2*time.Second))
	l.Stop()
	after := pids(rs2)
	down := l.Stats(tKill, tUp)
	up := l.Stats(tUp, time.Time{})
	all := l.Stats(time.Time{}, time.Time{})
	reattached := werr == nil && slices.Equal(before, after)
	res.Figures = map[string]float64{
		"requests": float64(all.OK + all.Failed), "failed": float64(all.Failed),
		"failedWhileDown": float64(down.Failed), "failedAfterRestart": float64(up.Failed),
		"downSeconds": secs(tUp.Sub(tKill)),
	}
	if werr == nil {
		res.Figures["replicasReadySeconds"] = secs(tBack.Sub(tKill))
	}
	res.Tables = append(res.Tables, loadTable("Requests by when they were sent",
		[2]any{"before the kill", l.Stats(time.Time{}, tKill)},
		[2]any{fmt.Sprintf("ebb down (%.2f s, kill to ready again)", secs(tUp.Sub(tKill))), down},
		[2]any{"after the restart", up}))
	upDetail := fmt.Sprintf("%d of %d requests sent after the restart failed (%s)", up.Failed, up.OK+up.Failed, up.codes())
	if up.FirstError != "" {
		upDetail += "; first: " + up.FirstError
	}
	res.Goals = append(res.Goals,
		goal("failures only while ebb is down", "0 failed after the restart", float64(up.Failed), "requests", up.Failed == 0 && up.OK > 0, upDetail),
		goal("replicas reattached", "same replica PIDs before and after", float64(len(after)), "replicas", reattached,
			fmt.Sprintf("before %v, after %v (%v)", before, after, werr)))
	res.Notes = append(res.Notes, fmt.Sprintf("While ebb was down (%.2f s from the SIGKILL to the restarted ebb answering ready) %d of %d requests failed (%s); these are expected: nothing listened.",
		secs(tUp.Sub(tKill)), down.Failed, down.OK+down.Failed, down.codes()))
	rssFigures(&res, m)
	g, _ := leftoverGoal(env, m)
	res.Goals = append(res.Goals, g)
	return res, nil
}
