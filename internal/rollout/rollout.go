// Package rollout runs progressive canary rollouts: it moves a deployment's
// traffic to a new model version step by step (spec.traffic, served by the
// data plane as a split), judges each step from what the gateways measured
// of both versions (traffic.Decide), and promotes the canary or rolls it
// back, recording why.
//
// The rollout's state lives in the store (store.Rollout), written before
// the deployment is changed to match it; every pass of Run makes the
// deployment's traffic match the stored state again, so a rollout survives
// a restart of ebb up or of the operator and resumes where it was. Only
// one active rollout may exist per deployment (the store enforces it; a
// second start is ErrActive, which the API answers with 409).
//
// The package decides nothing itself: traffic.Decide does, a pure function
// of the measurements and the clock. The Manager applies decisions through
// small interfaces, the same in both homes: in ebb up the deployments are
// in SQLite and the measurements come from the gateway in the process; in a
// cluster the deployments are ModelDeployments and the measurements are
// what every gateway pod reported to the operator.
package rollout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/traffic"
	"k8s.io/utils/clock"
)

// CanaryTag is the tag of the canary's traffic target: its track is
// "<deployment>.canary", and a request pins it with Ebb-Version: canary.
const CanaryTag = "canary"

// Errors callers can test for.
var (
	// ErrActive: the deployment already has an active rollout (409).
	ErrActive = errors.New("a rollout is already active")
	// ErrNone: the deployment has no rollout (404).
	ErrNone = errors.New("no rollout")
	// ErrInvalid: the request cannot start a rollout (400).
	ErrInvalid = errors.New("invalid rollout")
)

// Store keeps rollout records (store.Rollout); package sqlstore is one.
type Store interface {
	CreateRollout(ctx context.Context, r store.Rollout) (store.Rollout, error)
	UpdateRollout(ctx context.Context, id string, fn func(*store.Rollout) error) (store.Rollout, error)
	ActiveRollout(ctx context.Context, deployment, kind string) (store.Rollout, error)
	ListRollouts(ctx context.Context, deployment string) ([]store.Rollout, error)
}

// Deployments reads and changes deployment specs: the API's store in ebb
// up, the ModelDeployments in a cluster.
type Deployments interface {
	GetDeployment(ctx context.Context, name string) (serving.Deployment, error)
	UpdateDeployment(ctx context.Context, name string, fn func(*serving.Deployment) error) (serving.Deployment, error)
}

// Measurer reads what the gateways measured of a deployment or track (its
// route key) over [since, now].
type Measurer interface {
	Measure(key string, since, now time.Time) traffic.Measurement
}

// Shadows reads what the gateways compared of a deployment's shadow
// (spec.shadow): the sum over every gateway, and the ID
// (serving.Shadow.ID) of the shadow they counted, which is an earlier
// one's until the gateways pick up a new start; ok is false while no
// gateway reported one.
type Shadows interface {
	ShadowSummary(deployment string) (sum traffic.Summary, id string, ok bool)
}

// Registry moves a model's alias when a canary is promoted, and tells the
// signatures of two versions apart; nil where models are paths only.
type Registry interface {
	// MoveAlias points model's alias at version.
	MoveAlias(ctx context.Context, model, alias string, version int, by string) error
	// Inputs returns the input signature of a registry version ("m:3"),
	// or false when it has none recorded.
	Inputs(ctx context.Context, ref string) (Signature, bool, error)
}

// Options tune a Manager; zero values take the defaults shown.
type Options struct {
	// Every is how often Run judges every active rollout; default 2s.
	Every time.Duration
	// Notify, when set, is told a deployment's spec changed (the control
	// loop of ebb up; a cluster's operator learns from its watch).
	Notify func(deployment string)
	// Registry, when set, moves aliases on promotion and checks
	// signatures at start.
	Registry Registry
	// History, when set, is the serving history and aliases that Undo
	// goes back by; Undo is refused without it.
	History History
	// Shadows, when set, is what the gateways compared of each
	// deployment's shadow (ShadowStatus, and a rollout that requires a
	// shadow's verdict); without it a shadow's verdict stays pending, as
	// no gateway reported one.
	Shadows Shadows
	// Event, when set, records a rollout's transitions as events of its
	// deployment (typ "Normal" or "Warning"), shown by `ebb describe` and,
	// in a cluster, posted as Kubernetes Events.
	Event func(deployment, typ, reason, message string)
	// State, when set, is told a rollout's status each time the Manager
	// handles it: when it starts, after each change by hand, on every pass
	// of Run while it is active (so a restarted or newly elected Manager
	// reports every active rollout on its first pass), and once more,
	// inactive, when it has ended. Calls for a deployment may race (a pass
	// and a change by hand): Status.UpdatedAt orders those of a rollout,
	// which never leaves a final phase. The operator shows it as the
	// ModelDeployment's Rollout condition. It must not block.
	State func(deployment string, s Status)
	// Clock; default the real clock.
	Clock clock.WithTicker
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Manager starts, steps and ends rollouts. It is safe for concurrent use;
// Run is its loop.
type Manager struct {
	st   Store
	deps Deployments
	meas Measurer
	opts Options
}

// New returns a Manager. It starts nothing until Run.
func New(st Store, deps Deployments, meas Measurer, opts Options) *Manager {
	if opts.Every <= 0 {
		opts.Every = 2 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Notify == nil {
		opts.Notify = func(string) {}
	}
	if opts.Event == nil {
		opts.Event = func(string, string, string, string) {}
	}
	if opts.State == nil {
		opts.State = func(string, Status) {}
	}
	return &Manager{st: st, deps: deps, meas: meas, opts: opts}
}

// Request is what `ebb rollout start` asks for: the version to move to,
// and the policy's fields, each optional (traffic.DefaultPolicy).
type Request struct {
	// To is the canary's model: a registry version ("diabetes:4") or an
	// artifact path.
	To           string           `json:"to"`
	Steps        []int            `json:"steps,omitempty"`
	Interval     serving.Duration `json:"interval,omitzero"`
	MaxErrorRate *float64         `json:"maxErrorRate,omitempty"`
	MaxP99Ratio  *float64         `json:"maxP99Ratio,omitempty"`
	MinRequests  *int             `json:"minRequests,omitempty"`
	// RequireShadow, when set, starts the rollout only if the
	// deployment's shadow serves To and its verdict by these criteria is
	// a pass (ErrShadowUnmet otherwise). The canary then takes over: the
	// shadow ends as the rollout starts.
	RequireShadow *ShadowCriteria `json:"requireShadow,omitempty"`
}

// policy returns r's policy: the defaults with r's fields over them.
func (r Request) policy() traffic.Policy {
	p := traffic.DefaultPolicy()
	if len(r.Steps) > 0 {
		p.Steps = r.Steps
	}
	if r.Interval.Duration > 0 {
		p.Interval = r.Interval.Duration
	}
	if r.MaxErrorRate != nil {
		p.MaxErrorRate = *r.MaxErrorRate
	}
	if r.MaxP99Ratio != nil {
		p.MaxP99Ratio = *r.MaxP99Ratio
	}
	if r.MinRequests != nil {
		p.MinRequests = *r.MinRequests
	}
	return p
}

// spec is a rollout record's Spec: what was asked for, and what the
// deployment served when it started.
type spec struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Policy policy `json:"policy"`
}

// policy is traffic.Policy as JSON.
type policy struct {
	Steps        []int            `json:"steps"`
	Interval     serving.Duration `json:"interval"`
	MaxErrorRate float64          `json:"maxErrorRate"`
	MaxP99Ratio  float64          `json:"maxP99Ratio"`
	MinRequests  int              `json:"minRequests"`
}

func policyJSON(p traffic.Policy) policy {
	return policy{Steps: p.Steps, Interval: serving.D(p.Interval), MaxErrorRate: p.MaxErrorRate, MaxP99Ratio: p.MaxP99Ratio, MinRequests: p.MinRequests}
}

func (p policy) traffic() traffic.Policy {
	return traffic.Policy{Steps: p.Steps, Interval: p.Interval.Duration, MaxErrorRate: p.MaxErrorRate, MaxP99Ratio: p.MaxP99Ratio, MinRequests: p.MinRequests}
}

// Status is a rollout as `ebb rollout status -o json` shows it.
type Status struct {
	ID         string `json:"id"`
	Deployment string `json:"deployment"`
	From       string `json:"from"`
	To         string `json:"to"`
	Policy     policy `json:"policy"`
	traffic.State
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// record is a decoded store.Rollout.
type record struct {
	raw   store.Rollout
	spec  spec
	state traffic.State
}

func decode(r store.Rollout) (record, error) {
	rec := record{raw: r}
	if err := json.Unmarshal(r.Spec, &rec.spec); err != nil {
		return rec, fmt.Errorf("rollout %s: stored spec: %w", r.ID, err)
	}
	if err := json.Unmarshal(r.State, &rec.state); err != nil {
		return rec, fmt.Errorf("rollout %s: stored state: %w", r.ID, err)
	}
	return rec, nil
}

func (rec record) status() Status {
	return Status{ID: rec.raw.ID, Deployment: rec.raw.Deployment, From: rec.spec.From, To: rec.spec.To, Policy: rec.spec.Policy,
		State: rec.state, Active: rec.raw.Active, CreatedAt: rec.raw.CreatedAt, UpdatedAt: rec.raw.UpdatedAt}
}

// Start begins a canary rollout of deployment to req.To at the policy's
// first step. A shadow the deployment has ends as the rollout starts:
// the canary takes over.
func (m *Manager) Start(ctx context.Context, deployment string, req Request) (Status, error) {
	p := req.policy()
	if err := p.Validate(); err != nil {
		return Status{}, fmt.Errorf("%w: %s", ErrInvalid, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	d, err := m.deps.GetDeployment(ctx, deployment)
	if err != nil {
		return Status{}, err
	}
	if err := m.check(ctx, d, req.To); err != nil {
		return Status{}, err
	}
	if err := m.gate(ctx, d, req.To, req.RequireShadow); err != nil {
		return Status{}, err
	}
	now := m.opts.Clock.Now()
	st, err := traffic.Start(now, p)
	if err != nil {
		return Status{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	sb, _ := json.Marshal(spec{From: d.Spec.Model, To: req.To, Policy: policyJSON(p)})
	stb, _ := json.Marshal(st)
	r, err := m.st.CreateRollout(ctx, store.Rollout{Deployment: deployment, Kind: store.RolloutCanary, Active: true, Spec: sb, State: stb})
	if errors.Is(err, store.ErrExists) {
		return Status{}, fmt.Errorf("%w on deployment %q: `ebb rollout status %s` shows it; abort or promote it first", ErrActive, deployment, deployment)
	}
	if err != nil {
		return Status{}, err
	}
	rec, err := decode(r)
	if err != nil {
		return Status{}, err
	}
	m.opts.Logger.Info("rollout started", "deployment", deployment, "from", d.Spec.Model, "to", req.To, "weight", st.Weight)
	m.opts.Event(deployment, "Normal", "RolloutStarted", fmt.Sprintf("canary %s at %d%%, steps %v every %s", req.To, st.Weight, p.Steps, p.Interval))
	if err := m.sync(ctx, rec); err != nil {
		return rec.status(), err
	}
	return rec.status(), nil
}

// check refuses a rollout that cannot start: one to what the deployment
// already serves, over a traffic split someone set by hand, or to a
// version whose inputs differ from the primary's.
func (m *Manager) check(ctx context.Context, d serving.Deployment, to string) error {
	switch {
	case strings.TrimSpace(to) == "":
		return fmt.Errorf("%w: give the version to roll out to (--to diabetes:4)", ErrInvalid)
	case to == d.Spec.Model:
		return fmt.Errorf("%w: deployment %q already serves %s", ErrInvalid, d.Name, to)
	case len(d.Spec.Traffic) > 0 && !slices.ContainsFunc(d.Spec.Traffic, func(t serving.TrafficTarget) bool { return t.Tag == CanaryTag }):
		return fmt.Errorf("%w: deployment %q splits its traffic by hand (spec.traffic): remove the split first", ErrActive, d.Name)
	}
	if m.opts.Registry == nil {
		return nil
	}
	return m.compatible(ctx, d.Spec.Model, to, "canary")
}

// Get returns deployment's rollout: the active one, else the latest.
func (m *Manager) Get(ctx context.Context, deployment string) (Status, error) {
	rec, err := m.latest(ctx, deployment)
	if err != nil {
		return Status{}, err
	}
	return rec.status(), nil
}

func (m *Manager) latest(ctx context.Context, deployment string) (record, error) {
	r, err := m.st.ActiveRollout(ctx, deployment, store.RolloutCanary)
	if errors.Is(err, store.ErrNotFound) {
		all, lerr := m.st.ListRollouts(ctx, deployment)
		if lerr != nil {
			return record{}, lerr
		}
		i := slices.IndexFunc(all, func(r store.Rollout) bool { return r.Kind == store.RolloutCanary })
		if i < 0 {
			return record{}, fmt.Errorf("%w: deployment %q has had no rollout: start one with `ebb rollout start %s --to MODEL`", ErrNone, deployment, deployment)
		}
		r, err = all[i], nil
	}
	if err != nil {
		return record{}, err
	}
	return decode(r)
}

// Pause, Resume, Abort and Promote change the active rollout of deployment
// by hand; by says who, for the record.
func (m *Manager) Pause(ctx context.Context, deployment, by string) (Status, error) {
	return m.change(ctx, deployment, func(_ time.Time, s traffic.State, _ traffic.Policy) (traffic.State, error) {
		return traffic.Pause(s, by)
	})
}

// Resume continues a paused rollout; its step's interval starts again.
func (m *Manager) Resume(ctx context.Context, deployment string) (Status, error) {
	return m.change(ctx, deployment, func(now time.Time, s traffic.State, _ traffic.Policy) (traffic.State, error) {
		return traffic.Resume(now, s)
	})
}

// Abort sends every request back to the primary and ends the rollout.
func (m *Manager) Abort(ctx context.Context, deployment, by string) (Status, error) {
	return m.change(ctx, deployment, func(_ time.Time, s traffic.State, _ traffic.Policy) (traffic.State, error) {
		return traffic.Abort(s, by)
	})
}

// Promote makes the canary the primary now, skipping the steps left.
func (m *Manager) Promote(ctx context.Context, deployment, by string) (Status, error) {
	return m.change(ctx, deployment, func(_ time.Time, s traffic.State, p traffic.Policy) (traffic.State, error) {
		return traffic.PromoteNow(s, p, by)
	})
}

// change applies fn to the active rollout's state and the deployment.
func (m *Manager) change(ctx context.Context, deployment string, fn func(time.Time, traffic.State, traffic.Policy) (traffic.State, error)) (Status, error) {
	rec, err := m.latest(ctx, deployment)
	if err != nil {
		return Status{}, err
	}
	if !rec.raw.Active {
		_, err := fn(m.opts.Clock.Now(), rec.state, rec.spec.Policy.traffic())
		if err == nil {
			err = fmt.Errorf("%w: %s", traffic.ErrRolloutOver, rec.state.Reason)
		}
		return rec.status(), err
	}
	rec, err = m.update(ctx, rec, func(now time.Time, s traffic.State) (traffic.State, error) {
		return fn(now, s, rec.spec.Policy.traffic())
	})
	if err != nil {
		return Status{}, err
	}
	m.opts.Event(deployment, "Normal", "Rollout"+string(rec.state.Phase), rec.state.Reason)
	return rec.status(), m.sync(ctx, rec)
}

// update writes the state fn makes of rec's current stored state.
func (m *Manager) update(ctx context.Context, rec record, fn func(time.Time, traffic.State) (traffic.State, error)) (record, error) {
	var same store.Rollout
	r, err := m.st.UpdateRollout(ctx, rec.raw.ID, func(r *store.Rollout) error {
		var cur traffic.State
		if err := json.Unmarshal(r.State, &cur); err != nil {
			return err
		}
		next, err := fn(m.opts.Clock.Now(), cur)
		if err != nil {
			return err
		}
		b, err := json.Marshal(next)
		if err != nil {
			return err
		}
		if old, _ := json.Marshal(cur); bytes.Equal(old, b) {
			// A pass that changes nothing writes nothing: a rollout
			// waiting for traffic is judged every few seconds.
			same = *r
			return errUnchanged
		}
		r.State = b
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return decode(same)
	}
	if err != nil {
		return rec, err
	}
	return decode(r)
}

// errUnchanged ends a read-modify-write that would write what is there.
var errUnchanged = errors.New("unchanged")
