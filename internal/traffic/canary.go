package traffic

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Policy says how a progressive canary moves traffic and what it must meet
// to move on. Start from DefaultPolicy and change what the user gave (an API
// handler can json.Unmarshal over it), so that a field left out keeps its
// default while 0 stays a value a user can choose (MaxErrorRate 0 allows no
// error at all).
type Policy struct {
	// Steps are the canary's weights in percent, ascending, the last 100.
	// Each step but the last is judged; passing the step before 100
	// promotes the canary: it becomes the primary and takes all traffic.
	Steps []int
	// Interval is the shortest time a step lasts.
	Interval time.Duration
	// MaxErrorRate is the largest share of the canary's requests that may
	// fail (5xx and engine errors) in a step, a fraction: 0.01 is 1%.
	MaxErrorRate float64
	// MaxP99Ratio bounds the canary's p99 latency to this multiple of the
	// primary's, measured over the same interval.
	MaxP99Ratio float64
	// MinRequests is the fewest requests the canary, and the primary for
	// the p99 comparison, must have served in a step before any bound is
	// judged. Fewer means wait, never pass.
	MinRequests int
}

// Defaults of DefaultPolicy, and why.
const (
	// DefaultInterval gives each step a minute: long enough to gather
	// MinRequests at 5% of a modest load (400 requests a minute), short
	// enough that a good canary is promoted in about three minutes.
	DefaultInterval = time.Minute
	// DefaultMaxErrorRate allows 1% failed requests, the common success
	// threshold of Flagger and Argo Rollouts analyses (99%). Note that one
	// failure among fewer than 100 requests in a step is above 1%: where a
	// version fails now and then, raise MinRequests or this bound.
	DefaultMaxErrorRate = 0.01
	// DefaultMaxP99Ratio allows the canary's p99 to be half as large again
	// as the primary's: a real slowdown, well above the run-to-run noise
	// of a p99 measured over a minute, fails it.
	DefaultMaxP99Ratio = 1.5
	// DefaultMinRequests is the smallest sample on which a rate at the
	// percent level and a tail latency mean anything (the p99 of 20
	// requests is their slowest, a strict reading), while a deployment
	// with a few requests a second still moves through its steps.
	DefaultMinRequests = 20
)

// DefaultSteps are the canary's weights unless the user gives others.
var DefaultSteps = []int{5, 25, 50, 100}

// DefaultPolicy returns a Policy with every default.
func DefaultPolicy() Policy {
	return Policy{
		Steps:        slices.Clone(DefaultSteps),
		Interval:     DefaultInterval,
		MaxErrorRate: DefaultMaxErrorRate,
		MaxP99Ratio:  DefaultMaxP99Ratio,
		MinRequests:  DefaultMinRequests,
	}
}

// Validate reports every problem with p, each saying what to give instead.
func (p Policy) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case len(p.Steps) == 0:
		add("steps: give the canary's weights in percent, ascending and ending at 100, e.g. 5,25,50,100")
	case len(p.Steps) == 1 && p.Steps[0] == 100:
		add("steps: give at least one weight below 100 before the final 100, e.g. 5,25,50,100; the canary is judged at each step below 100")
	default:
		for i, w := range p.Steps {
			switch {
			case w < 1 || w > 100:
				add("steps: weight %d is outside 1..100 (percent of requests)", w)
			case i > 0 && w <= p.Steps[i-1]:
				add("steps: %d after %d is not ascending; give weights in increasing order, e.g. 5,25,50,100", w, p.Steps[i-1])
			}
		}
		if last := p.Steps[len(p.Steps)-1]; last != 100 {
			add("steps: the last weight is %d but must be 100, where the canary becomes the primary", last)
		}
	}
	if p.Interval <= 0 {
		add("interval: %v must be greater than zero, e.g. 1m", p.Interval)
	}
	if math.IsNaN(p.MaxErrorRate) || p.MaxErrorRate < 0 || p.MaxErrorRate > 1 {
		add("max error rate: %v is outside 0..1; give a fraction, e.g. 0.01 for 1%%", p.MaxErrorRate)
	}
	if math.IsNaN(p.MaxP99Ratio) || math.IsInf(p.MaxP99Ratio, 0) || p.MaxP99Ratio <= 0 {
		add("max p99 ratio: %v must be a number greater than 0, e.g. 1.5 to let the canary's p99 be 1.5 times the primary's", p.MaxP99Ratio)
	}
	if p.MinRequests < 1 {
		add("min requests: %d must be at least 1, e.g. 20; with no request to judge, a step would pass blind", p.MinRequests)
	}
	return errors.Join(errs...)
}

// Phase is where a rollout stands.
type Phase string

// Phases of a rollout. Succeeded, RolledBack and Aborted are final.
const (
	// Progressing: the canary serves Weight percent and is judged.
	Progressing Phase = "Progressing"
	// Paused: the canary keeps its weight; nothing is judged until resumed.
	Paused Phase = "Paused"
	// Succeeded: the canary passed every step and became the primary.
	Succeeded Phase = "Succeeded"
	// RolledBack: the canary breached a bound; all traffic went back to
	// the primary.
	RolledBack Phase = "RolledBack"
	// Aborted: a user stopped the rollout; all traffic went back to the
	// primary.
	Aborted Phase = "Aborted"
)

// Final reports whether a rollout in phase p is over.
func (p Phase) Final() bool { return p == Succeeded || p == RolledBack || p == Aborted }

// State is a rollout's progress: what the control loop stores, so that a
// rollout survives a restart, and what `ebb rollout status` shows.
type State struct {
	Phase Phase `json:"phase"`
	// Step is the index in Policy.Steps of the step being judged.
	Step int `json:"step"`
	// Weight is the canary's percent of requests; the primary gets the
	// rest.
	Weight int `json:"weight"`
	// StepStarted is when the current step began: its measurements are
	// taken over [StepStarted, now].
	StepStarted time.Time `json:"stepStarted"`
	// Reason says why the rollout is where it is: what it waits for, why
	// it rolled back, who paused it.
	Reason string `json:"reason,omitempty"`
	// History holds the result of each step judged, oldest first.
	History []StepResult `json:"history,omitempty"`
}

// StepResult is one judged step: the measurements of both versions over it
// and what came of them.
type StepResult struct {
	Step    int         `json:"step"`
	Weight  int         `json:"weight"`
	Started time.Time   `json:"started"`
	Ended   time.Time   `json:"ended"`
	Outcome Action      `json:"outcome"`
	Reason  string      `json:"reason"`
	Canary  Measurement `json:"canary"`
	Primary Measurement `json:"primary"`
}

// Action is what a Decision tells the control loop to do.
type Action string

// Actions of a Decision.
const (
	// Wait: keep the weights; Reason says what is missing.
	Wait Action = "Wait"
	// Advance: move the canary to the next step's weight.
	Advance Action = "Advance"
	// Promote: the canary passed its last step; it becomes the primary,
	// takes all traffic and the alias moves, if the deployment follows one.
	Promote Action = "Promote"
	// Rollback: send all traffic to the primary; Reason names the breach.
	Rollback Action = "Rollback"
)

// Decision is the outcome of Decide.
type Decision struct {
	Action Action `json:"action"`
	Reason string `json:"reason"`
	// Step and Weight are the rollout's step and canary weight after the
	// decision.
	Step   int `json:"step"`
	Weight int `json:"weight"`
	// Result is the step just judged; nil for Wait.
	Result *StepResult `json:"result,omitempty"`
}

// Start returns the state of a rollout that begins now at p's first step.
func Start(now time.Time, p Policy) (State, error) {
	if err := p.Validate(); err != nil {
		return State{}, err
	}
	return State{
		Phase:       Progressing,
		Weight:      p.Steps[0],
		StepStarted: now,
		Reason:      fmt.Sprintf("started at step 1 of %d (%d%%)", len(p.Steps), p.Steps[0]),
	}, nil
}

// Decide judges the current step of a rollout. canary and primary are the
// two versions' measurements over [s.StepStarted, now] (Meter.Snapshot), so
// that both are judged over the same interval.
//
// The canary passes a step when all of these hold:
//   - the interval is over: now - s.StepStarted >= p.Interval;
//   - the canary served at least p.MinRequests requests;
//   - its error rate is at most p.MaxErrorRate;
//   - the primary served at least p.MinRequests requests, and the canary's
//     p99 is at most p.MaxP99Ratio × the primary's p99. Without enough
//     primary traffic the p99 cannot be compared, so Decide waits.
//
// Passing the step before the final 100 promotes the canary; passing any
// other advances it; failing a bound rolls it back. Too little traffic
// means Wait, however long it lasts.
//
// An error-rate breach rolls back at once, even before the interval is
// over, as soon as the canary has served p.MinRequests, if the breach is
// clear: if the rate's 97.5% lower confidence bound (Wilson score) is above
// p.MaxErrorRate. A canary failing 20% is clearly above 1% within 20
// requests; one error in the first 95 requests is not. Without that test, a
// canary as good as the primary, failing 0.1%, was rolled back in one
// replayed rollout in five by a single early error checked every few
// seconds. When the interval is over, the measured rate is compared with
// the bound as it is. The p99 is judged only when the interval is over,
// since the first requests of a step are the noisiest.
//
// A paused or finished rollout, an invalid policy or a step outside the
// policy gives Wait with the reason, never a move.
func Decide(now time.Time, p Policy, s State, canary, primary Measurement) Decision {
	wait := func(format string, args ...any) Decision {
		return Decision{Action: Wait, Reason: fmt.Sprintf(format, args...), Step: s.Step, Weight: s.Weight}
	}
	if err := p.Validate(); err != nil {
		return wait("policy is invalid: %v", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	switch {
	case s.Phase == Paused:
		return wait("paused")
	case s.Phase.Final():
		return wait("rollout is over (%s)", s.Phase)
	case s.Phase != Progressing:
		return wait("unknown phase %q", s.Phase)
	case s.Step < 0 || s.Step >= len(p.Steps)-1:
		return wait("step index %d is not a canary step of the policy (steps %s)", s.Step, formatSteps(p.Steps))
	}
	need := int64(p.MinRequests)
	result := func(a Action, reason string) *StepResult {
		return &StepResult{
			Step: s.Step, Weight: s.Weight, Started: s.StepStarted, Ended: now,
			Outcome: a, Reason: reason, Canary: canary, Primary: primary,
		}
	}
	rollback := func(reason string) Decision {
		return Decision{Action: Rollback, Reason: reason, Step: s.Step, Weight: 0, Result: result(Rollback, reason)}
	}

	rate := errorRate(canary)
	breach := func() Decision {
		got, limit := percents(rate, p.MaxErrorRate)
		return rollback(fmt.Sprintf("canary error rate %s > max %s over %d requests", got, limit, canary.Requests))
	}
	if elapsed := now.Sub(s.StepStarted); elapsed < p.Interval {
		if canary.Requests >= need && clearlyAbove(canary.Errors, canary.Requests, p.MaxErrorRate) {
			return breach()
		}
		return wait("interval not over: %v of %v left", (p.Interval - elapsed).Round(time.Second), p.Interval)
	}
	if canary.Requests < need {
		return wait("only %d of %d requests to the canary in this step", canary.Requests, need)
	}
	if rate > p.MaxErrorRate {
		return breach()
	}
	if primary.Requests < need {
		return wait("only %d of %d requests to the primary in this step; its p99 is needed to judge the canary's", primary.Requests, need)
	}
	if float64(canary.P99) > p.MaxP99Ratio*float64(primary.P99) {
		return rollback(fmt.Sprintf("canary p99 %v > %v × primary p99 %v%s over %d and %d requests",
			roundDuration(canary.P99), p.MaxP99Ratio, roundDuration(primary.P99), ratio(canary.P99, primary.P99), canary.Requests, primary.Requests))
	}

	got, limit := percents(rate, p.MaxErrorRate)
	reason := fmt.Sprintf("step %d (%d%%) passed: error rate %s ≤ %s, p99 %v ≤ %v × primary %v over %d requests",
		s.Step+1, s.Weight, got, limit, roundDuration(canary.P99), p.MaxP99Ratio, roundDuration(primary.P99), canary.Requests)
	next := s.Step + 1
	if p.Steps[next] == 100 {
		reason += "; canary promoted"
		return Decision{Action: Promote, Reason: reason, Step: next, Weight: 100, Result: result(Promote, reason)}
	}
	return Decision{Action: Advance, Reason: reason, Step: next, Weight: p.Steps[next], Result: result(Advance, reason)}
}

// Apply returns s moved by d at now. A decision other than Wait applies
// only to a Progressing rollout: one paused or ended since d was made
// stays as it is. Apply never changes s's History in place.
func Apply(now time.Time, s State, d Decision) State {
	if s.Phase != Progressing {
		return s
	}
	if d.Result != nil {
		s.History = append(slices.Clip(s.History), *d.Result)
	}
	s.Reason = d.Reason
	switch d.Action {
	case Advance:
		s.Step, s.Weight, s.StepStarted = d.Step, d.Weight, now
	case Promote:
		s.Phase, s.Step, s.Weight = Succeeded, d.Step, 100
	case Rollback:
		s.Phase, s.Weight = RolledBack, 0
	}
	return s
}

// breachZ is the z-score of the confidence an error-rate breach needs
// before a step's interval is over: 1.96, 97.5% one-sided.
const breachZ = 1.96

// clearlyAbove reports whether errors of requests is a failure rate above
// limit with confidence breachZ: whether the lower Wilson score bound of the
// rate exceeds limit. Any error at all is clearly above a limit of 0.
func clearlyAbove(errors, requests int64, limit float64) bool {
	if requests <= 0 || errors <= 0 {
		return false
	}
	n, p, z2 := float64(requests), float64(errors)/float64(requests), breachZ*breachZ
	center := p + z2/(2*n)
	half := breachZ * math.Sqrt(p*(1-p)/n+z2/(4*n*n))
	return (center-half)/(1+z2/n) > limit
}

// errorRate returns m's errors over its requests, 0 with no request.
func errorRate(m Measurement) float64 {
	if m.Requests <= 0 {
		return 0
	}
	return float64(m.Errors) / float64(m.Requests)
}

// percents formats two fractions as percentages with one decimal, or as
// many more (up to four) as it takes to tell them apart.
func percents(a, b float64) (string, string) {
	for prec := 1; ; prec++ {
		sa := strconv.FormatFloat(a*100, 'f', prec, 64)
		sb := strconv.FormatFloat(b*100, 'f', prec, 64)
		if sa != sb || a == b || prec == 4 {
			return sa + "%", sb + "%"
		}
	}
}

// roundDuration keeps three significant digits of d, for messages.
func roundDuration(d time.Duration) time.Duration {
	unit := time.Duration(1)
	for d/unit >= 1000 {
		unit *= 10
	}
	return d.Round(unit)
}

// ratio formats canary/primary as " (1.80×)", or nothing when the primary's
// p99 is zero.
func ratio(canary, primary time.Duration) string {
	if primary <= 0 {
		return ""
	}
	return fmt.Sprintf(" (%.2f×)", float64(canary)/float64(primary))
}

// formatSteps writes steps as 5,25,50,100.
func formatSteps(steps []int) string {
	s := make([]string, len(steps))
	for i, w := range steps {
		s[i] = strconv.Itoa(w)
	}
	return strings.Join(s, ",")
}
