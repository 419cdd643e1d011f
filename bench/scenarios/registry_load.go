package scenarios

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ebb-ml/ebb/bench/harness"
	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/registry"
)

// The registry workload: a catalog of models named model-00000,
// model-00001..., each with the same number of versions carrying
// realistic metadata, a champion alias on every model and a challenger on
// some, then a mix of reads and alias moves timed one at a time.

// regGroup is how many consecutive models share a ListModels prefix
// ("model-01" covers model-01000..model-01999).
const regGroup = 1000

// regPageLimit is the page size of the timed ListModels calls.
const regPageLimit = 100

// regPlan sizes the workload. Models must be below 100,000 (five digits).
type regPlan struct {
	models      int
	versionsPer int
	// challengerEvery gives every Nth model (0, N, 2N...) a challenger.
	challengerEvery int
	// workers load the store concurrently, each its own models.
	workers int
	// maxLoad bounds the load in time; a load that does not finish fails.
	maxLoad time.Duration
	// warmup iterations are run first and not recorded; samples bounds
	// the recorded iterations and maxMeasure their time.
	warmup, samples int
	maxMeasure      time.Duration
}

// versions is the number of versions the plan loads.
func (p regPlan) versions() int { return p.models * p.versionsPer }

// regModelName names model i.
func regModelName(i int) string { return fmt.Sprintf("model-%05d", i) }

// regPrefix is the ListModels prefix shared by model i's group.
func regPrefix(i int) string { return fmt.Sprintf("model-%02d", i/regGroup) }

// regHex returns a stable 64-digit hex string derived from parts.
func regHex(parts ...any) string {
	sum := sha256.Sum256(fmt.Append(nil, parts...))
	return hex.EncodeToString(sum[:])
}

// regVersion returns version n of model i as a training pipeline would
// push it: artifact, signature, lineage with parameters and metrics, tags.
func regVersion(i, n int) registry.Version {
	model := regModelName(i)
	sum := regHex(model, n)
	return registry.Version{
		Model:       model,
		ArtifactURI: "file:///var/lib/ebb/artifacts/sha256/" + sum,
		SHA256:      sum,
		Size:        int64(1<<20 + 4096*n),
		Engine:      "trees",
		Signature: registry.Signature{
			Inputs:  []oip.TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 10}}},
			Outputs: []oip.TensorMetadata{{Name: "predict", Datatype: "FP32", Shape: []int64{-1}}},
		},
		Lineage: registry.Lineage{
			DataURI:    fmt.Sprintf("s3://training-data/%s/train-%03d.parquet", model, n),
			DataSHA256: regHex("data", model, n),
			Parameters: map[string]string{"max_depth": "6", "eta": "0.3", "n_estimators": "100", "objective": "reg:squarederror"},
			Metrics:    map[string]float64{"rmse": 50 + float64(n)/10, "r2": 0.4 + float64(n)/100, "mae": 40 + float64(i%7)},
			CodeCommit: regHex("commit", n)[:40],
			Source:     fmt.Sprintf("ci run %d", i*100+n),
		},
		Tags:      map[string]string{"team": fmt.Sprintf("team-%02d", i%50), "dataset": "diabetes"},
		CreatedBy: "bench",
	}
}

// regLoad is what loading a store took.
type regLoad struct {
	models, versions, aliases int
	elapsed                   time.Duration
}

// writes is the number of store writes (one transaction each).
func (l regLoad) writes() int { return l.models + l.versions + l.aliases }

// perSec returns n per second of the load.
func (l regLoad) perSec(n int) float64 {
	if l.elapsed <= 0 {
		return 0
	}
	return float64(n) / l.elapsed.Seconds()
}

// regPopulate loads st with plan's models, versions and aliases through
// the registry.Store interface, plan.workers at a time, each worker taking
// every workers-th model. It fails on the first error or when the load
// takes longer than plan.maxLoad.
func regPopulate(ctx context.Context, st registry.Store, plan regPlan) (regLoad, error) {
	ctx, cancel := context.WithTimeout(ctx, plan.maxLoad)
	defer cancel()
	var (
		models, versions, aliases atomic.Int64
		once                      sync.Once
		firstErr                  error
		wg                        sync.WaitGroup
	)
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel() })
	}
	start := time.Now()
	for w := range max(1, plan.workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < plan.models; i += max(1, plan.workers) {
				if ctx.Err() != nil {
					return
				}
				name := regModelName(i)
				if _, err := st.CreateModel(ctx, registry.Model{Name: name, Description: "scale benchmark model"}); err != nil {
					fail(err)
					return
				}
				models.Add(1)
				for n := 1; n <= plan.versionsPer; n++ {
					v, err := st.CreateVersion(ctx, regVersion(i, n))
					if err != nil {
						fail(err)
						return
					}
					if v.Version != n {
						fail(fmt.Errorf("%s got version %d, want %d", name, v.Version, n))
						return
					}
					versions.Add(1)
				}
				if _, err := st.SetAlias(ctx, name, "champion", plan.versionsPer, 0, "bench"); err != nil {
					fail(err)
					return
				}
				aliases.Add(1)
				if plan.challengerEvery > 0 && i%plan.challengerEvery == 0 && plan.versionsPer > 1 {
					if _, err := st.SetAlias(ctx, name, "challenger", plan.versionsPer-1, 0, "bench"); err != nil {
						fail(err)
						return
					}
					aliases.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	out := regLoad{models: int(models.Load()), versions: int(versions.Load()), aliases: int(aliases.Load()), elapsed: time.Since(start)}
	if firstErr == nil && out.versions < plan.versions() {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return out, fmt.Errorf("load stopped after %s with %d of %d versions: %w", out.elapsed.Round(time.Millisecond), out.versions, plan.versions(), firstErr)
	}
	return out, nil
}

// regOp is one timed operation.
type regOp int

const (
	opGet regOp = iota
	opListVersions
	opListModels
	opResolve
	opMove
	regOps // the number of operations
)

// regOpNames name the operations in reports; regOpKeys in figures.
var (
	regOpNames = [regOps]string{
		opGet:          "GetVersion (random model and version)",
		opListVersions: "ListVersions (one model, all its versions)",
		opListModels:   fmt.Sprintf("ListModels page (prefix, after-cursor, limit %d)", regPageLimit),
		opResolve:      `Service.ResolveString("model@champion")`,
		opMove:         "Service.MoveAlias champion (compare-and-swap move)",
	}
	regOpKeys = [regOps]string{
		opGet: "get", opListVersions: "listVersions", opListModels: "listModels", opResolve: "resolve", opMove: "moveAlias",
	}
)

// regStep is one iteration's arguments, the same for every store.
type regStep struct {
	getModel, getVersion int
	listModel            int
	// pageCursor is the model the page starts after; -1 for none.
	pageCursor, pageGroup int
	resolveModel          int
	moveModel             int
	// moveOffset picks the new champion among the other versions.
	moveOffset int
}

// regSteps returns n iterations' arguments drawn from a fixed seed, so
// that every store runs the same sequence.
func regSteps(plan regPlan, n int) []regStep {
	rng := rand.New(rand.NewPCG(5, 100000))
	groups := (plan.models + regGroup - 1) / regGroup
	steps := make([]regStep, n)
	for k := range steps {
		g := rng.IntN(groups)
		lo, hi := g*regGroup, min((g+1)*regGroup, plan.models)
		steps[k] = regStep{
			getModel:     rng.IntN(plan.models),
			getVersion:   1 + rng.IntN(plan.versionsPer),
			listModel:    rng.IntN(plan.models),
			pageGroup:    g,
			pageCursor:   lo - 1 + rng.IntN(max(1, hi-lo-1)),
			resolveModel: rng.IntN(plan.models),
			moveModel:    rng.IntN(plan.models),
			moveOffset:   1 + rng.IntN(max(1, plan.versionsPer-1)),
		}
	}
	return steps
}

// regPageWant is how many models a ListModels page after cursor in group g
// returns.
func regPageWant(plan regPlan, g, cursor int) int {
	hi := min((g+1)*regGroup, plan.models)
	return max(0, min(regPageLimit, hi-cursor-1))
}

// regRunner times the operations against one store through a Service and
// checks every answer, so that a fast wrong answer cannot pass.
type regRunner struct {
	svc  *registry.Service
	plan regPlan
	// champion is each model's champion version as the runner moved it.
	champion []int
	lat      [regOps][]time.Duration
}

func newRegRunner(svc *registry.Service, plan regPlan) *regRunner {
	r := &regRunner{svc: svc, plan: plan, champion: make([]int, plan.models)}
	for i := range r.champion {
		r.champion[i] = plan.versionsPer
	}
	return r
}

// step runs the five operations once, recording their latencies when
// record is set. It fails on an error or a wrong answer.
func (r *regRunner) step(ctx context.Context, s regStep, record bool) error {
	st := r.svc.Store()
	timed := func(op regOp, fn func() error) error {
		t0 := time.Now()
		err := fn()
		d := time.Since(t0)
		if err != nil {
			return fmt.Errorf("%s: %w", regOpNames[op], err)
		}
		if record {
			r.lat[op] = append(r.lat[op], d)
		}
		return nil
	}
	if err := timed(opGet, func() error {
		v, err := st.GetVersion(ctx, regModelName(s.getModel), s.getVersion)
		if err == nil && (v.Model != regModelName(s.getModel) || v.Version != s.getVersion || v.SHA256 == "") {
			err = fmt.Errorf("got %s:%d, want %s:%d", v.Model, v.Version, regModelName(s.getModel), s.getVersion)
		}
		return err
	}); err != nil {
		return err
	}
	if err := timed(opListVersions, func() error {
		vs, err := st.ListVersions(ctx, regModelName(s.listModel), registry.VersionListOptions{})
		if err == nil && len(vs) != r.plan.versionsPer {
			err = fmt.Errorf("%s has %d versions, want %d", regModelName(s.listModel), len(vs), r.plan.versionsPer)
		}
		return err
	}); err != nil {
		return err
	}
	if err := timed(opListModels, func() error {
		after := ""
		if s.pageCursor >= 0 {
			after = regModelName(s.pageCursor)
		}
		ms, err := st.ListModels(ctx, registry.ListOptions{Prefix: regPrefix(s.pageGroup * regGroup), After: after, Limit: regPageLimit})
		if want := regPageWant(r.plan, s.pageGroup, s.pageCursor); err == nil && (len(ms) != want || want > 0 && ms[0].Name != regModelName(s.pageCursor+1)) {
			err = fmt.Errorf("page after %q has %d models, want %d starting at %s", after, len(ms), want, regModelName(s.pageCursor+1))
		}
		return err
	}); err != nil {
		return err
	}
	if err := timed(opResolve, func() error {
		v, err := r.svc.ResolveString(ctx, regModelName(s.resolveModel)+"@champion")
		if want := r.champion[s.resolveModel]; err == nil && v.Version != want {
			err = fmt.Errorf("%s@champion resolved to version %d, want %d", regModelName(s.resolveModel), v.Version, want)
		}
		return err
	}); err != nil {
		return err
	}
	from := r.champion[s.moveModel]
	to := (from-1+s.moveOffset)%r.plan.versionsPer + 1
	if err := timed(opMove, func() error {
		m, err := r.svc.MoveAlias(ctx, regModelName(s.moveModel), "champion", to, from, "bench")
		if err == nil && (m.From != from || m.To != to) {
			err = fmt.Errorf("moved %d→%d, want %d→%d", m.From, m.To, from, to)
		}
		return err
	}); err != nil {
		return err
	}
	r.champion[s.moveModel] = to
	return nil
}

// regSummary is one operation's latencies.
type regSummary struct {
	N             int
	P50, P99, Max time.Duration
	// Over counts the calls that took regGoalP99 or longer.
	Over int
}

// summarize returns the count, median, 99th percentile (nearest rank),
// maximum of lat and how many took regGoalP99 or longer.
func summarize(lat []time.Duration) regSummary {
	if len(lat) == 0 {
		return regSummary{}
	}
	over := 0
	for _, d := range lat {
		if d >= regGoalP99 {
			over++
		}
	}
	return regSummary{N: len(lat), P50: harness.Quantile(lat, .5), P99: harness.Quantile(lat, .99), Max: slices.Max(lat), Over: over}
}

// regMeasure runs plan.warmup unrecorded iterations and then up to
// plan.samples recorded ones, all bounded by plan.maxMeasure, visiting the
// runners in turn within each iteration so that drift on the machine falls
// on every store alike. It returns how many iterations were recorded.
func regMeasure(ctx context.Context, plan regPlan, runners []*regRunner) (int, error) {
	steps := regSteps(plan, plan.warmup+plan.samples)
	deadline := time.Now().Add(plan.maxMeasure)
	recorded := 0
	for k, s := range steps {
		if ctx.Err() != nil {
			return recorded, ctx.Err()
		}
		if time.Now().After(deadline) {
			break
		}
		record := k >= plan.warmup
		for _, r := range runners {
			if err := r.step(ctx, s, record); err != nil {
				return recorded, err
			}
		}
		if record {
			recorded++
		}
	}
	return recorded, nil
}
