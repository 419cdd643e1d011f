package scenarios

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/store/pgtest"
	"github.com/ebb-ml/ebb/internal/store/postgres"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
)

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 100000: "100,000", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSummarize(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	tests := []struct {
		name string
		lat  []time.Duration
		want regSummary
	}{
		{"none", nil, regSummary{}},
		{"one", ms(7), regSummary{N: 1, P50: 7 * time.Millisecond, P99: 7 * time.Millisecond, Max: 7 * time.Millisecond}},
		{"hundred", ms(hundred...), regSummary{N: 100, P50: 50 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond, Over: 91}},
		{"just under the goal", []time.Duration{regGoalP99 - 1, regGoalP99}, regSummary{N: 2, P50: regGoalP99 - 1, P99: regGoalP99, Max: regGoalP99, Over: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, summarize(tt.lat)); diff != "" {
				t.Errorf("summarize (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRegGoal(t *testing.T) {
	plan := regPlan{models: 10000, versionsPer: 10}
	fast := regSummary{N: 5000, P50: 300 * time.Microsecond, P99: 2 * time.Millisecond, Max: 12 * time.Millisecond}
	slow := regSummary{N: 5000, P50: 4 * time.Millisecond, P99: 10 * time.Millisecond, Max: 30 * time.Millisecond}
	peer := regSummary{N: 5000, P50: time.Millisecond, P99: 4 * time.Millisecond, Max: 8 * time.Millisecond}
	tests := []struct {
		name        string
		sq, peer    regSummary
		met         bool
		ratio       float64
		peerName    string
		detailHas   string
		targetHas   string
		detailLacks string
	}{
		{name: "met with peer", sq: fast, peer: peer, met: true, ratio: 0.5, peerName: regPeerName, detailHas: "SQLite/PostgreSQL = 0.50×", targetHas: "100,000 versions across 10,000 models"},
		{name: "exactly 10 ms is not under", sq: slow, peer: peer, met: false, ratio: 2.5, peerName: regPeerName, detailHas: "p99 10.00 ms"},
		{name: "no peer", sq: fast, met: true, detailHas: "over 5000 calls (0 took ≥ 10 ms)", detailLacks: "PostgreSQL"},
		{name: "nothing timed", met: false, detailHas: "no call was timed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := regGoal("get version p99", plan, tt.sq, tt.peer)
			if g.Met != tt.met || g.Ratio != tt.ratio || g.PeerName != tt.peerName || g.Unit != "ms" {
				t.Errorf("goal = %+v; want met %v, ratio %v, peer %q, unit ms", g, tt.met, tt.ratio, tt.peerName)
			}
			if !strings.Contains(g.Detail, tt.detailHas) {
				t.Errorf("detail %q lacks %q", g.Detail, tt.detailHas)
			}
			if tt.detailLacks != "" && strings.Contains(g.Detail, tt.detailLacks) {
				t.Errorf("detail %q has %q", g.Detail, tt.detailLacks)
			}
			if !strings.Contains(g.Target, tt.targetHas) {
				t.Errorf("target %q lacks %q", g.Target, tt.targetHas)
			}
		})
	}
}

func TestRegNamesAndPages(t *testing.T) {
	if got := regModelName(1234); got != "model-01234" {
		t.Errorf("regModelName(1234) = %q", got)
	}
	for _, i := range []int{0, 999, 1000, 1999, 9999} {
		if p := regPrefix(i); !strings.HasPrefix(regModelName(i), p) || len(p) != len("model-00") {
			t.Errorf("regPrefix(%d) = %q, not the group prefix of %s", i, p, regModelName(i))
		}
	}
	if regPrefix(999) == regPrefix(1000) {
		t.Errorf("models 999 and 1000 share prefix %q; groups have %d models", regPrefix(999), regGroup)
	}
	plan := regPlan{models: 2500, versionsPer: 10}
	tests := []struct {
		group, cursor, want int
	}{
		{0, -1, regPageLimit},
		{0, 500, regPageLimit},
		{0, 950, 49},
		{0, 998, 1},
		{2, 1999, regPageLimit},
		{2, 2450, 49},
		{2, 2499, 0},
	}
	for _, tt := range tests {
		if got := regPageWant(plan, tt.group, tt.cursor); got != tt.want {
			t.Errorf("regPageWant(group %d, cursor %d) = %d, want %d", tt.group, tt.cursor, got, tt.want)
		}
	}
}

func TestRegSteps(t *testing.T) {
	plan := regPlan{models: 2500, versionsPer: 10}
	steps := regSteps(plan, 3000)
	if diff := cmp.Diff(steps, regSteps(plan, 3000), cmp.AllowUnexported(regStep{})); diff != "" {
		t.Fatalf("two sequences from the fixed seed differ:\n%s", diff)
	}
	groups := map[int]bool{}
	for k, s := range steps {
		lo, hi := s.pageGroup*regGroup, min((s.pageGroup+1)*regGroup, plan.models)
		ok := s.getModel >= 0 && s.getModel < plan.models && s.getVersion >= 1 && s.getVersion <= plan.versionsPer &&
			s.listModel >= 0 && s.listModel < plan.models && s.resolveModel >= 0 && s.resolveModel < plan.models &&
			s.moveModel >= 0 && s.moveModel < plan.models && s.moveOffset >= 1 && s.moveOffset < plan.versionsPer &&
			s.pageCursor >= lo-1 && s.pageCursor < hi-1
		if !ok {
			t.Fatalf("step %d out of range: %+v", k, s)
		}
		groups[s.pageGroup] = true
	}
	if len(groups) != 3 {
		t.Errorf("pages visited groups %v, want all 3", groups)
	}
}

// openRegStores returns a fresh SQLite store and, where PostgreSQL is
// installed, a fresh PostgreSQL one.
func openRegStores(t *testing.T) map[string]registry.Store {
	t.Helper()
	ctx := context.Background()
	sq, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	out := map[string]registry.Store{"sqlite": sq}
	if _, err := pgtest.BinDir(); err == nil {
		pg, err := postgres.Open(ctx, pgtest.Start(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pg.Close() })
		out["postgres"] = pg
	}
	return out
}

func TestRegWorkload(t *testing.T) {
	plan := regPlan{models: 37, versionsPer: 4, challengerEvery: 4, workers: 3, maxLoad: time.Minute,
		warmup: 5, samples: 40, maxMeasure: time.Minute}
	for name, st := range openRegStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			load, err := regPopulate(ctx, st, plan)
			if err != nil {
				t.Fatal(err)
			}
			want := regLoad{models: 37, versions: 37 * 4, aliases: 37 + 10, elapsed: load.elapsed}
			if diff := cmp.Diff(want, load, cmp.AllowUnexported(regLoad{})); diff != "" {
				t.Errorf("load (-want +got):\n%s", diff)
			}
			got, err := st.GetVersion(ctx, "model-00036", 4)
			if err != nil {
				t.Fatal(err)
			}
			wantV := regVersion(36, 4)
			if got.SHA256 != wantV.SHA256 || got.Lineage.Metrics["r2"] != wantV.Lineage.Metrics["r2"] || got.Tags["team"] != "team-36" {
				t.Errorf("stored version %+v, want the record of regVersion(36, 4)", got)
			}
			if a, err := st.GetAlias(ctx, "model-00008", "challenger"); err != nil || a.Version != 3 {
				t.Errorf("model-00008@challenger = %+v, %v; want version 3", a, err)
			}
			if _, err := st.GetAlias(ctx, "model-00009", "challenger"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("model-00009@challenger: %v, want not found", err)
			}
			if _, err := regPopulate(ctx, st, plan); !errors.Is(err, store.ErrExists) {
				t.Errorf("second load: %v, want an error wrapping ErrExists", err)
			}

			r := newRegRunner(registry.NewService(st, nil, registry.Options{}), plan)
			n, err := regMeasure(ctx, plan, []*regRunner{r})
			if err != nil || n != plan.samples {
				t.Fatalf("regMeasure = %d, %v; want %d iterations", n, err, plan.samples)
			}
			for op := range regOps {
				if len(r.lat[op]) != plan.samples {
					t.Errorf("%s: %d latencies, want %d", regOpNames[op], len(r.lat[op]), plan.samples)
				}
			}
			// The runner's idea of each champion must match the store's
			// after all the moves.
			for i, v := range r.champion {
				if a, err := st.GetAlias(ctx, regModelName(i), "champion"); err != nil || a.Version != v {
					t.Errorf("%s@champion = %+v, %v; runner says %d", regModelName(i), a, err, v)
				}
			}
			// A wrong answer fails the step.
			s := regSteps(plan, 1)[0]
			r.champion[s.resolveModel] = plan.versionsPer + 7
			if err := r.step(ctx, s, false); err == nil || !strings.Contains(err.Error(), "resolved to version") {
				t.Errorf("step with a wrong expected champion: %v, want a resolve mismatch", err)
			}
		})
	}
}

func TestRegPopulateBoundedInTime(t *testing.T) {
	sq, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	plan := regPlan{models: 5000, versionsPer: 10, workers: 2, maxLoad: 50 * time.Millisecond}
	load, err := regPopulate(context.Background(), sq, plan)
	if err == nil || load.versions >= plan.versions() {
		t.Errorf("regPopulate = %+v, %v; want it stopped by its time bound", load, err)
	}
}
