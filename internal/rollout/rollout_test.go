package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebb-ml/ebb/internal/oip"
	"github.com/ebb-ml/ebb/internal/registry"
	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store/sqlite"
	"github.com/ebb-ml/ebb/internal/store/sqlstore"
	"github.com/ebb-ml/ebb/internal/traffic"
	clocktesting "k8s.io/utils/clock/testing"
)

// meters stands in for the gateways: each key's requests, errors and
// latency per second, from which Measure sums an interval.
type meters struct {
	mu sync.Mutex
	m  map[string]*traffic.Meter
}

func (ms *meters) observe(key string, at time.Time, n, failed int, latency time.Duration) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.m == nil {
		ms.m = map[string]*traffic.Meter{}
	}
	if ms.m[key] == nil {
		ms.m[key] = traffic.NewMeter(0, 0)
	}
	for i := range n {
		ms.m[key].Observe(at, latency, i < failed)
	}
}

func (ms *meters) Measure(key string, since, now time.Time) traffic.Measurement {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m := ms.m[key]; m != nil {
		return m.Snapshot(since, now)
	}
	return traffic.Measurement{}
}

// fakeRegistry records alias moves and knows input signatures.
type fakeRegistry struct {
	moves  []string
	inputs map[string]Signature
}

func (r *fakeRegistry) MoveAlias(_ context.Context, model, alias string, version int, _ string) error {
	r.moves = append(r.moves, fmt.Sprintf("%s@%s=%d", model, alias, version))
	return nil
}

func (r *fakeRegistry) Inputs(_ context.Context, ref string) (Signature, bool, error) {
	s, ok := r.inputs[ref]
	return s, ok, nil
}

type fixture struct {
	t      *testing.T
	st     *sqlstore.Store
	clock  *clocktesting.FakeClock
	meters *meters
	reg    *fakeRegistry
	// svc is the real registry over st, which Undo reads and moves
	// aliases with.
	svc      *registry.Service
	notified []string
	m        *Manager
	events   []string
	// shadows stands in for what the gateways compared of shadows.
	shadows *fakeShadows
}

func newFixture(t *testing.T, model string) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/ebb.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d := serving.Deployment{Name: "m", Spec: serving.Spec{Model: model, Engine: "trees"}}
	d.Spec.Default()
	if _, err := st.CreateDeployment(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, st: st, clock: clocktesting.NewFakeClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)), meters: &meters{}, reg: &fakeRegistry{}, shadows: &fakeShadows{}}
	f.svc = registry.NewService(st, nil, registry.Options{Now: f.clock.Now})
	f.shadows.spec = func(name string) *serving.Shadow {
		d, err := st.GetDeployment(context.Background(), name)
		if err != nil {
			return nil
		}
		return d.Spec.Shadow
	}
	f.restart()
	return f
}

// restart makes a new Manager over the same store, as a restarted ebb
// would.
func (f *fixture) restart() {
	f.m = New(f.st, f.st, f.meters, Options{Clock: f.clock, Registry: f.reg, History: f.svc, Shadows: f.shadows, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Event:  func(_, typ, reason, msg string) { f.events = append(f.events, typ+" "+reason+": "+msg) },
		Notify: func(d string) { f.notified = append(f.notified, d) }})
}

// minute has both versions serve a minute of requests (canary errors of
// them failing), then passes the minute and judges.
func (f *fixture) minute(primary, canary, canaryErrors int) Status {
	f.t.Helper()
	for s := range 60 {
		at := f.clock.Now().Add(time.Duration(s) * time.Second)
		f.meters.observe("m", at, primary/60, 0, 10*time.Millisecond)
		f.meters.observe("m.canary", at, canary/60, min(canaryErrors, canary/60), 10*time.Millisecond)
		canaryErrors -= min(canaryErrors, canary/60)
	}
	f.clock.Step(61 * time.Second)
	f.m.Pass(context.Background())
	st, err := f.m.Get(context.Background(), "m")
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

func (f *fixture) deployment() serving.Deployment {
	f.t.Helper()
	d, err := f.st.GetDeployment(context.Background(), "m")
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) wantTraffic(canary int) {
	f.t.Helper()
	tr := f.deployment().Spec.Traffic
	if canary == 0 {
		if tr != nil {
			f.t.Fatalf("spec.traffic = %+v; want no split", tr)
		}
		return
	}
	if len(tr) != 2 || tr[1].Tag != CanaryTag || tr[1].Weight != int32(canary) || tr[0].Weight != int32(100-canary) {
		f.t.Fatalf("spec.traffic = %+v; want the canary at %d%%", tr, canary)
	}
}

func TestGoodCanaryIsPromoted(t *testing.T) {
	f := newFixture(t, "/models/m.json")
	st, err := f.m.Start(context.Background(), "m", Request{To: "/models/m-v2.json"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != traffic.Progressing || st.Weight != 5 {
		t.Fatalf("started at %s %d%%; want Progressing at 5%%", st.Phase, st.Weight)
	}
	f.wantTraffic(5)
	for _, want := range []int{25, 50} {
		st = f.minute(6000, 600, 0)
		if st.Weight != want {
			t.Fatalf("after a good minute: %s at %d%% (%s); want %d%%", st.Phase, st.Weight, st.Reason, want)
		}
		f.wantTraffic(want)
	}
	st = f.minute(6000, 3000, 0)
	if st.Phase != traffic.Succeeded || st.Active {
		t.Fatalf("after the last step: %s active=%v (%s); want Succeeded and inactive", st.Phase, st.Active, st.Reason)
	}
	if d := f.deployment(); d.Spec.Model != "/models/m-v2.json" || d.Spec.Traffic != nil {
		t.Errorf("promoted deployment serves %q with traffic %+v; want the canary alone", d.Spec.Model, d.Spec.Traffic)
	}
	if len(st.History) != 3 {
		t.Errorf("history has %d steps; want 3 judged steps", len(st.History))
	}
	if !strings.Contains(strings.Join(f.events, "\n"), "RolloutSucceeded") {
		t.Errorf("events %q lack the success", f.events)
	}
}

func TestFailingCanaryRollsBackAtFirstStep(t *testing.T) {
	f := newFixture(t, "/models/m.json")
	if _, err := f.m.Start(context.Background(), "m", Request{To: "/models/m-v2.json"}); err != nil {
		t.Fatal(err)
	}
	st := f.minute(6000, 600, 120) // 20% of the canary's requests fail
	if st.Phase != traffic.RolledBack || st.Weight != 0 || !strings.Contains(st.Reason, "error rate") {
		t.Fatalf("a canary failing 20%%: %s at %d%%: %q; want RolledBack naming the error rate", st.Phase, st.Weight, st.Reason)
	}
	f.wantTraffic(0)
	if d := f.deployment(); d.Spec.Model != "/models/m.json" {
		t.Errorf("rolled back deployment serves %q; want the primary", d.Spec.Model)
	}
	// A new rollout may start once this one is over.
	if _, err := f.m.Start(context.Background(), "m", Request{To: "/models/m-v3.json"}); err != nil {
		t.Errorf("start after a rollback: %v", err)
	}
}

func TestNoTrafficWaits(t *testing.T) {
	f := newFixture(t, "/models/m.json")
	if _, err := f.m.Start(context.Background(), "m", Request{To: "/models/m-v2.json"}); err != nil {
		t.Fatal(err)
	}
	var st Status
	for range 30 {
		st = f.minute(0, 0, 0)
	}
	if st.Phase != traffic.Progressing || st.Weight != 5 || !strings.Contains(st.Reason, "requests") {
		t.Fatalf("after 30 minutes without traffic: %s at %d%%: %q; want still at step 1, waiting for requests", st.Phase, st.Weight, st.Reason)
	}
	f.wantTraffic(5)
	// Waiting writes nothing: neither the rollout nor the deployment.
	before, err := f.st.ActiveRollout(context.Background(), "m", "canary")
	if err != nil {
		t.Fatal(err)
	}
	dep := f.deployment()
	for range 3 {
		f.clock.Step(2 * time.Second)
		f.m.Pass(context.Background())
	}
	after, err := f.st.ActiveRollout(context.Background(), "m", "canary")
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision != before.Revision || !f.deployment().UpdatedAt.Equal(dep.UpdatedAt) {
		t.Errorf("passes that changed nothing wrote: rollout revision %d → %d, deployment updated %v → %v",
			before.Revision, after.Revision, dep.UpdatedAt, f.deployment().UpdatedAt)
	}
}

func TestPromotionMovesTheAlias(t *testing.T) {
	f := newFixture(t, "m@champion")
	if _, err := f.m.Start(context.Background(), "m", Request{To: "m:2", Steps: []int{50, 100}}); err != nil {
		t.Fatal(err)
	}
	st := f.minute(3000, 3000, 0)
	if st.Phase != traffic.Succeeded {
		t.Fatalf("%s: %s; want Succeeded", st.Phase, st.Reason)
	}
	if d := f.deployment(); d.Spec.Model != "m@champion" || d.Spec.Traffic != nil {
		t.Errorf("deployment serves %q with traffic %+v; want the alias alone", d.Spec.Model, d.Spec.Traffic)
	}
	if got := strings.Join(f.reg.moves, ","); got != "m@champion=2" {
		t.Errorf("alias moves = %q; want m@champion=2", got)
	}
}

func TestRolloutSurvivesRestart(t *testing.T) {
	f := newFixture(t, "/models/m.json")
	if _, err := f.m.Start(context.Background(), "m", Request{To: "/models/m-v2.json"}); err != nil {
		t.Fatal(err)
	}
	f.minute(6000, 600, 0)
	f.restart()
	st := f.minute(6000, 1500, 0)
	if st.Phase != traffic.Progressing || st.Weight != 50 {
		t.Fatalf("after a restart and a good minute: %s at %d%% (%s); want 50%%", st.Phase, st.Weight, st.Reason)
	}
}

func TestStartRefused(t *testing.T) {
	f := newFixture(t, "m:1")
	f.reg.inputs = map[string]Signature{
		"m:1": {{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 10}}},
		"m:2": {{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 12}}},
		"m:3": {{Name: "input", Datatype: oip.FP32, Shape: []int64{-1, 10}}},
	}
	bad := 1.5
	tests := []struct {
		name string
		req  Request
		want error
		msg  string
	}{
		{"to itself", Request{To: "m:1"}, ErrInvalid, "already serves m:1"},
		{"no target", Request{}, ErrInvalid, "--to"},
		{"incompatible inputs", Request{To: "m:2"}, ErrInvalid, `input "input" has shape [-1 12], not [-1 10]`},
		{"steps", Request{To: "m:3", Steps: []int{50, 10}}, ErrInvalid, "ascending"},
		{"error rate", Request{To: "m:3", MaxErrorRate: &bad}, ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.m.Start(context.Background(), "m", tt.req)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Start = %v; want %v with %q", err, tt.want, tt.msg)
			}
		})
	}
	if _, err := f.m.Start(context.Background(), "m", Request{To: "m:3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Start(context.Background(), "m", Request{To: "m:3"}); !errors.Is(err, ErrActive) {
		t.Errorf("a second start = %v; want ErrActive", err)
	}
}

func TestByHand(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "/models/m.json")
	if _, err := f.m.Start(ctx, "m", Request{To: "/models/m-v2.json"}); err != nil {
		t.Fatal(err)
	}
	if st, err := f.m.Pause(ctx, "m", "alice"); err != nil || st.Phase != traffic.Paused {
		t.Fatalf("Pause = %+v, %v", st.Phase, err)
	}
	if st := f.minute(6000, 600, 0); st.Weight != 5 {
		t.Errorf("a paused rollout moved to %d%%", st.Weight)
	}
	if st, err := f.m.Resume(ctx, "m"); err != nil || st.Phase != traffic.Progressing {
		t.Fatalf("Resume = %+v, %v", st.Phase, err)
	}
	st, err := f.m.Abort(ctx, "m", "alice")
	if err != nil || st.Phase != traffic.Aborted {
		t.Fatalf("Abort = %+v, %v", st.Phase, err)
	}
	f.wantTraffic(0)
	if _, err := f.m.Promote(ctx, "m", "alice"); !errors.Is(err, traffic.ErrRolloutOver) {
		t.Errorf("Promote after an abort = %v; want ErrRolloutOver", err)
	}
	if _, err := f.m.Start(ctx, "m", Request{To: "/models/m-v2.json"}); err != nil {
		t.Fatal(err)
	}
	if st, err := f.m.Promote(ctx, "m", "alice"); err != nil || st.Phase != traffic.Succeeded {
		t.Fatalf("Promote = %+v, %v", st.Phase, err)
	}
	if d := f.deployment(); d.Spec.Model != "/models/m-v2.json" || d.Spec.Traffic != nil {
		t.Errorf("promoted by hand: %q %+v", d.Spec.Model, d.Spec.Traffic)
	}
}
