package rollout

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ebb-ml/ebb/internal/serving"
	"github.com/ebb-ml/ebb/internal/store"
	"github.com/ebb-ml/ebb/internal/traffic"
)

// Errors of shadows callers can test for.
var (
	// ErrNoShadow: the deployment has no shadow (404).
	ErrNoShadow = errors.New("no shadow")
	// ErrShadowUnmet: a rollout asked for a shadow's verdict
	// (Request.RequireShadow) that the deployment's shadow does not give
	// (412 Precondition Failed).
	ErrShadowUnmet = errors.New("shadow criteria not met")
)

// Defaults of the criteria a shadow is judged by.
const (
	// DefaultShadowMinAgreement is the share of judged requests that
	// must agree.
	DefaultShadowMinAgreement = 0.99
	// DefaultShadowMinRequests is how many requests must be judged,
	// where the shadow does not stop at a count of its own.
	DefaultShadowMinRequests = 100
)

// ShadowRequest is what `ebb shadow start` asks for: the version to
// mirror requests to, and how. Every field but To is optional.
type ShadowRequest struct {
	// To is the shadow's model: a registry version ("diabetes:4",
	// "diabetes@challenger") or an artifact path.
	To string `json:"to"`
	// Percent of the primary's requests mirrored, 1..100; default 100.
	Percent int32 `json:"percent,omitempty"`
	// Requests, when set, stops mirroring once this many were judged;
	// Duration, when set, stops it after that long. With both, whichever
	// comes first; with neither, the shadow mirrors until stopped.
	Requests int64            `json:"requests,omitempty"`
	Duration serving.Duration `json:"duration,omitzero"`
	// Tolerance of the comparison; default serving.DefaultTolerance.
	Tolerance *serving.Tolerance `json:"tolerance,omitempty"`
	// MaxConcurrency bounds the mirrored requests in flight (per
	// gateway); default 4.
	MaxConcurrency int32 `json:"maxConcurrency,omitempty"`
}

// ShadowCriteria are what a shadow is judged by: at least MinRequests
// judged (compared, or failed by the shadow), and at least MinAgreement
// (0..1] of them agreeing. Zero fields take the defaults: the shadow's own
// request count, else DefaultShadowMinRequests, and
// DefaultShadowMinAgreement.
type ShadowCriteria struct {
	MinAgreement float64 `json:"minAgreement,omitempty"`
	MinRequests  int     `json:"minRequests,omitempty"`
}

// check refuses criteria that cannot be judged.
func (c ShadowCriteria) check() error {
	if math.IsNaN(c.MinAgreement) || c.MinAgreement < 0 || c.MinAgreement > 1 {
		return fmt.Errorf("%w: min agreement %v is outside 0..1: give a fraction, e.g. 0.99", ErrInvalid, c.MinAgreement)
	}
	if c.MinRequests < 0 {
		return fmt.Errorf("%w: min requests %d: give a count of 1 or more", ErrInvalid, c.MinRequests)
	}
	return nil
}

// withDefaults fills c's zero fields for shadow sh.
func (c ShadowCriteria) withDefaults(sh *serving.Shadow) ShadowCriteria {
	if c.MinAgreement == 0 {
		c.MinAgreement = DefaultShadowMinAgreement
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultShadowMinRequests
		if sh != nil && sh.Requests > 0 {
			c.MinRequests = int(min(sh.Requests, math.MaxInt32))
		}
	}
	return c
}

// ShadowStatus is a deployment's shadow as `ebb shadow status -o json`
// shows it: the shadow's spec, what the gateways compared of it
// (traffic.Summary, flattened), and the verdict by Criteria.
type ShadowStatus struct {
	Deployment     string            `json:"deployment"`
	Model          string            `json:"model"`
	Percent        int32             `json:"percent"`
	Requests       int64             `json:"requests,omitempty"`
	Until          string            `json:"until,omitempty"`
	Started        string            `json:"started,omitempty"`
	Tolerance      serving.Tolerance `json:"tolerance"`
	MaxConcurrency int32             `json:"maxConcurrency"`
	// Active is whether the shadow still mirrors: neither Until nor
	// Requests reached, and not stopped.
	Active bool `json:"active"`
	// Reported is whether a gateway reported this shadow's figures; the
	// figures are zero while it has not.
	Reported bool `json:"reported"`
	traffic.Summary
	Criteria ShadowCriteria  `json:"criteria"`
	Verdict  traffic.Verdict `json:"verdict"`
}

// StartShadow mirrors a share of deployment's requests to req.To and
// compares the answers (spec.shadow). It is checked like a rollout: the
// deployment must speak OIP v2, and the shadow's inputs must match the
// primary's; it is refused with ErrActive while a rollout of the
// deployment is active. A shadow already running is replaced by the new
// one, whose tally starts afresh. by says who, for the event.
func (m *Manager) StartShadow(ctx context.Context, deployment string, req ShadowRequest, by string) (ShadowStatus, error) {
	to := strings.TrimSpace(req.To)
	switch {
	case to == "":
		return ShadowStatus{}, fmt.Errorf("%w: give the version to mirror requests to (--to diabetes:4)", ErrInvalid)
	case req.Duration.Duration < 0 || (req.Duration.Duration > 0 && req.Duration.Duration < time.Second):
		return ShadowStatus{}, fmt.Errorf("%w: duration %s: give 1s or more, e.g. 30m (or none, to mirror until stopped)", ErrInvalid, req.Duration.Duration)
	}
	d, err := m.deps.GetDeployment(ctx, deployment)
	if err != nil {
		return ShadowStatus{}, err
	}
	if d.Spec.OpenAI() {
		return ShadowStatus{}, fmt.Errorf("%w: deployment %q speaks the OpenAI API; a shadow mirrors OIP v2 requests only", ErrInvalid, d.Name)
	}
	if err := m.noCanary(ctx, d); err != nil {
		return ShadowStatus{}, err
	}
	if m.opts.Registry != nil {
		if err := m.compatible(ctx, d.Spec.Model, to, "shadow"); err != nil {
			return ShadowStatus{}, err
		}
	}
	now := m.opts.Clock.Now()
	sh := &serving.Shadow{Model: to, Percent: req.Percent, Tolerance: req.Tolerance, MaxConcurrency: req.MaxConcurrency, Requests: req.Requests,
		Started: now.UTC().Format(time.RFC3339Nano)}
	if req.Duration.Duration > 0 {
		sh.Until = now.Add(req.Duration.Duration).UTC().Format(time.RFC3339)
	}
	var old *serving.Shadow
	d, err = m.deps.UpdateDeployment(ctx, deployment, func(d *serving.Deployment) error {
		if ours(d.Spec.Traffic) {
			return fmt.Errorf("%w: deployment %q is in a rollout: `ebb rollout status %s` shows it; a shadow may start once it is over", ErrActive, d.Name, d.Name)
		}
		old = d.Spec.Shadow
		d.Spec.Shadow = sh
		if err := d.Validate(); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return nil
	})
	if err != nil {
		return ShadowStatus{}, err
	}
	m.opts.Notify(deployment)
	msg := fmt.Sprintf("mirroring %d%% of requests to %s", sh.PercentOrDefault(), to)
	if old != nil {
		msg += ", replacing the shadow of " + old.Model
	}
	if by != "" {
		msg += ", by " + by
	}
	m.opts.Logger.Info("shadow started", "deployment", deployment, "model", to, "percent", sh.PercentOrDefault(), "requests", sh.Requests, "until", sh.Until)
	m.opts.Event(deployment, "Normal", "ShadowStarted", msg)
	st := m.shadowStatus(d, ShadowCriteria{}, now)
	// The figures a gateway holds are the replaced shadow's until it
	// picks the new one up: a new shadow starts from nothing.
	st.Summary, st.Reported = traffic.Summary{}, false
	st.Verdict = traffic.Verdict{Outcome: traffic.Pending, Reason: "just started: no request judged yet"}
	return st, nil
}

// noCanary refuses a shadow while a rollout of d is active: the canary
// and the shadow would both claim to judge the next version.
func (m *Manager) noCanary(ctx context.Context, d serving.Deployment) error {
	r, err := m.st.ActiveRollout(ctx, d.Name, store.RolloutCanary)
	switch {
	case err == nil:
		rec, derr := decode(r)
		to := "a new version"
		if derr == nil {
			to = rec.spec.To
		}
		return fmt.Errorf("%w: deployment %q has an active rollout to %s: `ebb rollout status %s` shows it; abort it (`ebb rollout abort %s`) or let it finish before shadowing", ErrActive, d.Name, to, d.Name, d.Name)
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	return nil
}

// ShadowStatus returns deployment's shadow, judged by c (zero fields take
// the defaults). It is ErrNoShadow when the deployment has none.
func (m *Manager) ShadowStatus(ctx context.Context, deployment string, c ShadowCriteria) (ShadowStatus, error) {
	if err := c.check(); err != nil {
		return ShadowStatus{}, err
	}
	d, err := m.deps.GetDeployment(ctx, deployment)
	if err != nil {
		return ShadowStatus{}, err
	}
	if d.Spec.Shadow == nil {
		return ShadowStatus{}, noShadow(deployment)
	}
	return m.shadowStatus(d, c, m.opts.Clock.Now()), nil
}

// StopShadow ends deployment's shadow (removes spec.shadow) and returns
// its last status, judged by the default criteria. It is ErrNoShadow when
// the deployment has none.
func (m *Manager) StopShadow(ctx context.Context, deployment, by string) (ShadowStatus, error) {
	d, err := m.deps.GetDeployment(ctx, deployment)
	if err != nil {
		return ShadowStatus{}, err
	}
	if d.Spec.Shadow == nil {
		return ShadowStatus{}, noShadow(deployment)
	}
	st := m.shadowStatus(d, ShadowCriteria{}, m.opts.Clock.Now())
	_, err = m.deps.UpdateDeployment(ctx, deployment, func(d *serving.Deployment) error {
		if d.Spec.Shadow == nil {
			return errUnchanged // stopped meanwhile
		}
		d.Spec.Shadow = nil
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return ShadowStatus{}, noShadow(deployment)
	}
	if err != nil {
		return ShadowStatus{}, err
	}
	st.Active = false
	m.opts.Notify(deployment)
	msg := fmt.Sprintf("shadow of %s stopped after %d compared requests; verdict %s: %s", st.Model, st.Compared, st.Verdict.Outcome, st.Verdict.Reason)
	if by != "" {
		msg += "; by " + by
	}
	m.opts.Logger.Info("shadow stopped", "deployment", deployment, "model", st.Model, "compared", st.Compared, "verdict", st.Verdict.Outcome)
	m.opts.Event(deployment, "Normal", "ShadowStopped", msg)
	return st, nil
}

func noShadow(deployment string) error {
	return fmt.Errorf("%w: deployment %q has no shadow: start one with `ebb shadow start %s --to MODEL`", ErrNoShadow, deployment, deployment)
}

// shadowStatus is d's shadow (d.Spec.Shadow, not nil) with what the
// gateways reported of it, judged by c.
func (m *Manager) shadowStatus(d serving.Deployment, c ShadowCriteria, now time.Time) ShadowStatus {
	sh := d.Spec.Shadow
	c = c.withDefaults(sh)
	st := ShadowStatus{Deployment: d.Name, Model: sh.Model, Percent: sh.PercentOrDefault(), Requests: sh.Requests, Until: sh.Until, Started: sh.Started,
		Tolerance: sh.ToleranceOrDefault(), MaxConcurrency: sh.MaxConcurrencyOrDefault(), Criteria: c}
	var why string
	if m.opts.Shadows == nil {
		why = "no gateway reported this shadow yet"
	} else if sum, id, ok := m.opts.Shadows.ShadowSummary(d.Name); !ok {
		why = "no gateway reported this shadow yet: its figures come once the deployment serves requests"
	} else if id != sh.ID() {
		why = "the gateways still report the previous shadow; this one's figures come once they pick it up"
	} else {
		st.Summary, st.Reported = sum, true
	}
	until := sh.UntilTime()
	st.Active = (until.IsZero() || now.Before(until)) && (sh.Requests <= 0 || st.Compared+st.ShadowErrors < sh.Requests)
	if !st.Reported {
		st.Verdict = traffic.Verdict{Outcome: traffic.Pending, Reason: why}
		return st
	}
	st.Verdict = st.Summary.Verdict(c.MinRequests, c.MinAgreement)
	return st
}

// gate refuses, with ErrShadowUnmet, a rollout of d to version to that
// asked for a shadow's verdict (c) the deployment's shadow does not give:
// there is none, it serves another version, or its verdict is not a pass.
func (m *Manager) gate(ctx context.Context, d serving.Deployment, to string, c *ShadowCriteria) error {
	if c == nil {
		return nil
	}
	if err := c.check(); err != nil {
		return err
	}
	sh := d.Spec.Shadow
	if sh == nil {
		return fmt.Errorf("%w: deployment %q has no shadow to judge %s by: run `ebb shadow start %s --to %s` first and start the rollout once its verdict passes (or start it without --require-shadow-*)",
			ErrShadowUnmet, d.Name, to, d.Name, to)
	}
	if !m.sameVersion(ctx, sh.Model, to) {
		return fmt.Errorf("%w: deployment %q shadows %s, not %s: shadow %s first (`ebb shadow start %s --to %s`)",
			ErrShadowUnmet, d.Name, sh.Model, to, to, d.Name, to)
	}
	st := m.shadowStatus(d, *c, m.opts.Clock.Now())
	if st.Verdict.Outcome != traffic.Pass {
		return fmt.Errorf("%w: the shadow of %s is %s: %s (`ebb shadow status %s` shows it)", ErrShadowUnmet, sh.Model, st.Verdict.Outcome, st.Verdict.Reason, d.Name)
	}
	return nil
}

// sameVersion reports whether model strings a and b name the same
// version: the same string, or registry references that resolve to the
// same version ("m@challenger" and "m:4" while challenger is 4).
func (m *Manager) sameVersion(ctx context.Context, a, b string) bool {
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if a == b {
		return true
	}
	ra, okA := serving.ParseModelRef(a)
	rb, okB := serving.ParseModelRef(b)
	if !okA || !okB || ra.Model != rb.Model || m.opts.History == nil {
		return false
	}
	va, errA := m.opts.History.Resolve(ctx, ra)
	vb, errB := m.opts.History.Resolve(ctx, rb)
	return errA == nil && errB == nil && va.Version == vb.Version
}
