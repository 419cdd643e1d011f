package scenarios

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/serving"
)

// Memory measures what ebb costs in memory at rest: `ebb up` idle, one
// idle replica of the echo and of the trees engine, and many warm
// deployments of the diabetes model in one `ebb up`, all answering. The
// figures are RSS, as the goals state them (a process's shared pages
// count in each process), with PSS beside them.
type Memory struct{}

// Name implements harness.Scenario.
func (Memory) Name() string { return "memory" }

// Title implements harness.Scenario.
func (Memory) Title() string { return "8. Memory footprint" }

// memoryFleet is the number of warm deployments the goal names.
const memoryFleet = 100

// settle is how long a process is left idle before it is measured.
const settle = 2 * time.Second

// Run implements harness.Scenario.
func (Memory) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	var res harness.Result
	modelPath, body, err := diabetesModel(env)
	if err != nil {
		return res, err
	}
	fleet := harness.Pick(env, memoryFleet, 20)
	ebb, err := env.StartEbbWith(ctx, harness.EbbOptions{Name: "ebb-memory",
		Flags: []string{"--max-replicas-total", fmt.Sprint(fleet + 8), "--grpc-addr", ""}})
	if err != nil {
		return res, err
	}
	time.Sleep(settle)
	upIdle := rootMemory(ebb)

	// One idle replica of each engine, alone in the tree.
	echo, err := idleReplica(ctx, ebb, "mem-echo", harness.DeploymentSpec("echo", "", 1, 1, time.Hour))
	if err != nil {
		return res, err
	}
	trees, err := idleReplica(ctx, ebb, "mem-trees", harness.DeploymentSpec("trees", modelPath, 1, 1, time.Hour))
	if err != nil {
		return res, err
	}

	// The fleet: warm deployments of the diabetes model, one replica each.
	for i := range fleet {
		if err := ebb.Create(ctx, fmt.Sprintf("fleet-%d", i), harness.DeploymentSpec("trees", modelPath, 1, 1, time.Hour)); err != nil {
			return res, err
		}
	}
	for i := range fleet {
		if _, _, err := ebb.WaitReady(ctx, fmt.Sprintf("fleet-%d", i), 1, 3*time.Minute); err != nil {
			return res, err
		}
	}
	c := &http.Client{Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	answered := 0
	var failures []string
	for i := range fleet {
		code, out, _, err := harness.Post(ctx, c, fmt.Sprintf("%s/v2/models/fleet-%d/infer", ebb.URL, i), body)
		if err == nil && code == http.StatusOK {
			answered++
		} else if len(failures) < 3 {
			failures = append(failures, fmt.Sprintf("fleet-%d: HTTP %d %v %.200s", i, code, err, out))
		}
	}
	time.Sleep(settle)
	total := ebb.Proc.TreeMemory()
	if ebb.Proc.Exited() {
		return res, fmt.Errorf("ebb exited during the scenario; log tail:\n%s", ebb.Proc.LogTail(2000))
	}

	// The goal is for 100 deployments; a quick run with fewer scales it.
	fleetGoal := 2.5 * 1024 * float64(fleet) / memoryFleet
	totalMiB := harness.MiB(total.RSSBytes)
	res.Figures = map[string]float64{
		"up.idleRSSMiB":     harness.MiB(upIdle.RSSBytes),
		"up.idlePSSMiB":     harness.MiB(upIdle.PSSBytes),
		"echo.idleRSSMiB":   harness.MiB(echo.RSSBytes),
		"echo.idlePSSMiB":   harness.MiB(echo.PSSBytes),
		"trees.idleRSSMiB":  harness.MiB(trees.RSSBytes),
		"trees.idlePSSMiB":  harness.MiB(trees.PSSBytes),
		"fleet.deployments": float64(fleet),
		"fleet.answered":    float64(answered),
		"fleet.processes":   float64(total.Processes),
		"fleet.rssMiB":      totalMiB,
		"fleet.pssMiB":      harness.MiB(total.PSSBytes),
	}
	mib := func(m harness.ProcMemory) (string, string) {
		return harness.F(harness.MiB(m.RSSBytes)), harness.F(harness.MiB(m.PSSBytes))
	}
	upR, upP := mib(upIdle)
	echoR, echoP := mib(echo)
	treesR, treesP := mib(trees)
	res.Tables = append(res.Tables, harness.Table{
		Caption: fmt.Sprintf("Memory in MiB, each process idle for %s before it is read (smaps_rollup):", settle),
		Header:  []string{"What", "processes", "RSS", "PSS"},
		Rows: [][]string{
			{"`ebb up`, idle, no deployments", "1", upR, upP},
			{"one idle `echo` replica", "1", echoR, echoP},
			{"one idle `trees` replica (diabetes)", "1", treesR, treesP},
			{fmt.Sprintf("`ebb up` with %d warm diabetes deployments (+ the two above), all answered", fleet), fmt.Sprint(total.Processes),
				harness.F(totalMiB), harness.F(harness.MiB(total.PSSBytes))},
		},
	})
	for _, f := range failures {
		res.Notes = append(res.Notes, "Failure: "+f)
	}
	absolute := func(name, target string, got, limit float64) harness.Goal {
		return harness.Goal{Name: name, Target: target, Ebb: got, Unit: "MiB RSS", Met: got > 0 && got <= limit,
			Detail: fmt.Sprintf("%.1f MiB RSS (limit %.0f MiB)", got, limit)}
	}
	res.Goals = append(res.Goals,
		absolute("idle trees replica", "≤ 20 MiB RSS", res.Figures["trees.idleRSSMiB"], 20),
		absolute("idle echo replica", "≤ 15 MiB RSS", res.Figures["echo.idleRSSMiB"], 15),
		absolute("ebb up idle", "≤ 40 MiB RSS", res.Figures["up.idleRSSMiB"], 40),
		harness.Goal{
			Name: "100 warm deployments", Target: "100 warm diabetes deployments in one `ebb up` ≤ 2.5 GiB total RSS, all answering",
			Ebb: totalMiB, Unit: "MiB RSS", Met: answered == fleet && totalMiB <= fleetGoal,
			Detail: fmt.Sprintf("%d deployments, %d of them answered; %d processes, %.0f MiB RSS in total (PSS %.0f MiB); limit %.0f MiB%s",
				fleet, answered, total.Processes, totalMiB, harness.MiB(total.PSSBytes), fleetGoal, quickNote(fleet)),
		})
	res.Summary = fmt.Sprintf("One `ebb up` (SQLite, process backend). Its RSS is read idle with no deployment; then one deployment of engine `echo` and one of engine `trees` "+
		"(the diabetes XGBoost model) are created with one warm replica each, and each replica's RSS is read once it is ready and idle. "+
		"Then %d more deployments of the diabetes model, one warm replica each, are created; each answers one request, and the RSS of `ebb up` and every replica is summed.",
		fleet)
	return res, nil
}

// quickNote says when the fleet is smaller than the goal's.
func quickNote(fleet int) string {
	if fleet == memoryFleet {
		return ""
	}
	return fmt.Sprintf(" (a quick run: %d of the goal's %d deployments, the limit scaled to match)", fleet, memoryFleet)
}

// rootMemory is the memory of ebb up's own process.
func rootMemory(ebb *harness.Ebb) harness.ProcMemory {
	for _, m := range ebb.Proc.TreeMemoryByProcess() {
		if m.PID == ebb.Proc.PID() {
			return m
		}
	}
	return harness.ProcMemory{}
}

// idleReplica creates deployment name with one warm replica, lets it idle,
// and returns the memory of the one replica process ebb up then has besides
// those it had before.
func idleReplica(ctx context.Context, ebb *harness.Ebb, name string, spec serving.Spec) (harness.ProcMemory, error) {
	before := map[int]bool{}
	for _, m := range ebb.Proc.TreeMemoryByProcess() {
		before[m.PID] = true
	}
	if err := ebb.Create(ctx, name, spec); err != nil {
		return harness.ProcMemory{}, err
	}
	if _, _, err := ebb.WaitReady(ctx, name, 1, time.Minute); err != nil {
		return harness.ProcMemory{}, err
	}
	time.Sleep(settle)
	var added []harness.ProcMemory
	for _, m := range ebb.Proc.TreeMemoryByProcess() {
		if !before[m.PID] {
			added = append(added, m)
		}
	}
	if len(added) != 1 {
		return harness.ProcMemory{}, fmt.Errorf("deployment %s: %d new processes under ebb up (%v); want its one replica", name, len(added), added)
	}
	return added[0], nil
}
