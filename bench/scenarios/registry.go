package scenarios

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
	"github.com/ebb-ml/ebb/internal/store/postgres"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

// RegistryScale loads the model registry's SQLite store with 100,000
// versions across 10,000 models (a tenth of that in a quick run), with a
// champion alias on every model and a challenger on some, and times reads
// and alias moves one at a time: p50, p99 and max of GetVersion,
// ListVersions, a ListModels page, resolving model@champion and moving an
// alias. The goal is a p99 under 10 ms for the reads on SQLite. The same
// workload runs against PostgreSQL 15 (a throwaway cluster from pgtest) as
// the peer, interleaved with SQLite's, and the ratios are SQLite/PostgreSQL.
type RegistryScale struct{}

// Name implements harness.Scenario.
func (RegistryScale) Name() string { return "registry" }

// Title implements harness.Scenario.
func (RegistryScale) Title() string { return "6. Model registry scale" }

// regGoalP99 is the goal for the reads' p99 on SQLite.
const regGoalP99 = 10 * time.Millisecond

// regPeerName names the peer in goals and tables.
const regPeerName = "PostgreSQL 15"

// regPlanFor sizes the workload for a full or a quick run.
func regPlanFor(env *harness.Env) regPlan {
	return regPlan{
		models:          harness.Pick(env, 10000, 1000),
		versionsPer:     10,
		challengerEvery: 4,
		workers:         4,
		maxLoad:         harness.Pick(env, 150*time.Second, 60*time.Second),
		warmup:          harness.Pick(env, 200, 100),
		samples:         harness.Pick(env, 5000, 1000),
		maxMeasure:      harness.Pick(env, 90*time.Second, 30*time.Second),
	}
}

// regTarget is one store under test.
type regTarget struct {
	label, key string
	load       regLoad
	// size is the database's size on disk in bytes; 0 when not known.
	size   int64
	runner *regRunner
}

// Run implements harness.Scenario.
func (RegistryScale) Run(ctx context.Context, env *harness.Env) (harness.Result, error) {
	plan := regPlanFor(env)
	res := harness.Result{
		Summary: fmt.Sprintf("The registry's stores are loaded through the `registry.Store` interface, %d concurrent workers each creating whole models: "+
			"%s models × %d versions = %s versions, each version with a realistic record (artifact URI and SHA-256, signature, lineage with parameters, metrics and data hash, tags), "+
			"a `champion` alias on every model and a `challenger` on every %dth. Then one client times, one call at a time, %d iterations (after %d unrecorded) of: "+
			"GetVersion of a random model and version, ListVersions of a random model, a ListModels page (prefix covering %d models, random after-cursor, limit %d), "+
			"`Service.ResolveString(\"model@champion\")` and `Service.MoveAlias` of a champion (compare-and-swap from its current version). Every answer is checked "+
			"(right version, right count, right page, resolve follows the moves). SQLite is ebb's default store (a file in the run's work directory, WAL, synchronous=NORMAL); "+
			"the peer is PostgreSQL 15 in a throwaway cluster started by `internal/store/pgtest`, measured in the same run with the same sequence of calls, interleaved call by call with SQLite's. "+
			"The goal: p99 under %d ms on SQLite for get, list and alias resolve.",
			plan.workers, thousands(plan.models), plan.versionsPer, thousands(plan.versions()), plan.challengerEvery, plan.samples, plan.warmup,
			regGroup, regPageLimit, regGoalP99.Milliseconds()),
		Figures: map[string]float64{"models": float64(plan.models), "versions": float64(plan.versions())},
	}

	dir := filepath.Join(env.Work, "registry")
	dbPath := filepath.Join(dir, "registry.db")
	sq, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		return res, err
	}
	defer sq.Close()
	env.Logf("loading SQLite: %d models × %d versions, %d workers", plan.models, plan.versionsPer, plan.workers)
	load, err := regPopulate(ctx, sq, plan)
	if err != nil {
		return res, fmt.Errorf("load SQLite: %w", err)
	}
	env.Logf("SQLite loaded in %.1f s (%.0f versions/s)", load.elapsed.Seconds(), load.perSec(load.versions))
	targets := []*regTarget{{label: "SQLite", key: "sqlite", load: load, size: fileSizes(dbPath, dbPath+"-wal"),
		runner: newRegRunner(registry.NewService(sq, nil, registry.Options{}), plan)}}

	pg, stop, note := startRegPeer(ctx, env)
	if stop != nil {
		defer stop()
	}
	if pg != nil {
		env.Logf("loading %s: %d models × %d versions, %d workers", regPeerName, plan.models, plan.versionsPer, plan.workers)
		load, err := regPopulate(ctx, pg, plan)
		if err != nil {
			note = fmt.Sprintf("The %s peer was not measured: its load failed: %v.", regPeerName, err)
		} else {
			env.Logf("%s loaded in %.1f s (%.0f versions/s)", regPeerName, load.elapsed.Seconds(), load.perSec(load.versions))
			targets = append(targets, &regTarget{label: regPeerName, key: "postgres", load: load,
				runner: newRegRunner(registry.NewService(pg, nil, registry.Options{}), plan)})
		}
	}
	if note != "" {
		res.Notes = append(res.Notes, note)
	}

	runners := make([]*regRunner, len(targets))
	for i, t := range targets {
		runners[i] = t.runner
	}
	env.Logf("timing %d iterations of 5 calls on %d store(s)", plan.samples, len(targets))
	recorded, err := regMeasure(ctx, plan, runners)
	res.Figures["samples"] = float64(recorded)
	regReport(&res, env, plan, targets, recorded)
	if err != nil {
		return res, fmt.Errorf("timed calls: %w", err)
	}
	if recorded == 0 {
		return res, fmt.Errorf("no call was timed within %s", plan.maxMeasure)
	}
	return res, nil
}

// startRegPeer starts a throwaway PostgreSQL cluster and opens the store
// in its postgres database. When it cannot, it returns a nil store and a
// note saying why the peer is skipped. stop, when not nil, closes the
// store and stops the cluster.
func startRegPeer(ctx context.Context, env *harness.Env) (*postgres.Store, func(), string) {
	skip := func(err error) string {
		return fmt.Sprintf("The %s peer was skipped: %v.", regPeerName, err)
	}
	bin, err := pgtest.BinDir()
	if err != nil {
		return nil, nil, skip(err)
	}
	c, err := pgtest.StartCluster(bin)
	if err != nil {
		return nil, nil, skip(err)
	}
	env.Logf("started %s from %s on 127.0.0.1:%d", regPeerName, bin, c.Port)
	st, err := postgres.Open(ctx, c.DSN("postgres"))
	if err != nil {
		c.Stop()
		return nil, nil, skip(err)
	}
	return st, func() {
		st.Close()
		if err := c.Stop(); err != nil {
			env.Logf("stop %s: %v", regPeerName, err)
		}
	}, ""
}

// fileSizes returns the total size of the files that exist among paths.
func fileSizes(paths ...string) int64 {
	var n int64
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// regGoalOps are the operations the goal is judged on, with their names in
// the goals table.
var regGoalOps = []struct {
	op   regOp
	name string
}{
	{opGet, "get version p99"},
	{opListVersions, "list versions p99"},
	{opListModels, "list models page p99"},
	{opResolve, "alias resolve p99"},
}

// regGoal judges one operation: SQLite's p99 under regGoalP99, with the
// peer's p99 and the ratio SQLite/peer when the peer was measured.
func regGoal(name string, plan regPlan, sq, peer regSummary) harness.Goal {
	g := harness.Goal{
		Name:   name,
		Target: fmt.Sprintf("SQLite p99 < %d ms at %s versions across %s models", regGoalP99.Milliseconds(), thousands(plan.versions()), thousands(plan.models)),
		Ebb:    harness.Ms(sq.P99),
		Unit:   "ms",
		Met:    sq.N > 0 && sq.P99 < regGoalP99,
	}
	g.Detail = fmt.Sprintf("SQLite p50 %s ms, p99 %s ms, max %s ms over %d calls (%d took ≥ %d ms)", harness.F(harness.Ms(sq.P50)), harness.F(harness.Ms(sq.P99)), harness.F(harness.Ms(sq.Max)), sq.N, sq.Over, regGoalP99.Milliseconds())
	if sq.N == 0 {
		g.Detail = "SQLite: no call was timed"
	}
	if peer.N > 0 {
		g.PeerName, g.Peer = regPeerName, harness.Ms(peer.P99)
		g.Ratio = harness.Ratio(g.Ebb, g.Peer)
		g.Detail += fmt.Sprintf("; %s p99 %s ms: SQLite/PostgreSQL = %.2f×", regPeerName, harness.F(g.Peer), g.Ratio)
	}
	return g
}

// thousands writes n with commas: 100000 → "100,000".
func thousands(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// regReport fills res with the goals, tables and figures of the targets.
func regReport(res *harness.Result, env *harness.Env, plan regPlan, targets []*regTarget, recorded int) {
	sums := make([][regOps]regSummary, len(targets))
	for i, t := range targets {
		for op := range regOps {
			sums[i][op] = summarize(t.runner.lat[op])
		}
	}
	peer := func(op regOp) regSummary {
		if len(targets) > 1 {
			return sums[1][op]
		}
		return regSummary{}
	}
	for _, g := range regGoalOps {
		res.Goals = append(res.Goals, regGoal(g.name, plan, sums[0][g.op], peer(g.op)))
	}

	loadRows := [][]string{}
	for _, t := range targets {
		size := "—"
		if t.size > 0 {
			size = fmt.Sprintf("%.0f MiB", float64(t.size)/(1<<20))
		}
		loadRows = append(loadRows, []string{t.label, thousands(t.load.models), thousands(t.load.versions), thousands(t.load.aliases),
			thousands(t.load.writes()), harness.F(t.load.elapsed.Seconds()), harness.F(t.load.perSec(t.load.writes())),
			harness.F(t.load.perSec(t.load.versions)), size})
		res.Figures[t.key+".load.seconds"] = t.load.elapsed.Seconds()
		res.Figures[t.key+".load.writesPerSec"] = t.load.perSec(t.load.writes())
		res.Figures[t.key+".load.versionsPerSec"] = t.load.perSec(t.load.versions)
		if t.size > 0 {
			res.Figures[t.key+".dbBytes"] = float64(t.size)
		}
	}
	res.Tables = append(res.Tables, harness.Table{
		Caption: fmt.Sprintf("Bulk load through `registry.Store` (%d workers; every write is its own transaction: CreateModel, CreateVersion, SetAlias).", plan.workers),
		Header:  []string{"Store", "models", "versions", "aliases", "writes", "seconds", "writes/s", "versions/s", "size on disk"},
		Rows:    loadRows,
	})

	header := []string{"Operation", "SQLite p50 ms", "SQLite p99 ms", "SQLite max ms", "SQLite calls ≥ 10 ms"}
	if len(targets) > 1 {
		header = append(header, "PostgreSQL p50 ms", "PostgreSQL p99 ms", "PostgreSQL max ms", "PostgreSQL calls ≥ 10 ms", "p99 SQLite/PostgreSQL")
	}
	header = append(header, "calls")
	rows := [][]string{}
	for op := range regOps {
		sq := sums[0][op]
		row := []string{regOpNames[op], harness.F(harness.Ms(sq.P50)), harness.F(harness.Ms(sq.P99)), harness.F(harness.Ms(sq.Max)), strconv.Itoa(sq.Over)}
		if len(targets) > 1 {
			pg := sums[1][op]
			ratio := harness.Ratio(harness.Ms(sq.P99), harness.Ms(pg.P99))
			row = append(row, harness.F(harness.Ms(pg.P50)), harness.F(harness.Ms(pg.P99)), harness.F(harness.Ms(pg.Max)), strconv.Itoa(pg.Over), fmt.Sprintf("%.2f×", ratio))
			res.Figures["ratio."+regOpKeys[op]+".p99"] = ratio
		}
		row = append(row, strconv.Itoa(sq.N))
		rows = append(rows, row)
		for i, t := range targets {
			s := sums[i][op]
			res.Figures[t.key+"."+regOpKeys[op]+".p50Ms"] = harness.Ms(s.P50)
			res.Figures[t.key+"."+regOpKeys[op]+".p99Ms"] = harness.Ms(s.P99)
			res.Figures[t.key+"."+regOpKeys[op]+".maxMs"] = harness.Ms(s.Max)
			res.Figures[t.key+"."+regOpKeys[op]+".over10ms"] = float64(s.Over)
		}
	}
	res.Tables = append(res.Tables, harness.Table{
		Caption: fmt.Sprintf("Latency of one call at a time, %d timed iterations (of %d planned, bounded to %s); the stores take turns call by call.",
			recorded, plan.samples, plan.maxMeasure),
		Header: header,
		Rows:   rows,
	})

	cpus := "the machine's CPUs (nothing pinned)"
	if env.LoadCPUs != "" {
		cpus = "CPU(s) " + env.LoadCPUs + " (`taskset`, inherited by PostgreSQL's processes)"
	}
	res.Notes = append(res.Notes,
		fmt.Sprintf("Client and store share %s: SQLite runs inside the harness process, and PostgreSQL's server processes inherit the harness's pinning, so both stores have the same CPUs, which their client also uses.", cpus),
		"PostgreSQL runs as `pgtest` starts it for tests, with fsync, synchronous_commit and full_page_writes off, so its commits (the load, the alias moves) do not wait for the disk; SQLite runs as ebb opens it (WAL, synchronous=NORMAL), where commits do not wait for the disk either, only checkpoints do. Reads are unaffected by either. PostgreSQL's connection pool is pgxpool's default.",
		"SQLite's store serialises the writes of one process behind a mutex (WAL allows one writer), so its load workers overlap only the encoding of records with the writes.",
	)
}
